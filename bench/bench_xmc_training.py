"""tibkat-gnd: the label tree's TRAINING settings (features, negatives, C, trees), chosen on a split of train only.

bench/bench_xmc_honest.py sweeps the inference-time settings on one trained model; the settings that need a retrain
each (the TF-IDF vocabulary, how many matcher-aware negatives, C, an ensemble) are screened here, on a smaller
split so that each costs a minute or two:

- the first ``--docs`` documents of train.jsonl.gz (file order); every ``--stride``-th of them (rows stride-1,
  2*stride-1, ...) is held out as "screen", the rest train. Nothing of dev is read.
- One process, one core (``n_jobs`` 1, OMP_NUM_THREADS 1): the seconds are CPU seconds of this process
  (``time.process_time``), so a busy machine changes them less than wall time.
- P@1 and P@5 on the screen split (labels unseen in the training part count as misses), with XRConfig's
  default inference settings (no label-name blend); and "blend" P@1/P@5: the fast tier's large-data inference
  (learner.xmc.config.LARGE_DATA_XR's path exponent and PIFA weight, the label-name matcher and the neighbour
  vote with FastTierConfig's large-data weights), as a tree head trained on this many documents would serve it.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_xmc_training.py --out bench/results/xmc-training.json
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_xmc_training.py --set stem --out bench/results/xmc-training-stem.json
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_xmc_training.py --set title \
        --out bench/results/xmc-training-title.json
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_xmc_training.py --set coarse \
        --out bench/results/xmc-training-coarse.json
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_xmc_training.py --set combined \
        --out bench/results/xmc-training-combined.json

Each variant is a JSON object: "tfidf" (learner.features.TfidfConfig fields), "n_trees" (> 1: XREnsemble) and any
learner.xmc.XRConfig fields. Writes the JSON after every variant and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import time
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, header, source_hash, table, write_json

DATA = Path("/work/shared/datasets/tibkat-gnd")
BIGRAMS = {"ngram_max": 2, "min_df": 2}  # TfidfConfig's defaults (500k columns at most)
UNIGRAMS = {"ngram_max": 1, "min_df": 5}
ALL = 10  # negative_beam 10: all of the beam of 10 (XRConfig's behaviour before negative_beam existed)
VARIANTS = [  # every training setting spelled out, so that a later change of a default does not change a row
    {"tfidf": BIGRAMS, "negative_beam": ALL},
    {"tfidf": BIGRAMS, "negatives": "tfn"},
    {"tfidf": BIGRAMS, "negative_beam": 3},
    {"tfidf": {"ngram_max": 2, "min_df": 5}, "negative_beam": ALL},
    {"tfidf": {"ngram_max": 1, "min_df": 2}, "negative_beam": ALL},
    {"tfidf": UNIGRAMS, "negative_beam": ALL},
    {"tfidf": {"ngram_max": 1, "min_df": 10}, "negative_beam": ALL},
    {"tfidf": UNIGRAMS, "negatives": "tfn"},
    {"tfidf": UNIGRAMS, "negative_beam": 3},
    {"tfidf": UNIGRAMS, "negative_beam": 5},
    {"tfidf": UNIGRAMS, "negative_beam": 5, "C": 0.5},
    {"tfidf": UNIGRAMS, "negative_beam": 5, "C": 2.0},
    {"tfidf": UNIGRAMS, "negative_beam": 5, "n_trees": 2},
    {"tfidf": UNIGRAMS, "negative_beam": ALL, "n_trees": 2},
]
STEMMED = {"ngram_max": 1, "min_df": 3, "stem": True}
STEM_VARIANTS = [  # the second screen: TfidfConfig.stem (one inflection ending off every word), with negative_beam 5
    {"tfidf": UNIGRAMS, "negative_beam": 5},  # the first screen's choice again, for the seconds of this run
    {"tfidf": {**UNIGRAMS, "stem": True}, "negative_beam": 5},
    {"tfidf": STEMMED, "negative_beam": 5},
    {"tfidf": {**STEMMED, "min_df": 2}, "negative_beam": 5},
    {"tfidf": STEMMED, "negative_beam": ALL},
    {"tfidf": {**STEMMED, "ngram_max": 2}, "negative_beam": 5},
]
TITLE_VARIANTS = [  # the third screen: TfidfConfig.title_weight (a block of title features), with the blend columns
    {"tfidf": STEMMED, "negative_beam": 5},
    {"tfidf": {**STEMMED, "title_weight": 0.3}, "negative_beam": 5},
    {"tfidf": {**STEMMED, "title_weight": 0.5}, "negative_beam": 5},
    {"tfidf": {**STEMMED, "title_weight": 0.7}, "negative_beam": 5},
    {"tfidf": {**STEMMED, "title_weight": 1.0}, "negative_beam": 5},
]
COARSE_VARIANTS = [  # the fourth screen: XRConfig.man_min_parents (teacher-forced negatives below small levels)
    {"tfidf": STEMMED, "negative_beam": 5},
    {"tfidf": STEMMED, "negative_beam": 5, "man_min_parents": 5},
    {"tfidf": STEMMED, "negative_beam": 5, "man_min_parents": 40},
]
COMBINED_VARIANTS = [  # the fifth screen: the title block around the third screen's best, with man_min_parents 40
    {"tfidf": {**STEMMED, "title_weight": 0.2}, "negative_beam": 5, "man_min_parents": 40},
    {"tfidf": {**STEMMED, "title_weight": 0.3}, "negative_beam": 5, "man_min_parents": 40},
]
SETS = {
    "features": VARIANTS,
    "stem": STEM_VARIANTS,
    "title": TITLE_VARIANTS,
    "coarse": COARSE_VARIANTS,
    "combined": COMBINED_VARIANTS,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder with train.jsonl.gz")
    parser.add_argument("--docs", type=int, default=44_000, help="the first N documents of train")
    parser.add_argument("--stride", type=int, default=11, help="every stride-th document is held out")
    parser.add_argument("--set", choices=sorted(SETS), default="features", help="a built-in screen (default: features)")
    parser.add_argument("--variants", help="a JSON list of variants (instead of a built-in screen)")
    parser.add_argument(
        "--blend", action=argparse.BooleanOptionalAction, default=True, help="also the blend columns (default: on)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "xmc-training.json", help="JSON result")
    return parser.parse_args()


def main() -> None:
    import numpy as np
    import scipy.sparse as sp

    from learner.fast import FastTierConfig
    from learner.features import TfidfConfig, TfidfFeaturizer
    from learner.metrics import precision_at_k
    from learner.xmc import LabelNameMatcher, LexicalConfig, XRConfig, XREnsemble, XRLinear, blend_topk
    from learner.xmc.config import LARGE_DATA_XR
    from learner.xmc.neighbours import NeighbourVoter

    args = parse_args()
    variants = json.loads(args.variants) if args.variants else SETS[args.set]
    rows: list[dict[str, Any]] = []
    with gzip.open(args.data / "train.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            if len(rows) >= args.docs:
                break
            rows.append(json.loads(line))
    train = [r for i, r in enumerate(rows) if i % args.stride != args.stride - 1]
    screen = [r for i, r in enumerate(rows) if i % args.stride == args.stride - 1]
    labels = sorted({label for r in train for label in r["labels"]})
    column = {label: j for j, label in enumerate(labels)}

    def targets(part: list[dict[str, Any]]) -> Any:
        cols = [[column[label] for label in r["labels"] if label in column] for r in part]
        indptr = np.cumsum([0, *map(len, cols)])
        data = np.ones(int(indptr[-1]), dtype=np.float32)
        return sp.csr_matrix(
            (data, np.concatenate([np.asarray(c, np.int64) for c in cols]), indptr), (len(part), len(labels))
        )

    Y, Y_screen = targets(train), targets(screen)
    result: dict[str, Any] = {
        **header("xmc-training", {k: str(v) for k, v in vars(args).items()}),
        "source_sha256": source_hash(("learner",)),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "splits": {"train": len(train), "screen": len(screen), "labels_in_train": len(labels)},
        "rule": f"the first {args.docs} documents of train.jsonl.gz; every {args.stride}th held out as screen",
        "rows": [],
    }
    for variant in variants:
        tfidf = dict(variant.get("tfidf", {}))
        n_trees = int(variant.get("n_trees", 1))
        xr = {k: v for k, v in variant.items() if k not in ("tfidf", "n_trees")}
        load_before = [round(v, 2) for v in os.getloadavg()]
        started = time.process_time()
        featurizer, X = TfidfFeaturizer.fit_transform([r["text"] for r in train], TfidfConfig(**tfidf))
        featurized = time.process_time()
        config = XRConfig(**{**xr, "n_jobs": 1})
        model = XRLinear.train(X, Y, config) if n_trees == 1 else XREnsemble.train(X, Y, config, n_trees=n_trees)
        trained = time.process_time()
        X_screen = featurizer.transform([r["text"] for r in screen])
        top, _ = model.predict_topk(X_screen, 5)
        row: dict[str, Any] = {}
        if args.blend and n_trees == 1:
            large = FastTierConfig()
            model.config = dataclasses.replace(model.config, path_exponent=LARGE_DATA_XR["path_exponent"])
            wide, wide_scores = model.predict_topk(X_screen, 50, pifa_weight=float(LARGE_DATA_XR["pifa_weight"]))
            w_lex, w_nn = large.large_data_lexical_weight, large.large_data_neighbour_weight
            names = LabelNameMatcher.fit(labels, [r["text"] for r in train], Y, LexicalConfig())
            vote = NeighbourVoter.fit(X, Y).score(X_screen)
            extra = (w_lex * names.score([r["text"] for r in screen]) + w_nn * vote) / (w_lex + w_nn)
            blended = blend_topk(wide, wide_scores, extra, w_lex + w_nn, 5)[0]
            row = {
                "blend_p_at_1": round(precision_at_k(Y_screen, blended, 1), 4),
                "blend_p_at_5": round(precision_at_k(Y_screen, blended, 5), 4),
            }
        result["rows"].append(
            {
                "variant": variant,
                "tfidf_cpu_seconds": round(featurized - started, 1),
                "xr_cpu_seconds": round(trained - featurized, 1),
                "features": int(X.shape[1]),
                "nnz_per_document": round(X.nnz / X.shape[0], 1),
                "p_at_1": round(precision_at_k(Y_screen, top, 1), 4),
                "p_at_5": round(precision_at_k(Y_screen, top, 5), 4),
                "load_average_before": load_before,
                **row,
            }
        )
        write_json(args.out, result)
        print(json.dumps(result["rows"][-1]), flush=True)
    print(
        table(
            ["variant", "tf-idf cpu s", "xr cpu s", "nnz/doc", "P@1", "P@5", "blend P@1", "blend P@5"],
            [
                [
                    json.dumps(r["variant"]),
                    r["tfidf_cpu_seconds"],
                    r["xr_cpu_seconds"],
                    r["nnz_per_document"],
                    r["p_at_1"],
                    r["p_at_5"],
                    r.get("blend_p_at_1"),
                    r.get("blend_p_at_5"),
                ]
                for r in result["rows"]
            ],
        )
    )


if __name__ == "__main__":
    main()
