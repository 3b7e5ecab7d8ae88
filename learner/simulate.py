"""Simulated active learning: how many expert labels each strategy saves against random picks.

Command line (a public contract: keep it stable)::

    python -m learner.simulate --train T.jsonl.gz --test E.jsonl.gz --strategies random,default[,...]
        --seed-size 20 --batch-size 20 --budget 1000 --seeds 3 [--tier fast] [--config JSON]
        [--schedule 20:100,100:1000,250:5000] [--prior] [--pool-size N] [--test-size N]
        [--encoder PATH] [--cache-dir DIR] [--shortlist K] [--no-progress] --out DIR

The annotator is simulated by the gold labels of the train file (the pool). For every seed, every strategy starts
from the same ``--seed-size`` random documents; each round trains the fast tier of the learner on the labelled
documents, evaluates it on the test file, and lets the strategy pick ``--batch-size`` more, until ``--budget``
documents are labelled (the seed documents count); ``--schedule`` grows the batches instead, as a real project
would (``20:100,100:1000,250:5000``: batches of 20 up to 100 labels, of 100 up to 1,000, of 250 up to 5,000, the
budget). ``--prior`` trains the learner the platform serves (the fast tier blended with the label-name prior)
instead of the bare fast tier. The same model trained on the whole train file gives the full-data score.
Strategies see each pool document's ``--shortlist`` best labels (every label up to 100 labels).

Writes into ``--out``:

- ``curves.json``: ``{"strategies": {NAME: {"resolves_to", "seeds": {SEED: [{"labelled", "micro_f1",
  "macro_f1", "P@1", "P@5", "train_seconds", "select_seconds", "round_seconds"}, ...]}}}, "full_data", "config",
  "args"}``; round_seconds = training + selection (the last round has no selection).
- ``summary.json``: ``{"full_data": {"micro_f1", "macro_f1", "P@1", "P@5"}, "strategies": {NAME:
  {"aulc_micro_f1", "aulc_p_at_1", "aulc_p_at_5", "labels_to_90", "labels_to_95", "ratio_to_random_90",
  "ratio_to_random_95", "select_seconds_mean"}}, "default_strategy", ...}``. AULC is the mean over the rounds of
  the seed-mean curve; labels_to_X is the first labelled count at which the seed-mean micro-F1 reaches X% of the
  full-data micro-F1 (null when it never does); ratio_to_random_X is that count over random's (null unless both
  reach it and random was run); ``"savings"``: strategy -> metric -> target (``end``: what random reaches at the
  end of the budget; ``at_500`` / ``at_2000``: what it reaches with that many labels; ``90`` / ``95``: that share
  of the full-data value) -> ``{"target", "labels", "random_labels",
  "ratio", "low", "high", "never", "draws"}``, the labels to reach the target (interpolated) and their ratio to
  random's with a paired 95 % bootstrap interval over seeds (``learner.savings``); ``"curves"``: strategy ->
  ``{"labelled", metric: {"mean", "low", "high"}}``, the seed-mean curves with 95 % bootstrap bands.
- ``curves.png``: those curves and bands (micro-F1, macro-F1, P@1, P@5) on a log label axis.
- ``runs/``: one finished (strategy, seed) run per file, so that an interrupted simulation resumes where it
  stopped when run again with the same arguments.

micro-F1 is measured at the model's micro-F1 decision rule, macro-F1 at its macro rule (over the labels present in
the test file), P@k on its top-k. Exit status: 0 on success, 2 on a usage or input error, with a message on stderr.

The low-data regime (``--checkpoints 0,20,50,100,200,500,1000,2000 --learners turn1,prior``): instead of rounds of a
strategy, every seed draws one random order of the pool and each learner is trained on its first n documents for
every checkpoint n, so the learners are compared side by side on the same documents. Learners: ``turn1`` (the fast
tier as it was: no prior), ``prior`` (the fast tier blended with the label-name prior, ``learner.prior``; at 0
labels the prior alone), ``adapt`` (``prior`` on an encoder adapted to the n labelled documents first,
``learner.adapt``: the documents, the test file and the label names re-embedded with it; minutes per checkpoint on a
CPU: ``--adapt-at`` names the checkpoints it runs at). ``--pool-size`` / ``--test-size`` subsample the files
(seeded) for large datasets; ``--train-labels`` / ``--test-labels`` replace the labels by those of a side file
joined on id (the tibkat-gnd domain task). Writes ``checkpoints.json`` (every point of every learner and seed),
``checkpoints-summary.json`` (per learner and checkpoint: the mean and a 95 % bootstrap interval over seeds of
micro/macro-F1, P@1, P@5 and the precision and recall of the pre-ticked labels at a precision floor of ``--floor``;
the frequency baseline at 0 labels) and ``checkpoints.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from learner import chooser, metrics, savings, strategies
from learner.benchmark import BenchmarkError, embed_splits, label_vocabulary, load_split, pad_topk, parse_config
from learner.data import multi_hot

logger = logging.getLogger(__name__)

SHORTLIST = 100  # labels per pool document the strategies see (every label in smaller label sets)
LEARNERS = ("turn1", "prior", "adapt")
LOW_METRICS = ("micro_f1", "macro_f1", "P@1", "P@5", "pretick_precision", "pretick_recall")
CURVE_METRICS = ("micro_f1", "macro_f1", "P@1", "P@5")
# Batch rules that read the pool's embeddings.
EMBEDDING_RULES = ("kmeans", "ranked", "badge", "typiclust", "probcover", "anchors")


class SimulationError(ValueError):
    """A usage or input error: reported as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m learner.simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", required=True, help="the pool: JSONL(.gz) of {id, text, labels}")
    parser.add_argument("--test", required=True, help="held-out evaluation file, same format")
    parser.add_argument("--strategies", default="random,default", help="comma-separated strategy names")
    parser.add_argument("--seed-size", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--budget", type=int, default=1000, help="labelled documents at the end, seed included")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tier", default="fast", help="the learner tier retrained every round (fast)")
    parser.add_argument("--config", default=None, help="FastTierConfig fields as JSON, or @file.json")
    parser.add_argument("--encoder", default=None, help="encoder folder (default: the bundled MiniLM)")
    parser.add_argument("--cache-dir", default="var/benchmark-cache", help="embedding cache")
    parser.add_argument("--shortlist", type=int, default=SHORTLIST, help="labels per document for strategies")
    parser.add_argument(
        "--schedule",
        default=None,
        help="growing batches BATCH:UNTIL,... (e.g. 20:100,100:1000,250:5000); replaces --batch-size and --budget",
    )
    parser.add_argument(
        "--prior",
        action="store_true",
        help="train the learner the platform serves: the fast tier blended with the label-name prior",
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--out", required=True, help="output folder")
    low = parser.add_argument_group("the low-data regime (random picks at fixed label counts)")
    low.add_argument("--checkpoints", default=None, help="comma-separated label counts, e.g. 0,20,100,500,2000")
    low.add_argument("--learners", default="turn1,prior", help=f"comma-separated, of {', '.join(LEARNERS)}")
    low.add_argument("--floor", type=float, default=0.7, help="precision floor of the pre-ticks")
    low.add_argument("--pool-size", type=int, default=None, help="a seeded sample of the train file as the pool")
    low.add_argument("--test-size", type=int, default=None, help="a seeded sample of the test file")
    low.add_argument(
        "--test-from-pool",
        type=int,
        default=None,
        help="measure on this many documents held out of the pool instead (tuning on the train file: the test file "
        "is not read)",
    )
    low.add_argument("--train-labels", default=None, help="JSONL(.gz) of {id, labels} replacing the train labels")
    low.add_argument("--test-labels", default=None, help="JSONL(.gz) of {id, labels} replacing the test labels")
    low.add_argument("--prior-config", default=None, help="learner.prior.PriorConfig fields as JSON")
    low.add_argument("--adapt-config", default=None, help="learner.adapt.AdaptConfig fields as JSON")
    low.add_argument("--adapt-at", default=None, help="the adapt learner's checkpoints (default: every one >= 2)")
    low.add_argument("--labels", default=None, help="the label set: a TSV whose first column names every label")
    return parser


def _check_args(args: argparse.Namespace) -> list[str]:
    for name in ("seed_size", "batch_size", "budget", "seeds", "shortlist"):
        if getattr(args, name) < 1:
            raise SimulationError(f"--{name.replace('_', '-')} must be at least 1; got {getattr(args, name)}")
    if args.budget < args.seed_size:
        raise SimulationError(f"--budget ({args.budget}) must be at least --seed-size ({args.seed_size})")
    if args.schedule is not None and parse_schedule(args.schedule)[-1][1] < args.seed_size:
        raise SimulationError(f"--schedule must end at --seed-size ({args.seed_size}) labels or more")
    if args.tier != "fast":
        raise SimulationError(f"--tier {args.tier!r}: the simulator retrains the fast tier every round (--tier fast)")
    names = [name.strip() for name in args.strategies.split(",") if name.strip()]
    if not names:
        raise SimulationError("--strategies is empty")
    if len(set(names)) != len(names):
        raise SimulationError(f"--strategies names a strategy twice: {args.strategies}")
    for name in names:
        try:
            strategies.resolve(name)
        except ValueError as exc:
            raise SimulationError(f"--strategies: {exc}") from exc
    return names


class Simulation:
    """The pool, the test set and the model settings of one simulation; ``run(strategy, seed)`` is one curve."""

    def __init__(
        self,
        *,
        texts: list[str],
        Y: sp.csr_matrix,
        test_texts: list[str],
        Y_test: sp.csr_matrix,
        labels: list[str],
        config: dict[str, Any],
        embeddings: np.ndarray | None = None,
        test_embeddings: np.ndarray | None = None,
        shortlist: int = SHORTLIST,
        progress: bool = False,
        prior: Any = None,
    ) -> None:
        from learner.fast import FastTierConfig

        self.texts, self.Y, self.labels = texts, Y.tocsr(), labels
        self.test_texts, self.Y_test = test_texts, Y_test.tocsr()
        self.config = FastTierConfig.from_dict(config)
        self.embeddings, self.test_embeddings = embeddings, test_embeddings
        self.shortlist = min(shortlist, len(labels))
        self.progress = progress
        self.prior = prior  # a learner.prior.LabelPrior: the strategy runs train the learner the platform serves

    def _inputs(self, rows: np.ndarray) -> Any:
        from learner.fast import Inputs

        resolved = self.config.resolve(len(self.labels))
        return Inputs(
            texts=[self.texts[i] for i in rows] if resolved.needs_texts else None,
            embeddings=self.embeddings[rows] if resolved.needs_embeddings and self.embeddings is not None else None,
        )

    def _inputs_for(self, rows: np.ndarray, embeddings: bool) -> Any:
        """Inputs of the pool documents ``rows``, with their embeddings also when ``embeddings`` (a prior)."""
        from learner.fast import Inputs

        inputs = self._inputs(rows)
        if embeddings and inputs.embeddings is None and self.embeddings is not None:
            return Inputs(texts=inputs.texts, embeddings=self.embeddings[rows])
        return inputs

    def train(self, rows: np.ndarray) -> Any:
        from learner.fast import FastTier

        inputs = self._inputs_for(rows, self.prior is not None)
        return FastTier.train(inputs, self.Y[rows], self.labels, self.config, prior=self.prior)

    def evaluate(self, model: Any) -> dict[str, float]:
        from learner.fast import Inputs

        inputs = Inputs(
            texts=self.test_texts if model.uses_texts else None,
            embeddings=self.test_embeddings if model.uses_embeddings else None,
        )
        # One pass over the test file: the shortlist model.predict would compute, then each rule on it.
        idx, probs = model.predict_topk(inputs, max(5, min(len(self.labels), model.config.shortlist)))
        micro = model.rules["micro_f1"].apply(idx, probs, len(self.labels))
        macro = model.rules.get("macro_f1", model.rules["micro_f1"]).apply(idx, probs, len(self.labels))
        idx = pad_topk(idx[:, :5], 5)  # fewer than 5 labels: the missing ranks count as misses
        return {
            "micro_f1": round(metrics.micro_f1(self.Y_test, micro), 5),
            "macro_f1": round(metrics.macro_f1(self.Y_test, macro), 5),
            "P@1": round(metrics.precision_at_k(self.Y_test, idx, 1), 5),
            "P@5": round(metrics.precision_at_k(self.Y_test, idx, 5), 5),
        }

    def seed_documents(self, seed: int, size: int) -> np.ndarray:
        """The first labelled documents of every strategy for this seed."""
        return np.sort(np.random.default_rng([seed, 20]).choice(len(self.texts), size=size, replace=False))

    def pick(self, strategy: str, model: Any, labelled: np.ndarray, pool: np.ndarray, n: int, seed: int) -> np.ndarray:
        """Indices into ``pool`` of the ``n`` documents the strategy asks for next."""
        scorer, rule = strategies.resolve(strategy)
        if rule == "anchors":  # no model involved: the pool's embeddings, the label names, the positives so far
            if self.embeddings is None or self.prior is None:
                raise SimulationError(f"{strategy} needs embeddings of the pool and the label-name prior (--prior)")
            return strategies.select_batch(
                strategy,
                np.zeros(len(pool)),
                n,
                embeddings=self.embeddings[pool],
                label_vectors=self.prior.vectors,
                label_counts=np.asarray(self.Y[labelled].sum(axis=0)).ravel(),
                seed=seed,
            )
        if rule in strategies.COVERAGE_RULES:  # no model involved: the embeddings of the pool and the labelled
            if self.embeddings is None:
                raise SimulationError(f"{strategy} needs embeddings of the pool")
            return strategies.select_batch(
                strategy,
                np.zeros(len(pool)),
                n,
                embeddings=self.embeddings[pool],
                labelled_embeddings=self.embeddings[labelled],
                n_labels=len(self.labels),
                seed=seed,
            )
        if scorer == "random":
            scores = strategies.random_scores(len(pool), seed)
            if rule == "top":
                return strategies.select_top(scores, n, seed=seed)
            if self.embeddings is None:
                raise SimulationError(f"{strategy} needs embeddings of the pool")
            return strategies.select_batch(strategy, scores, n, embeddings=self.embeddings[pool], seed=seed)
        idx, probs = model.predict_topk(self._inputs_for(pool, model.uses_embeddings), self.shortlist)  # (U, K)
        counts = np.asarray(self.Y[labelled].sum(axis=0)).ravel()  # (L,) labelled positives per label
        mean_cardinality = float(counts.sum() / max(len(labelled), 1))
        needs_embeddings = rule in EMBEDDING_RULES
        if needs_embeddings and self.embeddings is None:
            raise SimulationError(f"{strategy} needs embeddings of the pool")
        return strategies.select(
            strategy,
            n,
            idx=idx,
            probs=probs,
            n_labels=len(self.labels),
            threshold=float(model.rules["micro_f1"].threshold),
            mean_cardinality=mean_cardinality,
            label_counts=counts,
            embeddings=self.embeddings[pool] if needs_embeddings and self.embeddings is not None else None,
            labelled_embeddings=self.embeddings[labelled] if rule == "ranked" and self.embeddings is not None else None,
            per_label=model.rules["micro_f1"].per_label,
            seed=seed,
        )

    def run(
        self,
        strategy: str,
        seed: int,
        *,
        seed_size: int,
        batch_size: int,
        budget: int,
        schedule: Sequence[tuple[int, int]] | None = None,
    ) -> list[dict[str, Any]]:
        """One learning curve: a point per round (the model trained on ``labelled`` documents). ``schedule``
        ((batch, until), ...) grows the batches as a real project would; without it every batch is ``batch_size``."""
        labelled = self.seed_documents(seed, min(seed_size, len(self.texts)))
        steps = list(schedule) if schedule else [(batch_size, budget)]
        budget = min(steps[-1][1], len(self.texts))
        n_rounds = len(round_sizes(len(labelled), steps, budget)) + 1
        points: list[dict[str, Any]] = []
        state = chooser.ChooserState()
        with tqdm(total=n_rounds, disable=not self.progress, desc=f"{strategy} seed {seed}", unit="round") as bar:
            for round_number in range(n_rounds):
                started = time.perf_counter()
                model = self.train(labelled)
                train_seconds = time.perf_counter() - started
                point: dict[str, Any] = {"labelled": len(labelled), **self.evaluate(model)}
                select_seconds = 0.0
                if len(labelled) < budget:
                    pool = np.setdiff1d(np.arange(len(self.texts)), labelled)
                    started = time.perf_counter()
                    n = round_sizes(len(labelled), steps, budget)[0]
                    arm = strategy
                    if strategy == strategies.AUTO:  # the platform's scoring runs choose the same way
                        arm = strategies.auto_arm(state.to_dict(), len(labelled), len(self.labels), seed)
                        point["arm"] = arm
                    chosen = self.pick(arm, model, labelled, pool, n, seed * 100_003 + round_number)
                    select_seconds = time.perf_counter() - started
                    if strategy == strategies.AUTO:  # the reward is known once the batch is labelled
                        before = np.asarray(self.Y[labelled].sum(axis=0)).ravel()
                        state = chooser.update(state, arm, chooser.reward(self.Y[pool[chosen]], before))
                    labelled = np.sort(np.concatenate([labelled, pool[chosen]]))
                point.update(
                    {
                        "train_seconds": round(train_seconds, 3),
                        "select_seconds": round(select_seconds, 3),
                        "round_seconds": round(train_seconds + select_seconds, 3),
                    }
                )
                points.append(point)
                bar.update(1)
        return points

    def full_data(self) -> dict[str, float]:
        return self.evaluate(self.train(np.arange(len(self.texts))))


def _needs_embeddings(strategy: str, n_labels: int) -> bool:
    """Whether a strategy reads the pool's embeddings (its batch rule, or a coverage scorer)."""
    return strategies.resolve(strategy, n_labels)[1] in (*EMBEDDING_RULES, strategies.AUTO)


def parse_schedule(text: str) -> list[tuple[int, int]]:
    """``"20:100,100:1000,250:5000"`` -> [(20, 100), (100, 1000), (250, 5000)]: batches of 20 up to 100 labels,
    of 100 up to 1,000, of 250 up to 5,000 (the budget)."""
    steps: list[tuple[int, int]] = []
    for part in text.split(","):
        batch, sep, until = part.strip().partition(":")
        try:
            step = (int(batch), int(until))
        except ValueError:
            raise SimulationError(f"--schedule: {part.strip()!r} is not BATCH:UNTIL (e.g. 20:100,100:1000)") from None
        if not sep or step[0] < 1 or (steps and step[1] <= steps[-1][1]) or step[1] < 1:
            raise SimulationError(f"--schedule: {part.strip()!r}: batches >= 1 and increasing label counts")
        steps.append(step)
    if not steps:
        raise SimulationError("--schedule is empty")
    return steps


def round_sizes(labelled: int, steps: Sequence[tuple[int, int]], budget: int) -> list[int]:
    """The batch sizes of the remaining rounds from ``labelled`` documents to ``budget`` under ``steps``."""
    sizes = []
    for batch, until in steps:
        while labelled < min(until, budget):
            n = min(batch, min(until, budget) - labelled)
            sizes.append(n)
            labelled += n
    return sizes


# ------------------------------------------------------------------------------------------------------ summaries
def mean_curve(runs: dict[str, list[dict[str, Any]]], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(labelled counts (R,), seed-mean metric (R,)) over the rounds every seed has."""
    curves = list(runs.values())
    rounds = min(len(curve) for curve in curves)
    counts = np.array([curves[0][r]["labelled"] for r in range(rounds)])
    values = np.array([[curve[r][metric] for r in range(rounds)] for curve in curves]).mean(axis=0)
    return counts, values


def labels_to_reach(counts: np.ndarray, values: np.ndarray, target: float) -> int | None:
    """The first labelled count at which the curve reaches ``target``; None if it never does."""
    reached = np.flatnonzero(values >= target)
    return int(counts[reached[0]]) if len(reached) else None


def summarise(curves: dict[str, dict[str, list[dict[str, Any]]]], full: dict[str, float]) -> dict[str, Any]:
    """The ``summary.json`` strategies block from the curves (strategy -> seed -> points)."""
    out: dict[str, dict[str, Any]] = {}
    for name, runs in curves.items():
        counts, micro = mean_curve(runs, "micro_f1")
        selects = [p["select_seconds"] for curve in runs.values() for p in curve if p["labelled"] < counts[-1]]
        out[name] = {
            "aulc_micro_f1": round(float(micro.mean()), 5),
            "aulc_p_at_1": round(float(mean_curve(runs, "P@1")[1].mean()), 5),
            "aulc_p_at_5": round(float(mean_curve(runs, "P@5")[1].mean()), 5),
            "labels_to_90": labels_to_reach(counts, micro, 0.90 * full["micro_f1"]),
            "labels_to_95": labels_to_reach(counts, micro, 0.95 * full["micro_f1"]),
            "select_seconds_mean": round(float(np.mean(selects)), 4) if selects else 0.0,
        }
    random = out.get("random")
    for stats in out.values():
        for level in (90, 95):
            mine, theirs = stats[f"labels_to_{level}"], random[f"labels_to_{level}"] if random else None
            stats[f"ratio_to_random_{level}"] = round(mine / theirs, 4) if mine and theirs else None
    return out


def curve_bands(curves: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """strategy -> {"labelled": [...], metric: {"mean", "low", "high"}}: the seed-mean curves with a 95 % bootstrap
    interval of the mean, round by round (what ``curves.png`` draws)."""
    out: dict[str, Any] = {}
    for name, runs in curves.items():
        out[name] = {}
        for metric in CURVE_METRICS:
            counts, values = savings.seed_matrix(runs, metric)
            mean, low, high = savings.band(values)
            out[name]["labelled"] = [int(c) for c in counts]
            out[name][metric] = {
                "mean": np.round(mean, 5).tolist(),
                "low": np.round(low, 5).tolist(),
                "high": np.round(high, 5).tolist(),
            }
    return out


def plot(curves: dict[str, dict[str, list[dict[str, Any]]]], full: dict[str, float], path: Path) -> None:
    """Seed-mean curves with a 95 % bootstrap band over seeds (micro-F1, macro-F1, P@1, P@5) and the full-data
    level with its 90 % / 95 % marks, on a log label axis, into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bands = curve_bands(curves)
    figure, axes = plt.subplots(1, 4, figsize=(20, 4.8), constrained_layout=True)
    palette = [plt.get_cmap("tab20")(i) for i in range(20)]  # 20 distinct colours; line styles tell the rest apart
    titles = {"micro_f1": "micro-F1", "macro_f1": "macro-F1", "P@1": "P@1", "P@5": "P@5"}
    for axis, metric in zip(axes, CURVE_METRICS, strict=True):
        for number, name in enumerate(curves):
            counts, band = bands[name]["labelled"], bands[name][metric]
            style = "-" if name == "random" else ("--", ":", "-.", "-")[(number // len(palette)) % 4]
            color = "black" if name == "random" else palette[(number * 2 + number // 10) % len(palette)]
            (line,) = axis.plot(counts, band["mean"], label=name, linewidth=1.6, linestyle=style, color=color)
            axis.fill_between(counts, band["low"], band["high"], color=line.get_color(), alpha=0.15)
        axis.axhline(full[metric], color="black", linestyle="--", linewidth=1, label="full data")
        for level, dash in ((0.9, ":"), (0.95, "-.")):
            axis.axhline(level * full[metric], color="grey", linestyle=dash, linewidth=1, label=f"{level:.0%} of full")
        axis.set_xscale("log")
        axis.set_xlabel("labelled documents")
        axis.set_title(f"{titles[metric]} (mean over seeds, 95 % band)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.savefig(path, dpi=100)
    plt.close(figure)


# ------------------------------------------------------------------------------------------------ the low-data regime
class LowData:
    """Learners side by side at fixed label counts on random picks (``--checkpoints``): one random order of the
    pool per seed, every learner trained on its first n documents for each checkpoint n."""

    def __init__(
        self,
        *,
        simulation: Simulation,
        label_embeddings: np.ndarray | None,
        prior_config: dict[str, Any] | None = None,
        floor: float = 0.7,
        adapt_config: dict[str, Any] | None = None,
        adapt_at: Sequence[int] | None = None,
        encoder_path: str | None = None,
        work_dir: Path | None = None,
    ) -> None:
        from learner.adapt import AdaptConfig
        from learner.prior import LabelPrior, PriorConfig

        self.simulation = simulation
        self.floor = floor
        self.adapt_config = AdaptConfig.from_dict(adapt_config or {})
        self.adapt_at = set(adapt_at) if adapt_at is not None else None
        self.encoder_path = encoder_path
        self.work_dir = work_dir
        self.prior = (
            LabelPrior(simulation.labels, label_embeddings, PriorConfig.from_dict(prior_config or {}))
            if label_embeddings is not None
            else None
        )

    def _test_inputs(self, model: Any) -> Any:
        from learner.fast import Inputs

        sim = self.simulation
        return Inputs(
            texts=sim.test_texts if model.uses_texts else None,
            embeddings=sim.test_embeddings if model.uses_embeddings else None,
        )

    def _scores(self, idx: np.ndarray, probs: np.ndarray, micro: Any, macro: Any) -> dict[str, float]:
        sim = self.simulation
        top = pad_topk(idx[:, :5], 5)
        return {
            "micro_f1": round(metrics.micro_f1(sim.Y_test, micro), 5),
            "macro_f1": round(metrics.macro_f1(sim.Y_test, macro), 5),
            "P@1": round(metrics.precision_at_k(sim.Y_test, top, 1), 5),
            "P@5": round(metrics.precision_at_k(sim.Y_test, top, 5), 5),
        }

    def _preticks(self, test_curve: dict[str, Any], threshold: float | None) -> dict[str, Any]:
        """Precision and recall on the test file (its tick curve) of the labels pre-ticked at ``threshold`` (None:
        none ticked)."""
        from learner.decision import tick_stats

        if threshold is None:
            return {"pretick_threshold": None, "pretick_precision": None, "pretick_recall": 0.0, "preticked": 0}
        stats = tick_stats(test_curve, threshold)
        return {
            "pretick_threshold": threshold,
            "pretick_precision": round(stats["precision"], 5) if stats["precision"] is not None else None,
            "pretick_recall": round(stats["recall"] or 0.0, 5),
            "preticked": stats["ticked"],
        }

    def point(self, learner: str, rows: np.ndarray) -> dict[str, Any]:
        """One learner trained on the pool documents ``rows``, measured on the test file."""
        from learner.decision import DecisionRule, pretick_threshold, tick_curve
        from learner.fast import FastTier

        sim = self.simulation
        n_labels = len(sim.labels)
        k = max(5, min(n_labels, sim.config.shortlist))
        started = time.perf_counter()
        if len(rows) == 0:
            if learner == "turn1" or self.prior is None:
                return {"labelled": 0}  # nothing to suggest before the first model
            idx, probs = self.prior.predict_topk(sim.test_embeddings, k)
            rule = DecisionRule(threshold=0.5, objective="micro_f1")
            out = self._scores(idx, probs, rule.apply(idx, probs, n_labels), rule.apply(idx, probs, n_labels))
            out.update(self._preticks({}, None))  # no evidence yet: nothing is pre-ticked
            return {"labelled": 0, **out, "train_seconds": 0.0}
        if learner == "adapt":
            if len(rows) < 2 or (self.adapt_at is not None and len(rows) not in self.adapt_at):
                return {"labelled": len(rows)}
            try:
                model, test_inputs, adapt_info = self._adapted(rows)
            except ValueError as exc:  # e.g. no two labelled documents share a label: nothing to adapt on
                model = FastTier.train(
                    sim._inputs_for(rows, True), sim.Y[rows], sim.labels, sim.config, prior=self.prior
                )
                test_inputs, adapt_info = self._test_inputs(model), {"skipped": str(exc)}
            train_seconds = time.perf_counter() - started
        else:
            prior = self.prior if learner == "prior" else None
            model = FastTier.train(
                sim._inputs_for(rows, prior is not None), sim.Y[rows], sim.labels, sim.config, prior=prior
            )
            train_seconds = time.perf_counter() - started
            test_inputs, adapt_info = self._test_inputs(model), None
        idx, probs = model.predict_topk(test_inputs, k)
        micro = model.rules["micro_f1"].apply(idx, probs, n_labels)
        macro = model.rules.get("macro_f1", model.rules["micro_f1"]).apply(idx, probs, n_labels)
        out = self._scores(idx, probs, micro, macro)
        threshold = pretick_threshold(model.tick_curve, self.floor) if model.tick_curve is not None else None
        test_curve = tick_curve(idx, probs, sim.Y_test)
        out.update(self._preticks(test_curve, threshold))
        # The out-of-fold evidence the threshold came from, and the same curve on the test file: other pre-tick
        # rules can be checked without retraining.
        point = {
            "labelled": len(rows),
            **out,
            "train_seconds": round(train_seconds, 3),
            "tick_curve": model.tick_curve,
            "test_tick_curve": test_curve,
        }
        if adapt_info is not None:
            point["adaptation"] = adapt_info
        return point

    def _adapted(self, rows: np.ndarray) -> tuple[Any, Any, dict[str, Any]]:
        """The ``adapt`` learner on the pool documents ``rows``: the encoder adapted to most of them
        (``learner.adapt.check_split`` holds the rest out to check it), everything it reads re-embedded with it, the
        fast tier with the label-name prior trained on top of all of them. The pre-tick evidence comes from the
        held-out documents only (the adapted encoder's embeddings of the others are optimistic). Returns (model,
        the test inputs, what the adaptation cost and what the held-out check measured)."""
        import dataclasses
        import shutil
        import tempfile

        from learner.adapt import adapt_encoder, check_adaptation, check_split
        from learner.config import EncoderConfig
        from learner.encoder import Encoder
        from learner.fast import FastTier, Inputs
        from learner.prior import LabelPrior, label_text

        sim = self.simulation
        texts = [sim.texts[i] for i in rows]
        seed = int(rows.sum()) % 100_003
        fit, check = check_split(len(rows), seed=seed)
        folder = Path(tempfile.mkdtemp(prefix="adapted-", dir=self.work_dir))
        try:
            started = time.perf_counter()
            config = dataclasses.replace(self.adapt_config, seed=seed)
            info = adapt_encoder(
                self.encoder_path, [texts[i] for i in fit], sim.Y[rows[fit]], folder / "encoder", config
            )
            adapt_seconds = time.perf_counter() - started
            encoder = Encoder.load(EncoderConfig(path=str(folder / "encoder")))
            started = time.perf_counter()
            X = encoder.encode(texts)  # (n, D)
            X_test = encoder.encode(sim.test_texts)  # (T, D)
            vectors = encoder.encode([label_text(name) for name in sim.labels])  # (L, D)
            encode_seconds = time.perf_counter() - started
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        prior = LabelPrior(sim.labels, vectors, self.prior.config if self.prior is not None else None)
        resolved = sim.config.resolve(len(sim.labels))

        def adapted_inputs(part: np.ndarray) -> Any:
            return Inputs(texts=[texts[i] for i in part] if resolved.needs_texts else None, embeddings=X[part])

        checked = None
        if len(check):
            started = time.perf_counter()
            checked = check_adaptation(
                (sim._inputs_for(rows[fit], True), sim._inputs_for(rows[check], True)),
                (adapted_inputs(fit), adapted_inputs(check)),
                sim.Y[rows[fit]],
                sim.Y[rows[check]],
                sim.labels,
                sim.config,
                priors=(self.prior, prior),
            )
            checked["seconds"] = round(time.perf_counter() - started, 3)
        evidence = np.zeros(len(rows), dtype=bool)
        evidence[check] = True
        model = FastTier.train(
            adapted_inputs(np.arange(len(rows))), sim.Y[rows], sim.labels, sim.config, prior=prior, evidence=evidence
        )
        test_inputs = Inputs(texts=sim.test_texts if model.uses_texts else None, embeddings=X_test)
        cost = {
            "adapt_seconds": round(adapt_seconds, 3),
            "encode_seconds": round(encode_seconds, 3),
            "steps": info.get("steps"),
            "pairs": info.get("n_pairs"),
            "adapted_on": len(fit),
            "check": checked,
        }
        return model, test_inputs, cost

    def run(self, learner: str, seed: int, checkpoints: Sequence[int]) -> list[dict[str, Any]]:
        order = np.random.default_rng([seed, 21]).permutation(len(self.simulation.texts))
        points = []
        for n in tqdm(checkpoints, disable=not self.simulation.progress, desc=f"{learner} seed {seed}", unit="point"):
            points.append(self.point(learner, np.sort(order[: min(n, len(order))])))
        return points

    def frequency_baseline(self) -> dict[str, float]:
        """P@1 / P@5 of ranking every document's labels by their frequency in the whole pool (an oracle a project
        at 0 labels does not have: the bar the prior must clear)."""
        sim = self.simulation
        top = np.argsort(-np.asarray(sim.Y.sum(axis=0)).ravel(), kind="stable")[:5]
        idx = pad_topk(np.tile(top, (sim.Y_test.shape[0], 1)), 5)
        return {
            "P@1": round(metrics.precision_at_k(sim.Y_test, idx, 1), 5),
            "P@5": round(metrics.precision_at_k(sim.Y_test, idx, 5), 5),
        }


def interval(values: Sequence[float | None], *, n_boot: int = 2000, seed: int = 0) -> dict[str, float | None]:
    """Mean and 95 % percentile-bootstrap interval of the mean over seeds (None values are left out)."""
    kept = np.array([v for v in values if v is not None], dtype=np.float64)
    if kept.size == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    draws = np.random.default_rng(seed).choice(kept, size=(n_boot, kept.size), replace=True).mean(axis=1)
    return {
        "mean": round(float(kept.mean()), 5),
        "low": round(float(np.percentile(draws, 2.5)), 5),
        "high": round(float(np.percentile(draws, 97.5)), 5),
        "n": int(kept.size),
    }


def summarise_checkpoints(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """learner -> checkpoint -> metric -> {mean, low, high, n} (and the mean train seconds)."""
    out: dict[str, Any] = {}
    for learner, seeds in runs.items():
        curves = list(seeds.values())
        out[learner] = {}
        for r in range(min(len(curve) for curve in curves)):
            points = [curve[r] for curve in curves]
            if len(points[0]) == 1:  # no model at 0 labels
                continue
            row: dict[str, Any] = {name: interval([p.get(name) for p in points]) for name in LOW_METRICS}
            row["train_seconds"] = round(float(np.mean([p.get("train_seconds", 0.0) for p in points])), 3)
            out[learner][str(points[0]["labelled"])] = row
    return out


def format_checkpoints(summary: dict[str, Any]) -> str:
    """A Markdown table: one row per checkpoint, a column per learner and metric (mean [95 % interval])."""
    learners = list(summary["learners"])
    counts = sorted({int(n) for rows in summary["learners"].values() for n in rows})
    lines = []
    for metric in LOW_METRICS:
        lines.append(f"\n{metric} (mean over {summary['seeds']} seeds [95 % interval])\n")
        lines.append("| labels | " + " | ".join(learners) + " |")
        lines.append("|--:|" + "--:|" * len(learners))
        for n in counts:
            cells = []
            for learner in learners:
                cell = summary["learners"][learner].get(str(n), {}).get(metric)
                if not cell or cell["mean"] is None:
                    cells.append("–")
                else:
                    cells.append(f"{cell['mean']:.3f} [{cell['low']:.3f}, {cell['high']:.3f}]")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    base = summary.get("frequency_baseline") or {}
    if base:
        lines.append(
            f"\nfrequency baseline (pool label frequencies) at 0 labels: P@1 {base['P@1']:.3f}, P@5 {base['P@5']:.3f}"
        )
    return "\n".join(lines)


def plot_checkpoints(runs: dict[str, dict[str, list[dict[str, Any]]]], path: Path) -> None:
    """Mean and min-max band over seeds of micro-F1, macro-F1, P@1 and the pre-tick precision against labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 4, figsize=(18, 4.2), constrained_layout=True)
    for axis, metric in zip(axes, ("micro_f1", "macro_f1", "P@1", "pretick_precision"), strict=True):
        for learner, seeds in runs.items():
            curves = list(seeds.values())
            rounds = min(len(c) for c in curves)
            xs, means, lows, highs = [], [], [], []
            for r in range(rounds):
                values = [float(c[r][metric]) for c in curves if c[r].get(metric) is not None]
                if not values:
                    continue
                xs.append(max(curves[0][r]["labelled"], 5))  # 0 labels drawn at 5 on the log axis
                means.append(float(np.mean(values)))
                lows.append(float(np.min(values)))
                highs.append(float(np.max(values)))
            if not xs:
                continue
            (line,) = axis.plot(xs, means, marker="o", label=learner)
            axis.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.15)
            axis.set_xscale("log")
        axis.set_xlabel("labelled documents (0 drawn at 5)")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def replace_labels(split: Any, path: str | None, what: str) -> Any:
    """The split with each document's labels taken from a side file of {id, labels} (joined on id)."""
    if path is None:
        return split
    import dataclasses
    import gzip

    try:
        with (
            gzip.open(path, "rt", encoding="utf-8") if str(path).endswith(".gz") else open(path, encoding="utf-8") as f
        ):
            side = {str(r["id"]): list(r["labels"]) for r in map(json.loads, filter(str.strip, f))}
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise SimulationError(f"--{what}: {exc}") from exc
    missing = [doc_id for doc_id in split.ids if str(doc_id) not in side]
    if missing:
        raise SimulationError(f"--{what}: {len(missing)} documents have no labels there, e.g. {missing[:3]}")
    return dataclasses.replace(split, label_lists=[side[str(doc_id)] for doc_id in split.ids])


def _held_rows(n: int, size: int) -> np.ndarray:
    """(n,) bool: the `size` documents held out of a pool of n (seed 3)."""
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng(3).choice(n, size=size, replace=False)] = True
    return held


def _hold_out(split: Any, size: int) -> tuple[Any, Any]:
    """(the rest, `size` documents) of a split, drawn at random (seed 3): a test set out of the train file."""
    held = _held_rows(len(split), size)
    return (
        _subset(split, np.flatnonzero(~held), name="train", sha256=f"{split.sha256}-train{size}"),
        _subset(split, np.flatnonzero(held), name="test", sha256=f"{split.sha256}-test{size}"),
    )


def _subset(split: Any, rows: np.ndarray, **changes: Any) -> Any:
    """The documents `rows` of a split (ids, texts and labels), with `changes` (its name, the cache key)."""
    import dataclasses

    return dataclasses.replace(
        split,
        ids=[split.ids[i] for i in rows],
        texts=[split.texts[i] for i in rows],
        label_lists=[split.label_lists[i] for i in rows],
        **changes,
    )


def sample_split(split: Any, size: int | None, seed: int) -> Any:
    if size is None or size >= len(split):
        return split
    rows = np.sort(np.random.default_rng(seed).choice(len(split), size=size, replace=False))
    return _subset(split, rows, sha256=f"{split.sha256}-sample{size}-{seed}")


def build_simulation(
    train: Any,
    test: Any,
    labels: list[str],
    config: dict[str, Any],
    embeddings: dict[str, np.ndarray],
    args: Any,
    prior: Any = None,
) -> Simulation:
    """The Simulation of two splits (the pool and the test file) over `labels`, with whatever embeddings exist."""
    return Simulation(
        texts=list(train.texts),
        Y=multi_hot(train.label_lists, labels),
        test_texts=list(test.texts),
        Y_test=multi_hot(test.label_lists, labels),
        labels=labels,
        config=config,
        embeddings=embeddings.get("train"),
        test_embeddings=embeddings.get("test"),
        shortlist=args.shortlist,
        progress=not args.no_progress,
        prior=prior,
    )


def _run_checkpoints(args: argparse.Namespace) -> dict[str, Any]:
    from learner.benchmark import embed_texts
    from learner.fast import FastTierConfig
    from learner.prior import label_text

    try:
        checkpoints = sorted({int(n) for n in args.checkpoints.split(",") if n.strip()})
    except ValueError as exc:
        raise SimulationError(f"--checkpoints must be comma-separated label counts: {exc}") from exc
    if not checkpoints or checkpoints[0] < 0:
        raise SimulationError("--checkpoints needs label counts >= 0")
    learners = [name.strip() for name in args.learners.split(",") if name.strip()]
    unknown = [name for name in learners if name not in LEARNERS]
    if unknown or not learners:
        raise SimulationError(f"--learners: unknown {unknown}; choose from {', '.join(LEARNERS)}")
    if not 0 < args.floor < 1:
        raise SimulationError(f"--floor must be in (0, 1); got {args.floor}")
    try:
        config = parse_config(args.config)
        prior_config = parse_config(args.prior_config)
        train, test = load_split("train", args.train), load_split("test", args.test)
    except BenchmarkError as exc:
        raise SimulationError(str(exc)) from exc
    train = sample_split(replace_labels(train, args.train_labels, "train-labels"), args.pool_size, 1)
    if args.test_from_pool:
        if not 0 < args.test_from_pool < len(train):
            raise SimulationError(f"--test-from-pool must be between 1 and {len(train) - 1}")
        whole = train  # embedded as one (cached) split, then cut in two
        train, test = _hold_out(train, args.test_from_pool)
    else:
        test = sample_split(replace_labels(test, args.test_labels, "test-labels"), args.test_size, 2)
    labels = label_vocabulary([train, test])
    if args.labels is not None:  # the whole label set of a project, not only the labels the samples use
        try:
            with open(args.labels, encoding="utf-8") as handle:
                rows = [line.rstrip("\n").split("\t")[0] for line in handle if line.strip()]
        except OSError as exc:
            raise SimulationError(f"--labels: {exc}") from exc
        named = sorted(set(rows[1:] if rows and rows[0] == "label" else rows))
        unknown = sorted(set(labels) - set(named))
        if unknown:
            raise SimulationError(f"--labels lacks {len(unknown)} label(s) the data uses, e.g. {unknown[:3]}")
        labels = named
    try:
        FastTierConfig.from_dict(config).resolve(len(labels))
    except (TypeError, ValueError) as exc:
        raise SimulationError(f"--config: {exc}") from exc
    try:
        if args.test_from_pool:
            vectors = embed_splits(
                [whole], encoder_path=args.encoder, cache_dir=Path(args.cache_dir), progress=not args.no_progress
            )[0]["train"]
            held = _held_rows(len(whole), args.test_from_pool)
            embeddings = {"train": vectors[~held], "test": vectors[held]}
        else:
            embeddings, _ = embed_splits(
                [train, test], encoder_path=args.encoder, cache_dir=Path(args.cache_dir), progress=not args.no_progress
            )
        label_embeddings = (
            embed_texts(
                [label_text(name) for name in labels],
                encoder_path=args.encoder,
                cache_dir=Path(args.cache_dir),
                progress=not args.no_progress,
            )
            if "prior" in learners or "adapt" in learners
            else None
        )
    except BenchmarkError as exc:
        raise SimulationError(str(exc)) from exc
    simulation = build_simulation(train, test, labels, config, embeddings, args)
    out = Path(args.out)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    try:
        adapt_at = [int(n) for n in args.adapt_at.split(",") if n.strip()] if args.adapt_at else None
        low = LowData(
            simulation=simulation,
            label_embeddings=label_embeddings,
            prior_config=prior_config,
            floor=args.floor,
            adapt_config=parse_config(args.adapt_config),
            adapt_at=adapt_at,
            encoder_path=args.encoder,
            work_dir=out,
        )
    except (TypeError, ValueError, BenchmarkError) as exc:
        raise SimulationError(f"--prior-config / --adapt-config / --adapt-at: {exc}") from exc
    base = [train.sha256, test.sha256, args.config, args.prior_config, args.encoder, args.floor, checkpoints]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for learner in learners:
        runs[learner] = {}
        adapt_key = [args.adapt_config, adapt_at, "held-out check"] if learner == "adapt" else []
        key = json.dumps(base + adapt_key, sort_keys=True)
        fingerprint = hashlib.sha256(key.encode()).hexdigest()[:16]
        for seed in range(args.seeds):
            file = runs_dir / f"checkpoints-{learner}-seed{seed}.json"
            saved = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
            if saved.get("fingerprint") == fingerprint:
                runs[learner][str(seed)] = saved["result"]
                continue
            result = low.run(learner, seed, checkpoints)
            tmp = file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"fingerprint": fingerprint, "result": result}), encoding="utf-8")
            tmp.replace(file)
            runs[learner][str(seed)] = result
    summary = {
        "learners": summarise_checkpoints(runs),
        "frequency_baseline": low.frequency_baseline(),
        "seeds": args.seeds,
        "checkpoints": checkpoints,
        "floor": args.floor,
        "n_labels": len(labels),
        "pool_documents": len(train),
        "test_documents": len(test),
        "prior_config": low.prior.config.to_dict() if low.prior is not None else None,
        "args": dict(vars(args)),
    }
    (out / "checkpoints.json").write_text(json.dumps({"runs": runs, "args": summary["args"]}, indent=1), "utf-8")
    (out / "checkpoints-summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    plot_checkpoints(runs, out / "checkpoints.png")
    return summary


# ------------------------------------------------------------------------------------------------------ the CLI
def _fingerprint(args: argparse.Namespace, train_sha: str, test_sha: str) -> str:
    """What a stored run depends on: the data, the model settings and the round schedule."""
    parts = [train_sha, test_sha, args.config, args.encoder, args.seed_size, args.batch_size, args.budget]
    parts.append(args.shortlist)
    if args.schedule or args.prior:  # the runs stored before these options existed keep their fingerprint
        parts += [args.schedule, args.prior, args.prior_config]
    key = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _run(args: argparse.Namespace) -> dict[str, Any]:
    names = _check_args(args)
    try:
        config = parse_config(args.config)
        train, test = load_split("train", args.train), load_split("test", args.test)
    except BenchmarkError as exc:
        raise SimulationError(str(exc)) from exc
    from learner.fast import FastTierConfig

    train = sample_split(replace_labels(train, args.train_labels, "train-labels"), args.pool_size, 1)
    test = sample_split(replace_labels(test, args.test_labels, "test-labels"), args.test_size, 2)
    labels = label_vocabulary([train, test])
    try:
        resolved = FastTierConfig.from_dict(config).resolve(len(labels))
        prior_config = parse_config(args.prior_config)
    except (TypeError, ValueError, BenchmarkError) as exc:
        raise SimulationError(f"--config / --prior-config: {exc}") from exc
    schedule = parse_schedule(args.schedule) if args.schedule else None
    model_embeddings = resolved.needs_embeddings or args.prior
    needs_embeddings = model_embeddings or any(_needs_embeddings(name, len(labels)) for name in names)
    embeddings: dict[str, np.ndarray] = {}
    prior = None
    try:
        if needs_embeddings:
            # The test file is encoded only when the model reads embeddings; batch rules need the pool's alone.
            splits = [train, test] if model_embeddings else [train]
            embeddings, _ = embed_splits(
                splits, encoder_path=args.encoder, cache_dir=Path(args.cache_dir), progress=not args.no_progress
            )
        if args.prior:
            from learner.benchmark import embed_texts
            from learner.prior import LabelPrior, PriorConfig, label_text

            vectors = embed_texts(
                [label_text(name) for name in labels],
                encoder_path=args.encoder,
                cache_dir=Path(args.cache_dir),
                progress=not args.no_progress,
            )
            prior = LabelPrior(labels, vectors, PriorConfig.from_dict(prior_config))
    except (BenchmarkError, TypeError, ValueError) as exc:
        raise SimulationError(str(exc)) from exc
    simulation = build_simulation(train, test, labels, config, embeddings, args, prior=prior)
    out = Path(args.out)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint(args, train.sha256, test.sha256)

    def stored(name: str, compute: Any) -> Any:
        file = runs_dir / f"{name}.json"
        if file.is_file():
            saved = json.loads(file.read_text(encoding="utf-8"))
            if saved.get("fingerprint") == fingerprint:
                return saved["result"]
        result = compute()
        tmp = file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"fingerprint": fingerprint, "result": result}), encoding="utf-8")
        tmp.replace(file)
        return result

    full = stored("full-data", simulation.full_data)
    curves: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for name in names:
        resolved_name = strategies.default_for(len(labels)) if name == "default" else name
        curves[name] = {}
        for seed in range(args.seeds):
            curves[name][str(seed)] = stored(
                f"{resolved_name}-seed{seed}",
                lambda resolved_name=resolved_name, seed=seed: simulation.run(
                    resolved_name,
                    seed,
                    seed_size=args.seed_size,
                    batch_size=args.batch_size,
                    budget=args.budget,
                    schedule=schedule,
                ),
            )
    summary = {
        "full_data": full,
        "strategies": summarise(curves, full),
        "savings": savings.savings(curves, full, CURVE_METRICS) if "random" in curves else None,
        "curves": curve_bands(curves),
        "default_strategy": strategies.default_for(len(labels)),
        "n_labels": len(labels),
        "pool_documents": len(train),
        "test_documents": len(test),
        "args": dict(vars(args)),
    }
    payload = {
        "strategies": {
            name: {"resolves_to": strategies.default_for(len(labels)) if name == "default" else name, "seeds": runs}
            for name, runs in curves.items()
        },
        "full_data": full,
        "config": config,
        "args": summary["args"],
    }
    (out / "curves.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    plot(curves, full, out / "curves.png")
    return summary


def format_savings(table: dict[str, Any]) -> str:
    """Markdown: per metric, the labels each strategy needs relative to random's (ratio [95 % interval])."""
    lines = []
    for metric in CURVE_METRICS:
        lines.append(f"\n{metric}: labels to reach the target, ratio to random [95 % interval over seeds]\n")
        targets = [t for t in savings.TARGETS if all(t in per_metric[metric] for per_metric in table.values())]
        titles = {"end": "random's end value", "90": "90 % of full data", "95": "95 % of full data"}
        header = [titles.get(t, f"random's value at {t[3:]} labels") for t in targets]
        lines.append("| strategy | " + " | ".join(header) + " |")
        lines.append("|---|" + "--:|" * len(targets))
        for name, per_metric in table.items():
            cells = []
            for target in targets:
                cell = per_metric[metric][target]
                if cell["labels"] is None and cell["random_labels"] is None:
                    cells.append("neither reaches it")
                    continue
                labels = "never" if cell["labels"] is None else f"{cell['labels']:.0f}"
                ratio = "–" if cell["ratio"] is None else f"{cell['ratio']:.2f}"
                low = "–" if cell["low"] is None else f"{cell['low']:.2f}"
                high = "never" if cell["high"] is None else f"{cell['high']:.2f}"
                cells.append(f"{labels}: {ratio} [{low}, {high}]")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_summary(summary: dict[str, Any]) -> str:
    """A Markdown table of the summary."""
    lines = [
        "| strategy | AULC micro-F1 | AULC P@1 | AULC P@5 | labels to 90% / 95% | ratio to random 90% / 95% "
        "| select s |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for name, s in summary["strategies"].items():
        lines.append(
            f"| {name} | {s['aulc_micro_f1']:.4f} | {s['aulc_p_at_1']:.4f} | {s['aulc_p_at_5']:.4f} | "
            f"{s['labels_to_90']} / {s['labels_to_95']} | {s['ratio_to_random_90']} / {s['ratio_to_random_95']} | "
            f"{s['select_seconds_mean']} |"
        )
    full = summary["full_data"]
    lines.append(
        f"\nfull data: micro-F1 {full['micro_f1']:.4f}, macro-F1 {full['macro_f1']:.4f}, "
        f"P@1 {full['P@1']:.4f}, P@5 {full['P@5']:.4f}"
    )
    if summary.get("savings"):
        lines.append(format_savings(summary["savings"]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        if args.checkpoints is not None:
            _check_args(args)
            low = _run_checkpoints(args)
            print(format_checkpoints(low))
            print(f"wrote {Path(args.out) / 'checkpoints-summary.json'}, checkpoints.json and checkpoints.png")
            return 0
        summary = _run(args)
    except SimulationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    print(f"wrote {Path(args.out) / 'summary.json'}, curves.json and curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
