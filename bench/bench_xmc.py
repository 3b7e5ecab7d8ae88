"""The extreme-multi-label fast tier on tibkat-gnd: TF-IDF + XR-Linear, trained on train, measured on dev.

Measures, on this machine:

1. TF-IDF: fit on the 90,452 train texts (and transform them), transform the 19,949 dev texts;
2. XR-Linear: label tree (PIFA + balanced spherical k-means) and the rankers, separately;
3. dev quality: P@1, P@3, P@5, nDCG@5 and recall@10 (SCIENCE.md §5; the label vocabulary is all 41,218
   labels of labels.tsv, so the 6,102 labels that occur in dev but never in train count as misses);
   prediction ms/document (dev set, top-10, one process);
4. peak RSS of the training process (``resource.getrusage``, includes loading the data);
5. in a separate process (so that its RSS is its own): load the saved model, then top-10 for 100,000
   documents of cached features (the dev matrix stacked 5 times and cut to 100,000 rows), its wall time
   and peak RSS.

    .venv/bin/python bench/bench_xmc.py                               # the default configuration
    .venv/bin/python bench/bench_xmc.py --xr '{"beam": 20}' --tfidf '{"char_ngrams": [3, 5]}' --name beam20
    .venv/bin/python bench/bench_xmc.py --n-trees 2                   # ensemble of trees with seeds 0, 1
    .venv/bin/python bench/bench_xmc.py --overlap-lambda 2 --overlap-merge mean --name overlap2  # overlapping leaves

Prints a Markdown table and writes bench/results/xmc-<name>.json. The machine is shared: the load
average before and after is recorded; compare numbers measured back to back only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, ROOT, header, source_hash, table, write_json

DATA = Path("/work/shared/datasets/tibkat-gnd")
# A reference quoted by SCIENCE.md, with no split or source and not reproduced here: PECOS XR-Linear measured on the
# same splits in the same run is bench/bench_xmc_honest.py's (dev P@1 0.4451 on 2026-12-06, docs/benchmarks.md).
PECOS = {"p_at_1": 0.488, "p_at_3": 0.298, "p_at_5": 0.210, "train_seconds": 332.0, "peak_rss_gib": 2.4}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder with train/dev.jsonl.gz and labels.tsv")
    parser.add_argument("--tfidf", default="{}", help="TfidfConfig fields as JSON (default: TfidfConfig())")
    parser.add_argument("--xr", default="{}", help="XRConfig fields as JSON (default: XRConfig())")
    parser.add_argument("--n-trees", type=int, default=1, help="ensemble of this many trees (seeds 0, 1, ...)")
    # overlapping leaf clusters (XRConfig.overlap_*); each one given overrides the same key of --xr
    parser.add_argument("--overlap-lambda", type=int, help="leaf clusters per label (1: plain tree)")
    parser.add_argument("--overlap-rounds", type=int, help="assignment/retraining rounds")
    parser.add_argument("--overlap-merge", choices=("max", "mean"), help="how a label's slot scores merge")
    parser.add_argument("--overlap-min-count", type=int, help="documents routed to a leaf to earn a slot there")
    parser.add_argument("--overlap-beam", type=int, help="leaves counted per training document (its best ones)")
    parser.add_argument(
        "--lexical-weight",
        type=float,
        default=0.1,
        help="blend weight of the label-name matcher (0: do not fit it); a few other weights are reported too",
    )
    parser.add_argument("--k", type=int, default=10, help="labels predicted per document")
    parser.add_argument("--big-n", type=int, default=100_000, help="documents of the cached-features timing")
    parser.add_argument("--name", default="default", help="result file: bench/results/xmc-<name>.json")
    parser.add_argument("--out", type=Path, help="JSON result (default bench/results/xmc-<name>.json)")
    parser.add_argument("--work-dir", type=Path, help="keep the model and features here (default: a temp dir)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    # internal: the isolated 100k-document prediction
    parser.add_argument("--predict-only", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def peak_rss_gib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size in GiB: this process's own (VmHWM; ``ru_maxrss`` would carry over the
    parent's peak across fork + exec), or ``RUSAGE_CHILDREN``: the largest forked worker, shared pages included."""
    if who == resource.RUSAGE_SELF:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 3)
        except OSError:
            pass
    return round(resource.getrusage(who).ru_maxrss / 1024 / 1024, 3)  # ru_maxrss is in KiB on Linux


