"""tibkat-gnd, honestly (issue 20 point 2): settings chosen on train only, dev reported once, PECOS measured alongside.

Splits (file order of train.jsonl.gz, no shuffling):

- tune = every 10th document of train (rows 9, 19, ...), train' = the rest: every tuned setting is chosen here.
  train.jsonl.gz is sorted by record type and language (Article/de, Book/de, Book/en, ..., Thesis/en), so its last
  10 % (``--tune-split last``, the default until 2026-12-07) holds theses and reports only: a shifted sample on
  which every system scores ~15 points of P@1 lower than on the rest;
- train = all of train, dev = dev.jsonl.gz: measured once, with the chosen settings.

The label vocabulary is all of labels.tsv (as bench/bench_xmc.py), so labels never seen in training count as misses.

1. Tuning (one subprocess): our fast tier (TF-IDF + XR-Linear + label-name matcher + nearest-neighbour label vote
   (learner.xmc.neighbours), with the fast tier's tree
   defaults for this many documents: ``learner.xmc.config.large_data_settings``, whose training settings were
   screened on a split of train by bench/bench_xmc_training.py)
   is trained on train' ONCE (``path_exponent`` 1.0, PECOS's plain product, during training: it only orders the
   beam that picks the matcher-aware negatives), the matcher is fitted with and without stemming, and the
   inference-time settings are swept on tune without retraining: path exponent x PIFA re-ranking weight x
   label-name blend weight x stemming; at the best of those, the neighbour vote (its weight x k x similarity power
   x max_df) x label-name weight; at the best of that, path exponent x PIFA weight again; then beam 10 vs 20.
   Choice: P@1 on tune over every point tried, ties by P@5.
2. Final (one subprocess): retrain on all of train with the chosen settings, top-10 on dev.
3. The peer, Amazon PECOS XR-Linear (libpecos 1.2.8 in its own venv, never a dependency of the product; one
   subprocess per split pair, bench/pecos_xr_linear.py): its own TF-IDF vectorizer and ``XLinearModel.train``
   with its defaults, on train' -> tune and on train -> dev, top-10 passed back as label indices in our order.

P@1/3/5, nDCG@5, PSP@5 (propensities A = 0.55, B = 1.5 from the training split's counts, as learner.benchmark) and
recall@10 are computed here, in the parent, with learner.metrics for both systems. Train seconds (featurisation
included) and peak RSS are measured by each training subprocess on itself (VmHWM) and on its forked workers
(RUSAGE_CHILDREN). Create the peer's venv once, outside the repository:

    python3.11 -m venv /work/pecos-venv && /work/pecos-venv/bin/pip install libpecos==1.2.8 numpy==1.26.4 scipy==1.13.1
    .venv/bin/python bench/bench_xmc_honest.py                                  # the whole run (30-60 min)
    .venv/bin/python bench/bench_xmc_honest.py --train-fraction-docs 10000 --dev-docs 2000 --out /tmp/x.json

Writes bench/results/xmc-honest.json (after every phase, so a stopped run keeps what it measured) and prints
Markdown tables. The machine is shared: the load average around every phase is recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, ROOT, header, source_hash, table, write_json

DATA = Path("/work/shared/datasets/tibkat-gnd")
PECOS_PYTHON = Path("/work/pecos-venv/bin/python")
TUNE_FRACTION = 0.1
K = 10
# the grid swept on tune (inference time: one trained model)
PATH_EXPONENTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
PIFA_WEIGHTS = (0.0, 0.05, 0.1, 0.2)
BLEND_WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
STEMS = (True, False)
BEAMS = (10, 20)
NEIGHBOUR_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4)
NEIGHBOUR_KS = (10, 20, 50)
NEIGHBOUR_POWERS = (1.0, 2.0, 4.0)
NEIGHBOUR_MAX_DFS = (0.02, 0.05, 0.1)
TRAIN_PATH_EXPONENT = 1.0  # used while training the tuning model (PECOS's value, not one chosen on dev)
WIDE = 50  # candidates kept from the tree before the label-name blend


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder with train/dev.jsonl.gz and labels.tsv")
    parser.add_argument(
        "--train-fraction-docs", type=int, help="use only the first N documents of train (quick check; default all)"
    )
    parser.add_argument("--dev-docs", type=int, help="use only the first N documents of dev (quick check)")
    parser.add_argument(
        "--tune-split",
        choices=("last", "stride"),
        default="stride",
        help="tune = every 10th document of train (rows 9, 19, ...; default), or the last 10 %% in file order",
    )
    parser.add_argument("--tune-only", action="store_true", help="stop after the tuning phase (no dev)")
    parser.add_argument(
        "--overlap-lambda",
        type=int,
        default=1,
        help="XRConfig.overlap_lambda of our model (leaf clusters per label; default merge and beam); 1: plain tree",
    )
    parser.add_argument("--skip-pecos", action="store_true", help="do not run the PECOS peer")
    parser.add_argument("--pecos-python", type=Path, default=PECOS_PYTHON, help="the peer venv's python")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/xmc-honest"), help="intermediate files")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "xmc-honest.json", help="JSON result")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    # internal: the subprocess phases
    parser.add_argument("--phase", choices=("tune", "final"), help=argparse.SUPPRESS)
    parser.add_argument("--settings", default="{}", help=argparse.SUPPRESS)
    return parser.parse_args()


def peak_rss_gib(who: int = resource.RUSAGE_SELF) -> float:
    """VmHWM of this process, or the largest forked child (``RUSAGE_CHILDREN``), in GiB."""
    if who == resource.RUSAGE_SELF:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024 / 1024, 3)
    return round(resource.getrusage(who).ru_maxrss / 1024 / 1024, 3)


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# ------------------------------------------------------------------------------------------------ data


def read_rows(path: Path, limit: int | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if limit is not None and len(rows) >= limit:
                break
            if line.strip():
                rows.append(json.loads(line))
    return rows


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Writes the splits to the work dir: texts (one JSON list per split) and Y (CSR .npz, labels.tsv order)."""
    import scipy.sparse as sp

    from learner.data import multi_hot

    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    labels = [line.split("\t")[0] for line in (args.data / "labels.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    train = read_rows(args.data / "train.jsonl.gz", args.train_fraction_docs)
    dev = read_rows(args.data / "dev.jsonl.gz", args.dev_docs)
    n_tune = round(TUNE_FRACTION * len(train))
    n_sub = len(train) - n_tune
    if args.tune_split == "last":
        train_sub, tune = train[:n_sub], train[n_sub:]
        rule = "train' = the first 90 % of train.jsonl.gz in file order, tune = the last 10 %; dev reported once"
    else:
        train_sub = [r for i, r in enumerate(train) if i % 10 != 9]
        tune = [r for i, r in enumerate(train) if i % 10 == 9]
        rule = "tune = every 10th document of train.jsonl.gz (rows 9, 19, ...), train' = the rest; dev reported once"
    splits = {"train_sub": train_sub, "tune": tune, "train": train, "dev": dev}
    for name, rows in splits.items():
        (work / f"{name}.texts.json").write_text(json.dumps([r["text"] for r in rows]), encoding="utf-8")
        sp.save_npz(work / f"{name}.Y.npz", multi_hot([r["labels"] for r in rows], labels), compressed=False)
    (work / "labels.json").write_text(json.dumps(labels), encoding="utf-8")

    def composition(rows: list[dict[str, Any]]) -> dict[str, int]:
        """Documents per record type / language tag (the id's first two parts): the files are sorted by them."""
        return dict(Counter("/".join(r["id"].split("/")[:2]) for r in rows).most_common())

    return {
        "labels": len(labels),
        "tune_split": args.tune_split,
        "rule": rule,
        **{
            name: {
                "file": "dev.jsonl.gz" if name == "dev" else "train.jsonl.gz",
                "documents": len(rows),
                "composition": composition(rows),
            }
            for name, rows in splits.items()
        },
    }


def load_split(work: Path, name: str) -> tuple[list[str], Any]:
    import scipy.sparse as sp

    texts = json.loads((work / f"{name}.texts.json").read_text(encoding="utf-8"))
    return texts, sp.load_npz(work / f"{name}.Y.npz").tocsr()


def quality(Y_true: Any, top: Any, Y_train: Any) -> dict[str, float]:
    """P@1/3/5, nDCG@5, PSP@5 (propensities from the training split), R@10 of a (N, >=10) top-k."""
    import numpy as np

    from learner import metrics

    counts = np.asarray(Y_train.sum(axis=0)).ravel()
    propensity = metrics.propensities(counts, int(Y_train.shape[0]), A=0.55, B=1.5)
    report = metrics.ranking_report(Y_true, top[:, :K], ks=(1, 3, 5, K), propensities=propensity)
    keys = {"P@1": "p_at_1", "P@3": "p_at_3", "P@5": "p_at_5", "nDCG@5": "ndcg_at_5", "PSP@5": "psp_at_5"}
    out = {new: round(report[old], 4) for old, new in keys.items()}
    out["recall_at_10"] = round(report[f"R@{K}"], 4)
    return out


# ------------------------------------------------------------------------------------------ our fast tier


def train_ours(
    texts: list[str],
    Y: Any,
    labels: list[str],
    xr: dict[str, Any],
    stems: tuple[bool, ...],
    max_dfs: tuple[float, ...],
    progress: bool,
):
    """TF-IDF + XR-Linear (the fast tier's tree defaults for this many documents, learner.xmc.large_data_settings)
    + one label-name matcher per stemming option (the first fitted in a forked process beside TF-IDF, as the fast
    tier does) + one neighbour index per max_df; seconds per part."""
    from learner.features import TfidfConfig, TfidfFeaturizer
    from learner.xmc import LabelNameMatcher, LexicalConfig, XRConfig, XRLinear
    from learner.xmc.config import large_data_settings
    from learner.xmc.neighbours import NeighbourConfig, NeighbourVoter
    from learner.xmc.solver import ForkedCall

    large_tfidf, large_xr = large_data_settings(len(texts))
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    # as the fast tier trains a large tree: the first label-name matcher fits in a forked process beside TF-IDF
    first = stems[0]
    with ForkedCall(LabelNameMatcher.fit, labels, texts, Y, LexicalConfig(stem=first)) as call:
        featurizer, X = TfidfFeaturizer.fit_transform(texts, TfidfConfig(**large_tfidf), progress=progress)
        seconds["tfidf_fit_transform"] = time.perf_counter() - started
        matchers = {first: call.result()}
    seconds[f"tfidf_and_lexical_stem_{first}_side_by_side"] = time.perf_counter() - started
    started = time.perf_counter()
    model = XRLinear.train(X, Y, XRConfig.from_dict({**large_xr, **xr}), progress=progress)
    seconds["xr_train"] = time.perf_counter() - started
    for stem in stems[1:]:
        started = time.perf_counter()
        matchers[stem] = LabelNameMatcher.fit(labels, texts, Y, LexicalConfig(stem=stem))
        seconds[f"lexical_fit_stem_{stem}"] = time.perf_counter() - started
    voters = {}
    for max_df in max_dfs:
        started = time.perf_counter()
        voters[max_df] = NeighbourVoter.fit(X, Y, NeighbourConfig(max_df=max_df))
        seconds[f"neighbours_fit_max_df_{max_df}"] = time.perf_counter() - started
    return featurizer, model, matchers, voters, seconds


def with_exponent(model: Any, exponent: float) -> Any:
    """The same trained model scoring with another path exponent (inference only; weights shared)."""
    import copy

    other = copy.copy(model)
    other.config = dataclasses.replace(model.config, path_exponent=exponent)
    other._scoring = model._scoring  # the per-layer scoring caches do not depend on the exponent
    return other


POINT_KEYS = (
    "path_exponent",
    "pifa_weight",
    "lexical_weight",
    "stem",
    "neighbour_weight",
    "neighbour_k",
    "neighbour_power",
    "neighbour_max_df",
    "beam",
)


def blended_top(wide: Any, wide_scores: Any, point: dict[str, Any], lexical: Any, vote: Any) -> Any:
    """The top-K of the tree's candidates blended with the label-name scores and the neighbour vote (as the fast
    tier: (tree + w_lex * names + w_nn * vote) / (1 + w_lex + w_nn)); ``lexical``/``vote``: callables -> (N, L)."""
    from learner.xmc import blend_topk

    w_lex, w_nn = point["lexical_weight"], point["neighbour_weight"]
    parts = [(w, scores) for w, scores in ((w_lex, lexical), (w_nn, vote)) if w > 0]
    if not parts:
        return wide[:, :K]
    total = w_lex + w_nn
    extra = (parts[0][0] / total) * parts[0][1]()
    for w, scores in parts[1:]:
        extra = extra + (w / total) * scores()
    return blend_topk(wide, wide_scores, extra, total, K)[0]


def phase_tune(args: argparse.Namespace) -> dict[str, Any]:
    """Subprocess: train on train' once, sweep the inference settings on tune; returns the grid."""
    from learner.fast import FastTierConfig
    from learner.xmc.config import LARGE_DATA_XR
    from learner.xmc.neighbours import NeighbourConfig

    work, progress = args.work_dir, not args.no_progress
    labels = json.loads((work / "labels.json").read_text(encoding="utf-8"))
    texts, Y = load_split(work, "train_sub")
    tune_texts, Y_tune = load_split(work, "tune")
    xr = {
        "path_exponent": TRAIN_PATH_EXPONENT,
        "pifa_weight": max(PIFA_WEIGHTS),  # > 0 keeps the PIFA rows for the sweep
        "overlap_lambda": args.overlap_lambda,
    }
    featurizer, model, matchers, voters, seconds = train_ours(texts, Y, labels, xr, STEMS, NEIGHBOUR_MAX_DFS, progress)
    train_rss, workers_rss = peak_rss_gib(), peak_rss_gib(resource.RUSAGE_CHILDREN)
    X_tune = featurizer.transform(tune_texts)
    lexical = {stem: matcher.score(tune_texts) for stem, matcher in matchers.items()}
    found = {}
    for max_df, voter in voters.items():
        started = time.perf_counter()
        found[max_df] = voter.neighbours(X_tune, max(NEIGHBOUR_KS))
        seconds[f"neighbours_search_tune_max_df_{max_df}"] = time.perf_counter() - started
    votes: dict[tuple[float, int, float], Any] = {}
    wides: dict[tuple[float, float, int], Any] = {}

    def evaluate(point: dict[str, Any]) -> dict[str, Any]:
        key = (point["path_exponent"], point["pifa_weight"], point["beam"])
        if key not in wides:
            wides[key] = with_exponent(model, key[0]).predict_topk(X_tune, WIDE, pifa_weight=key[1], beam=key[2])
        nn = (point["neighbour_max_df"], point["neighbour_k"], point["neighbour_power"])

        def vote() -> Any:
            if nn not in votes:
                idx, sim = found[nn[0]]
                votes[nn] = voters[nn[0]].vote(idx[:, : nn[1]], sim[:, : nn[1]], nn[2])
            return votes[nn]

        top = blended_top(*wides[key], point, lambda: lexical[point["stem"]], vote)
        return {**point, **quality(Y_tune, top, Y)}

    nn_defaults = NeighbourConfig()
    off = {"neighbour_weight": 0.0, "neighbour_k": nn_defaults.k, "neighbour_power": nn_defaults.power}
    off["neighbour_max_df"] = nn_defaults.max_df
    grid: list[dict[str, Any]] = []
    tried: set[tuple[Any, ...]] = set()

    def add(point: dict[str, Any], stage: str) -> None:
        key = tuple(point[k] for k in POINT_KEYS)
        if key not in tried:
            tried.add(key)
            grid.append({**evaluate(point), "stage": stage})

    def best() -> dict[str, Any]:
        return max(grid, key=lambda r: (r["p_at_1"], r["p_at_5"]))

    started = time.perf_counter()
    # stage 1: tree inference x label-name blend, no neighbour vote
    for exponent, pifa, stem, weight in itertools.product(PATH_EXPONENTS, PIFA_WEIGHTS, STEMS, BLEND_WEIGHTS):
        if weight == 0 and not stem:
            continue  # no blend: stemming does not matter
        point = {"path_exponent": exponent, "pifa_weight": pifa, "lexical_weight": weight, "stem": stem}
        add({**point, **off, "beam": 10}, "1 tree x names")
    # stage 2: the neighbour vote x label-name weight at stage 1's best tree settings
    first = best()
    lexical_weights = sorted({0.1, 0.2, 0.3, first["lexical_weight"]})
    for weight, k, power, max_df, lex in itertools.product(
        NEIGHBOUR_WEIGHTS[1:], NEIGHBOUR_KS, NEIGHBOUR_POWERS, NEIGHBOUR_MAX_DFS, lexical_weights
    ):
        nn = {"neighbour_weight": weight, "neighbour_k": k, "neighbour_power": power, "neighbour_max_df": max_df}
        add({**first, **nn, "lexical_weight": lex}, "2 neighbours x names")
    # stage 3: the tree's inference settings again, at stage 2's best blend
    second = best()
    for exponent, pifa in itertools.product(PATH_EXPONENTS, PIFA_WEIGHTS):
        add({**second, "path_exponent": exponent, "pifa_weight": pifa}, "3 tree again")
    # the product's defaults for a tree this large (one more point, so that the summary can show it)
    large = FastTierConfig()
    defaults = {
        "path_exponent": LARGE_DATA_XR["path_exponent"],
        "pifa_weight": LARGE_DATA_XR["pifa_weight"],
        "lexical_weight": large.large_data_lexical_weight,
        "stem": True,
        "neighbour_weight": large.large_data_neighbour_weight,
        "neighbour_k": nn_defaults.k,
        "neighbour_power": nn_defaults.power,
        "neighbour_max_df": nn_defaults.max_df,
        "beam": 10,
    }
    add(defaults, "product defaults")
    # stage 4: beam, only at the best setting (a wider beam costs prediction time linearly)
    for beam in BEAMS:
        add({**{k: v for k, v in best().items() if k in POINT_KEYS}, "beam": beam}, "4 beam")
    seconds["grid"] = time.perf_counter() - started
    chosen = best()
    seconds["train_incl_tfidf_and_lexical"] = (
        seconds[f"tfidf_and_lexical_stem_{STEMS[0]}_side_by_side"]
        + seconds["xr_train"]
        + (seconds[f"lexical_fit_stem_{chosen['stem']}"] if chosen["stem"] != STEMS[0] else 0.0)
        + seconds[f"neighbours_fit_max_df_{chosen['neighbour_max_df']}"]
    )
    return {
        "train_xr_config": model.config.to_dict(),
        "seconds": {n: round(v, 2) for n, v in seconds.items()},
        "peak_rss_gib": train_rss,
        "peak_rss_gib_largest_worker": workers_rss,
        "grid": grid,
        "product_defaults": defaults,
        "chosen": {key: chosen[key] for key in POINT_KEYS},
        "chosen_tune_quality": {k: v for k, v in chosen.items() if k.startswith(("p_", "ndcg", "psp", "recall"))},
    }


def phase_final(args: argparse.Namespace) -> dict[str, Any]:
    """Subprocess: retrain on all of train with the chosen settings, write the dev top-10."""
    import numpy as np

    work, progress = args.work_dir, not args.no_progress
    chosen = json.loads(args.settings)
    labels = json.loads((work / "labels.json").read_text(encoding="utf-8"))
    texts, Y = load_split(work, "train")
    dev_texts, _ = load_split(work, "dev")
    xr = {
        "path_exponent": chosen["path_exponent"],
        "pifa_weight": chosen["pifa_weight"],
        "overlap_lambda": args.overlap_lambda,
    }
    max_dfs = (chosen["neighbour_max_df"],) if chosen["neighbour_weight"] > 0 else ()
    featurizer, model, matchers, voters, seconds = train_ours(
        texts, Y, labels, xr, (chosen["stem"],), max_dfs, progress
    )
    train_rss, workers_rss = peak_rss_gib(), peak_rss_gib(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    X_dev = featurizer.transform(dev_texts)
    wide, wide_scores = model.predict_topk(X_dev, WIDE, beam=chosen["beam"])

    def vote() -> Any:
        return voters[chosen["neighbour_max_df"]].score(X_dev, chosen["neighbour_k"], chosen["neighbour_power"])

    top = blended_top(wide, wide_scores, chosen, lambda: matchers[chosen["stem"]].score(dev_texts), vote)
    seconds["predict_dev_from_text"] = time.perf_counter() - started
    np.save(work / "ours.dev.top.npy", top)
    seconds["train_incl_tfidf_and_lexical"] = (
        seconds[f"tfidf_and_lexical_stem_{chosen['stem']}_side_by_side"]
        + seconds["xr_train"]
        + sum(v for n, v in seconds.items() if "neighbours_fit" in n)
    )
    return {
        "xr_config": model.config.to_dict(),
        "seconds": {n: round(v, 2) for n, v in seconds.items()},
        "peak_rss_gib": train_rss,
        "peak_rss_gib_largest_worker": workers_rss,
        "peak_rss_gib_after_predict": peak_rss_gib(),
        "predict_ms_per_document_from_text": round(1000 * seconds["predict_dev_from_text"] / max(len(dev_texts), 1), 3),
        "train_info": model.train_info,
    }


# ----------------------------------------------------------------------------------------- orchestration


def run_child(command: list[str], what: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a phase subprocess; its last stdout line is its JSON result."""
    before = load_average()
    started = time.perf_counter()
    child = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False, env=env)
    wall = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"{what} failed (exit {child.returncode}); see its stderr above")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = round(wall, 1)
    result["load_average_before"], result["load_average_after"] = before, load_average()
    return result


def run_pecos(args: argparse.Namespace, train: str, test: str) -> dict[str, Any]:
    import numpy as np
    import scipy.sparse as sp

    work = args.work_dir
    out = work / f"pecos.{test}.top.npy"
    # PECOS trains with OpenMP threads (threads=-1: all cores); our OMP_NUM_THREADS=1 would cap it at one core,
    # while our XR-Linear forks one worker per core (n_jobs=-1): both get every core this process may use
    pecos_env = {**os.environ, "OMP_NUM_THREADS": str(len(os.sched_getaffinity(0)))}
    result = run_child(
        [
            str(args.pecos_python),
            str(ROOT / "bench" / "pecos_xr_linear.py"),
            "--train-texts",
            str(work / f"{train}.texts.json"),
            "--train-Y",
            str(work / f"{train}.Y.npz"),
            "--test-texts",
            str(work / f"{test}.texts.json"),
            "--k",
            str(K),
            "--out",
            str(out),
        ],
        f"PECOS {train} -> {test}",
        env=pecos_env,
    )
    result["omp_num_threads"] = pecos_env["OMP_NUM_THREADS"]
    Y_true = sp.load_npz(work / f"{test}.Y.npz").tocsr()
    Y_train = sp.load_npz(work / f"{train}.Y.npz").tocsr()
    result["quality"] = quality(Y_true, np.load(out), Y_train)
    return result


def main() -> None:
    args = parse_args()
    if args.phase is not None:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        result = phase_tune(args) if args.phase == "tune" else phase_final(args)
        print(json.dumps(result, default=str))
        return

    import numpy as np
    import scipy.sparse as sp

    result = header("xmc-honest", {k: str(v) for k, v in vars(args).items()})
    result["source_sha256"] = source_hash(("learner",))
    result["load_average_start"] = load_average()
    result["grid_definition"] = {
        "path_exponent": PATH_EXPONENTS,
        "pifa_weight": PIFA_WEIGHTS,
        "lexical_weight": BLEND_WEIGHTS,
        "stem": STEMS,
        "beam": f"{BEAMS} (the second one only at the best setting of the others)",
        "neighbour_weight": NEIGHBOUR_WEIGHTS,
        "neighbour_k": NEIGHBOUR_KS,
        "neighbour_power": NEIGHBOUR_POWERS,
        "neighbour_max_df": NEIGHBOUR_MAX_DFS,
        "stages": "1 exponent x PIFA x names x stem (no vote); 2 vote x names at 1's best; 3 exponent x PIFA at 2's "
        "best; the product's defaults; 4 beam at the best",
        "train_path_exponent_of_the_tuning_model": TRAIN_PATH_EXPONENT,
        "choice": "max P@1 on tune, ties by P@5",
    }
    result["peer"] = {
        "name": "Amazon PECOS XR-Linear",
        "package": "libpecos==1.2.8 (its own venv, not a product dependency)",
        "python": str(args.pecos_python),
    }
    started = time.perf_counter()
    result["splits"] = prepare(args)
    result["prepare_seconds"] = round(time.perf_counter() - started, 1)
    out = args.out

    def save() -> None:
        result["load_average_end"] = load_average()
        write_json(out, result)

    me = [sys.executable, str(Path(__file__).resolve()), "--work-dir", str(args.work_dir)]
    me += ["--overlap-lambda", str(args.overlap_lambda)]
    if args.no_progress:
        me.append("--no-progress")

    # 1. tuning on train' -> tune: ours, then the peer on the same splits
    print("== ours: train' -> tune (one training, the grid)", flush=True)
    tune = run_child([*me, "--phase", "tune"], "the tuning phase")
    result["ours_tune"] = tune
    save()
    print_grid(tune)
    if not args.skip_pecos:
        print("== PECOS: train' -> tune", flush=True)
        result["pecos_tune"] = run_pecos(args, "train_sub", "tune")
        save()
    if args.tune_only:
        print_summary(result)
        print(f"wrote {out}")
        return

    # 2. final: all of train -> dev, once, with the chosen settings
    print(f"== ours: train -> dev with {tune['chosen']}", flush=True)
    final = run_child([*me, "--phase", "final", "--settings", json.dumps(tune["chosen"])], "the final phase")
    Y_dev = sp.load_npz(args.work_dir / "dev.Y.npz").tocsr()
    Y_train = sp.load_npz(args.work_dir / "train.Y.npz").tocsr()
    final["quality"] = quality(Y_dev, np.load(args.work_dir / "ours.dev.top.npy"), Y_train)
    result["ours_dev"] = final
    save()
    if not args.skip_pecos:
        print("== PECOS: train -> dev", flush=True)
        result["pecos_dev"] = run_pecos(args, "train", "dev")
        save()
    print_summary(result)
    print(f"wrote {out}")


def print_grid(tune: dict[str, Any]) -> None:
    rows = sorted(tune["grid"], key=lambda r: (-r["p_at_1"], -r["p_at_5"]))
    headers = ["path exp", "pifa w", "names w", "stem", "nn w", "nn k", "nn power", "nn max_df", "beam"]
    headers += ["P@1", "P@3", "P@5", "nDCG@5", "PSP@5"]
    keys = list(POINT_KEYS)
    body = [
        [str(r[k]) for k in keys] + [f"{r[m]:.4f}" for m in ("p_at_1", "p_at_3", "p_at_5", "ndcg_at_5", "psp_at_5")]
        for r in rows[:15]
    ]
    print(f"tune grid: the best 15 of {len(rows)} (all in the JSON); chosen {tune['chosen']}")
    print(table(headers, body), flush=True)


def print_summary(result: dict[str, Any]) -> None:
    def row(name: str, split: str, part: dict[str, Any] | None) -> list[Any]:
        if part is None:
            return [name, split, *([None] * 9)]
        q = part.get("quality") or part.get("chosen_tune_quality") or {}
        seconds = part["seconds"].get("train_incl_tfidf_and_lexical", part["seconds"].get("train_incl_vectorizer"))
        return [
            name,
            split,
            *(f"{q[m]:.4f}" if m in q else None for m in ("p_at_1", "p_at_3", "p_at_5", "ndcg_at_5", "psp_at_5")),
            seconds,
            part["peak_rss_gib"],
            part.get("peak_rss_gib_largest_worker"),
            f"{part['load_average_before'][0]} -> {part['load_average_after'][0]}",
        ]

    headers = ["system", "split", "P@1", "P@3", "P@5", "nDCG@5", "PSP@5", "train s", "RSS GiB", "worker GiB", "load"]
    tune = result.get("ours_tune")
    defaults = None
    if tune is not None:  # the product's inference defaults for a tree on this many documents: one point of the grid
        point = tune["product_defaults"]
        match = [r for r in tune["grid"] if all(r[key] == value for key, value in point.items())]
        defaults = {**tune, "chosen_tune_quality": match[0]} if match else None
    rows = [
        row("ours (chosen on tune)", "train' -> tune", tune),
        row("ours (product defaults)", "train' -> tune", defaults),
        row("PECOS XR-Linear", "train' -> tune", result.get("pecos_tune")),
        row("ours (chosen on tune)", "train -> dev", result.get("ours_dev")),
        row("PECOS XR-Linear", "train -> dev", result.get("pecos_dev")),
    ]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
