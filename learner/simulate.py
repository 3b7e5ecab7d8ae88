"""Simulated active learning: how many expert labels each strategy saves against random picks.

Command line (a public contract: keep it stable)::

    python -m learner.simulate --train T.jsonl.gz --test E.jsonl.gz --strategies random,default[,...]
        --seed-size 20 --batch-size 20 --budget 1000 --seeds 3 [--tier fast] [--config JSON]
        [--encoder PATH] [--cache-dir DIR] [--shortlist K] [--no-progress] --out DIR

The annotator is simulated by the gold labels of the train file (the pool). For every seed, every strategy starts
from the same ``--seed-size`` random documents; each round trains the fast tier of the learner on the labelled
documents, evaluates it on the test file, and lets the strategy pick ``--batch-size`` more, until ``--budget``
documents are labelled (the seed documents count). The same model trained on the whole train file gives the
full-data score. Strategies see each pool document's ``--shortlist`` best labels (every label up to 100 labels).

Writes into ``--out``:

- ``curves.json``: ``{"strategies": {NAME: {"resolves_to", "seeds": {SEED: [{"labelled", "micro_f1",
  "macro_f1", "P@1", "P@5", "train_seconds", "select_seconds", "round_seconds"}, ...]}}}, "full_data", "config",
  "args"}``; round_seconds = training + selection (the last round has no selection).
- ``summary.json``: ``{"full_data": {"micro_f1", "macro_f1", "P@1", "P@5"}, "strategies": {NAME:
  {"aulc_micro_f1", "aulc_p_at_1", "aulc_p_at_5", "labels_to_90", "labels_to_95", "ratio_to_random_90",
  "ratio_to_random_95", "select_seconds_mean"}}, "default_strategy", ...}``. AULC is the mean over the rounds of
  the seed-mean curve; labels_to_X is the first labelled count at which the seed-mean micro-F1 reaches X% of the
  full-data micro-F1 (null when it never does); ratio_to_random_X is that count over random's (null unless both
  reach it and random was run).
- ``curves.png``: the seed-mean curves (micro-F1 and P@1) with a band from the lowest to the highest seed.
- ``runs/``: one finished (strategy, seed) run per file, so that an interrupted simulation resumes where it
  stopped when run again with the same arguments.

micro-F1 is measured at the model's micro-F1 decision rule, macro-F1 at its macro rule (over the labels present in
the test file), P@k on its top-k. Exit status: 0 on success, 2 on a usage or input error, with a message on stderr.
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

from learner import metrics, strategies
from learner.benchmark import BenchmarkError, _pad, embed_splits, label_vocabulary, load_split, parse_config
from learner.data import multi_hot

logger = logging.getLogger(__name__)

SHORTLIST = 100  # labels per pool document the strategies see (every label in smaller label sets)
CURVE_METRICS = ("micro_f1", "macro_f1", "P@1", "P@5")


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
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--out", required=True, help="output folder")
    return parser


def _check_args(args: argparse.Namespace) -> list[str]:
    for name in ("seed_size", "batch_size", "budget", "seeds", "shortlist"):
        if getattr(args, name) < 1:
            raise SimulationError(f"--{name.replace('_', '-')} must be at least 1; got {getattr(args, name)}")
    if args.budget < args.seed_size:
        raise SimulationError(f"--budget ({args.budget}) must be at least --seed-size ({args.seed_size})")
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
    ) -> None:
        from learner.fast import FastTierConfig

        self.texts, self.Y, self.labels = texts, Y.tocsr(), labels
        self.test_texts, self.Y_test = test_texts, Y_test.tocsr()
        self.config = FastTierConfig.from_dict(config)
        self.embeddings, self.test_embeddings = embeddings, test_embeddings
        self.shortlist = min(shortlist, len(labels))
        self.progress = progress

    def _inputs(self, rows: np.ndarray) -> Any:
        from learner.fast import Inputs

        resolved = self.config.resolve(len(self.labels))
        return Inputs(
            texts=[self.texts[i] for i in rows] if resolved.needs_texts else None,
            embeddings=self.embeddings[rows] if resolved.needs_embeddings and self.embeddings is not None else None,
        )

    def train(self, rows: np.ndarray) -> Any:
        from learner.fast import FastTier

        return FastTier.train(self._inputs(rows), self.Y[rows], self.labels, self.config)

    def evaluate(self, model: Any) -> dict[str, float]:
        from learner.fast import Inputs

        resolved = self.config.resolve(len(self.labels))
        inputs = Inputs(
            texts=self.test_texts if resolved.needs_texts else None,
            embeddings=self.test_embeddings if resolved.needs_embeddings else None,
        )
        # One pass over the test file: the shortlist model.predict would compute, then each rule on it.
        idx, probs = model.predict_topk(inputs, max(5, min(len(self.labels), model.config.shortlist)))
        micro = model.rules["micro_f1"].apply(idx, probs, len(self.labels))
        macro = model.rules.get("macro_f1", model.rules["micro_f1"]).apply(idx, probs, len(self.labels))
        idx = _pad(idx[:, :5], 5)  # fewer than 5 labels: the missing ranks count as misses
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
        if scorer == "random":
            scores = strategies.random_scores(len(pool), seed)
            if rule == "top":
                return strategies.select_top(scores, n, seed=seed)
            if self.embeddings is None:
                raise SimulationError(f"{strategy} needs embeddings of the pool")
            return strategies.select_batch(strategy, scores, n, embeddings=self.embeddings[pool], seed=seed)
        idx, probs = model.predict_topk(self._inputs(pool), self.shortlist)  # (U, K) each
        counts = np.asarray(self.Y[labelled].sum(axis=0)).ravel()  # (L,) labelled positives per label
        mean_cardinality = float(counts.sum() / max(len(labelled), 1))
        needs_embeddings = rule in ("kmeans", "ranked")
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
            seed=seed,
        )

    def run(self, strategy: str, seed: int, *, seed_size: int, batch_size: int, budget: int) -> list[dict[str, Any]]:
        """One learning curve: a point per round (the model trained on ``labelled`` documents)."""
        labelled = self.seed_documents(seed, min(seed_size, len(self.texts)))
        budget = min(budget, len(self.texts))
        n_rounds = 1 + -(-(budget - len(labelled)) // batch_size)
        points: list[dict[str, Any]] = []
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
                    n = min(batch_size, budget - len(labelled))
                    chosen = self.pick(strategy, model, labelled, pool, n, seed * 100_003 + round_number)
                    select_seconds = time.perf_counter() - started
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


def plot(curves: dict[str, dict[str, list[dict[str, Any]]]], full: dict[str, float], path: Path) -> None:
    """Seed-mean curves with a min-max band over seeds, micro-F1 and P@1, into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    palette = [plt.get_cmap("tab20")(i) for i in range(20)]  # 20 distinct colours; line styles tell the rest apart
    for axis, metric, title in ((axes[0], "micro_f1", "micro-F1"), (axes[1], "P@1", "P@1")):
        for number, (name, runs) in enumerate(curves.items()):
            rounds = min(len(curve) for curve in runs.values())
            counts = np.array([p["labelled"] for p in next(iter(runs.values()))[:rounds]])
            values = np.array([[p[metric] for p in curve[:rounds]] for curve in runs.values()])  # (seeds, R)
            style = ("-", "--", ":", "-.")[(number // len(palette)) % 4]
            color = palette[
                (number * 2) % len(palette) if number < len(palette) // 2 else (number * 2 + 1) % len(palette)
            ]
            (line,) = axis.plot(counts, values.mean(axis=0), label=name, linewidth=1.6, linestyle=style, color=color)
            axis.fill_between(counts, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.15)
        axis.axhline(full[metric], color="black", linestyle="--", linewidth=1, label="full data")
        if metric == "micro_f1":
            axis.axhline(0.95 * full[metric], color="grey", linestyle=":", linewidth=1, label="95% of full data")
        axis.set_xlabel("labelled documents")
        axis.set_ylabel(title)
        axis.set_title(f"{title} on the test set (mean over seeds, band: min-max)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ------------------------------------------------------------------------------------------------------ the CLI
def _fingerprint(args: argparse.Namespace, train_sha: str, test_sha: str) -> str:
    """What a stored run depends on: the data, the model settings and the round schedule."""
    key = json.dumps(
        [train_sha, test_sha, args.config, args.encoder, args.seed_size, args.batch_size, args.budget, args.shortlist],
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _run(args: argparse.Namespace) -> dict[str, Any]:
    names = _check_args(args)
    try:
        config = parse_config(args.config)
        train, test = load_split("train", args.train), load_split("test", args.test)
    except BenchmarkError as exc:
        raise SimulationError(str(exc)) from exc
    from learner.fast import FastTierConfig

    labels = label_vocabulary([train, test])
    try:
        resolved = FastTierConfig.from_dict(config).resolve(len(labels))
    except (TypeError, ValueError) as exc:
        raise SimulationError(f"--config: {exc}") from exc
    needs_embeddings = resolved.needs_embeddings or any(
        strategies.resolve(name, len(labels))[1] in ("kmeans", "ranked") for name in names
    )
    embeddings: dict[str, np.ndarray] = {}
    if needs_embeddings:
        try:
            # The test file is encoded only when the model reads embeddings; batch rules need the pool's alone.
            splits = [train, test] if resolved.needs_embeddings else [train]
            embeddings, _ = embed_splits(
                splits, encoder_path=args.encoder, cache_dir=Path(args.cache_dir), progress=not args.no_progress
            )
        except BenchmarkError as exc:
            raise SimulationError(str(exc)) from exc
    simulation = Simulation(
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
    )
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
                    resolved_name, seed, seed_size=args.seed_size, batch_size=args.batch_size, budget=args.budget
                ),
            )
    summary = {
        "full_data": full,
        "strategies": summarise(curves, full),
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
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        summary = _run(args)
    except SimulationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    print(f"wrote {Path(args.out) / 'summary.json'}, curves.json and curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