def load_data(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    from learner.data import read_jsonl

    labels = [line.split("\t")[0] for line in (folder / "labels.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    return read_jsonl(folder / "train.jsonl.gz"), read_jsonl(folder / "dev.jsonl.gz"), labels


def ndcg_at_k(Y: Any, top: Any, k: int) -> float:
    import numpy as np

    n = Y.shape[0]
    hits = np.asarray(Y[np.repeat(np.arange(n), k), top[:, :k].ravel()]).reshape(n, k)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discount
    positives = np.minimum(np.diff(Y.indptr), k)
    ideal = np.cumsum(discount)[np.maximum(positives - 1, 0)] * (positives > 0)
    return float(np.mean(np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1), 0.0)))


def recall_at_k(Y: Any, top: Any, k: int) -> float:
    import numpy as np

    n = Y.shape[0]
    hits = np.asarray(Y[np.repeat(np.arange(n), k), top[:, :k].ravel()]).reshape(n, k).sum(axis=1)
    positives = np.diff(Y.indptr)
    return float(np.mean(np.where(positives > 0, hits / np.maximum(positives, 1), 0.0)))


def predict_only(work: Path, k: int, big_n: int) -> None:
    """Child process: load the model and the dev features, top-k for big_n rows; prints one JSON line."""
    import numpy as np
    import scipy.sparse as sp

    from learner.xmc import XRLinear
    from learner.xmc.ensemble import XREnsemble

    started = time.perf_counter()
    ensemble = (work / "model" / "ensemble.json").is_file()
    model = XREnsemble.load(work / "model") if ensemble else XRLinear.load(work / "model")
    load_seconds = time.perf_counter() - started
    dev = sp.load_npz(work / "X_dev.npz").tocsr()
    big = sp.vstack([dev] * -(-big_n // dev.shape[0]), format="csr")[:big_n]  # (big_n, F) cached features
    rss_before = peak_rss_gib()
    started = time.perf_counter()
    indices, scores = model.predict_topk(big, k)
    seconds = time.perf_counter() - started
    assert indices.shape == (big_n, k) and np.isfinite(scores).all()
    out: dict[str, Any] = {
        "documents": big_n,
        "k": k,
        "seconds": round(seconds, 2),
        "ms_per_document": round(1000 * seconds / big_n, 4),
        "load_seconds": round(load_seconds, 2),
        "features_nnz": int(big.nnz),
        "peak_rss_gib_before_predict": rss_before,
        "peak_rss_gib": peak_rss_gib(),
    }
    del indices, scores
    if (work / "lexical_dev.npz").is_file():  # the blended pipeline: top-20, plus cached label-name scores
        from learner.xmc.lexical import blend_topk

        extra_dev = sp.load_npz(work / "lexical_dev.npz").tocsr()
        extra = sp.vstack([extra_dev] * -(-big_n // extra_dev.shape[0]), format="csr")[:big_n]
        weight = float((work / "lexical_weight.txt").read_text())
        started = time.perf_counter()
        wide, wide_scores = model.predict_topk(big, max(20, k))
        blended, _ = blend_topk(wide, wide_scores, extra, weight, k)
        assert blended.shape == (big_n, k)
        out["blend_seconds"] = round(time.perf_counter() - started, 2)
        out["blend_peak_rss_gib"] = peak_rss_gib()
    print(json.dumps(out))


def main() -> None:
    args = parse_args()
    if args.predict_only is not None:
        predict_only(args.predict_only, args.k, args.big_n)
        return

    import scipy.sparse as sp

    from learner.data import multi_hot
    from learner.features import TfidfConfig, TfidfFeaturizer
    from learner.metrics import precision_at_k
    from learner.xmc import XRConfig, XRLinear
    from learner.xmc.ensemble import XREnsemble
    from learner.xmc.lexical import LabelNameMatcher, blend_topk

    progress = not args.no_progress
    tfidf_config = TfidfConfig.from_dict(json.loads(args.tfidf))
    overrides = {
        key: getattr(args, key)
        for key in ("overlap_lambda", "overlap_rounds", "overlap_merge", "overlap_min_count", "overlap_beam")
        if getattr(args, key) is not None
    }
    xr_config = XRConfig.from_dict({**json.loads(args.xr), **overrides})
    load_before = os.getloadavg()
    result = header("xmc", {**vars(args), "tfidf": tfidf_config.to_dict(), "xr": xr_config.to_dict()})
    result["source_sha256"] = source_hash(("learner",))
    result["load_average_before"] = [round(v, 2) for v in load_before]
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    train, dev, labels = load_data(args.data)
    seconds["load_data"] = time.perf_counter() - started
    Y_train = multi_hot([r["labels"] for r in train], labels)
    Y_dev = multi_hot([r["labels"] for r in dev], labels)

    started = time.perf_counter()
    featurizer, X_train = TfidfFeaturizer.fit_transform([r["text"] for r in train], tfidf_config, progress=progress)
    seconds["tfidf_fit_transform_train"] = time.perf_counter() - started
    started = time.perf_counter()
    X_dev = featurizer.transform([r["text"] for r in dev], progress=progress)
    seconds["tfidf_transform_dev"] = time.perf_counter() - started

    started = time.perf_counter()
    model: XRLinear | XREnsemble
    if args.n_trees > 1:
        model = XREnsemble.train(X_train, Y_train, xr_config, n_trees=args.n_trees, progress=progress)
        info = model.train_info
    else:
        model = XRLinear.train(X_train, Y_train, xr_config, progress=progress)
        info = model.train_info
    seconds["xr_train"] = time.perf_counter() - started
    seconds["tree"] = float(info.get("tree_seconds", 0.0))
    seconds["rankers"] = float(info.get("rankers_seconds", 0.0))
    train_rss = peak_rss_gib()
    children_rss = peak_rss_gib(resource.RUSAGE_CHILDREN)  # the largest forked training worker

    def measure(top: Any) -> dict[str, float]:
        return {
            "p_at_1": precision_at_k(Y_dev, top, 1),
            "p_at_3": precision_at_k(Y_dev, top, 3),
            "p_at_5": precision_at_k(Y_dev, top, 5),
            "ndcg_at_5": ndcg_at_k(Y_dev, top, 5),
            "recall_at_10": recall_at_k(Y_dev, top, min(10, args.k)),
        }

    started = time.perf_counter()
    top, _ = model.predict_topk(X_dev, args.k, progress=progress)
    seconds["predict_dev"] = time.perf_counter() - started
    quality = measure(top)
    variants: dict[str, dict[str, float]] = {"xr": quality}
    if isinstance(model, XRLinear) and model.config.pifa_weight > 0:
        variants["xr_without_pifa"] = measure(model.predict_topk(X_dev, args.k, pifa_weight=0.0)[0])

    lexical: dict[str, Any] = {}
    extra: Any = None  # (N_dev, L) label-name scores
    if args.lexical_weight > 0:
        started = time.perf_counter()
        matcher = LabelNameMatcher.fit(labels, [r["text"] for r in train], Y_train)
        seconds["lexical_fit"] = time.perf_counter() - started
        started = time.perf_counter()
        extra = matcher.score([r["text"] for r in dev])
        seconds["lexical_score_dev"] = time.perf_counter() - started
        wide_top, wide_scores = model.predict_topk(X_dev, max(50, args.k))
        for weight in sorted({0.05, 0.1, 0.15, args.lexical_weight}):
            blended, _ = blend_topk(wide_top, wide_scores, extra, weight, args.k)
            variants[f"xr+lexical@{weight:g}"] = measure(blended)
        quality = variants[f"xr+lexical@{args.lexical_weight:g}"]
        lexical = {"weight": args.lexical_weight, "matchable_labels": matcher.n_matchable}

    with tempfile.TemporaryDirectory(prefix="bench-xmc-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model.save(work / "model")
        sp.save_npz(work / "X_dev.npz", X_dev, compressed=False)
        if extra is not None:
            sp.save_npz(work / "lexical_dev.npz", extra, compressed=False)
            (work / "lexical_weight.txt").write_text(str(args.lexical_weight))
        model_bytes = sum(p.stat().st_size for p in (work / "model").rglob("*") if p.is_file())
        child = subprocess.run(
            [sys.executable, __file__, "--predict-only", str(work), "--k", str(args.k), "--big-n", str(args.big_n)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            raise SystemExit(f"the prediction subprocess failed:\n{child.stderr}")
        big = json.loads(child.stdout.strip().splitlines()[-1])

    headline = f"xr+lexical@{args.lexical_weight:g}" if args.lexical_weight > 0 else "xr"
    train_seconds = seconds["tfidf_fit_transform_train"] + seconds["xr_train"] + seconds.get("lexical_fit", 0.0)
    result.update(
        {
            "n_train": len(train),
            "n_dev": len(dev),
            "n_labels": len(labels),
            "n_features": featurizer.n_features,
            "train_nnz_per_document": round(X_train.nnz / X_train.shape[0], 1),
            "headline": headline,
            "quality": {name: round(value, 4) for name, value in quality.items()},
            "variants": {key: {n: round(v, 4) for n, v in q.items()} for key, q in variants.items()},
            "lexical": lexical,
            "seconds": {name: round(value, 2) for name, value in seconds.items()},
            "train_seconds_including_tfidf": round(train_seconds, 1),
            "predict_ms_per_document": round(1000 * seconds["predict_dev"] / len(dev), 3),
            "peak_rss_gib": train_rss,
            "peak_rss_gib_largest_worker": children_rss,
            "model_mib": round(model_bytes / 2**20, 1),
            "model": repr(model),
            "train_info": info,
            "predict_100k": big,
            "pecos_reference": PECOS,
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
        }
    )
    out = args.out or RESULTS_DIR / f"xmc-{args.name}.json"
    write_json(out, result)

    def f4(value: float | None) -> str | None:
        return None if value is None else f"{value:.4f}"

    rows = [
        ["ranked by", "XR-Linear", headline],
        ["P@1", f4(PECOS["p_at_1"]), f4(quality["p_at_1"])],
        ["P@3", f4(PECOS["p_at_3"]), f4(quality["p_at_3"])],
        ["P@5", f4(PECOS["p_at_5"]), f4(quality["p_at_5"])],
        ["nDCG@5", None, f4(quality["ndcg_at_5"])],
        ["recall@10", None, f4(quality["recall_at_10"])],
        ["train s incl. TF-IDF (and lexical fit)", PECOS["train_seconds"], train_seconds],
        ["  TF-IDF fit+transform train s", None, seconds["tfidf_fit_transform_train"]],
        ["  label tree s", None, seconds["tree"]],
        ["  rankers s", None, seconds["rankers"]],
        ["  lexical matcher fit s", None, seconds.get("lexical_fit")],
        ["peak RSS GiB (training process)", PECOS["peak_rss_gib"], train_rss],
        ["peak RSS GiB (largest worker)", None, children_rss],
        ["predict ms/doc (dev, top-10)", 2.0, 1000 * seconds["predict_dev"] / len(dev)],
        ["  lexical score ms/doc (dev, from text)", None, 1000 * seconds.get("lexical_score_dev", 0.0) / len(dev)],
        [f"top-{args.k} for {big['documents']:,} docs s", None, big["seconds"]],
        [f"  peak RSS GiB ({big['documents']:,} docs)", None, big["peak_rss_gib"]],
        [f"top-20 + lexical blend for {big['documents']:,} docs s (cached)", None, big.get("blend_seconds")],
        ["model MiB on disk", None, model_bytes / 2**20],
    ]
    print(table(["tibkat-gnd train -> dev", "PECOS XR-Linear", f"alabel ({args.name})"], rows))
    print()
    print(
        table(
            ["variant (dev)", "P@1", "P@3", "P@5", "nDCG@5", "recall@10"],
            [[key, *(f"{v:.4f}" for v in q.values())] for key, q in variants.items()],
        )
    )
    print(f"\nload average before {result['load_average_before']}, after {result['load_average_after']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
