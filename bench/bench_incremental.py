"""Incremental update vs full retrain of the fast tier, after 100 new labelled documents.

Protocol (goemotions by default): draw a seeded random sample of `--base` training documents and train the fast
tier on it the way the platform does (no external validation: `FastTier.train`'s own tuning, cross-validated up to
2,000 documents, a held-out 10% above, then a refit on everything). Then 100 new labelled documents arrive:

- incremental: `model.update(new 100, replay = --replay old documents, all by default)` (flat heads: warm-started
  L-BFGS; tree heads: the classifiers of the labels the new documents carry, retrained on the routed documents);
- full: `FastTier.train` from scratch on base + new.

Both are evaluated on the test file (micro-F1 at the micro rule, macro-F1 at the macro rule, P@1) and timed.
Repeated for each `--base` size and `--seeds`. Prints a Markdown table and writes JSON.

    .venv/bin/python bench/bench_incremental.py --cache-dir var/benchmark-cache
    .venv/bin/python bench/bench_incremental.py --train ../shared/datasets/tibkat-gnd/train.jsonl.gz \
        --test ../shared/datasets/tibkat-gnd/dev.jsonl.gz --base 20000,89000 --seeds 1 --out bench/results/incr-tib.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from learner import metrics  # noqa: E402
from learner.benchmark import embed_splits, label_vocabulary, load_split  # noqa: E402
from learner.data import multi_hot  # noqa: E402
from learner.fast import FastTier, FastTierConfig, Inputs  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets" / "goemotions"


def _evaluate(model: FastTier, inputs: Inputs, truth: sp.csr_matrix) -> dict[str, float]:
    idx, _ = model.predict_topk(inputs, 5)
    return {
        "micro_f1": metrics.micro_f1(truth, model.predict(inputs, objective="micro_f1")),
        "macro_f1": metrics.macro_f1(truth, model.predict(inputs, objective="macro_f1")),
        "P@1": metrics.precision_at_k(truth, idx, 1),
        "P@5": metrics.precision_at_k(truth, idx, 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", default=str(DATA / "train.jsonl.gz"))
    parser.add_argument("--test", default=str(DATA / "test.jsonl.gz"))
    parser.add_argument("--base", default="1000,5000,20000", help="labelled documents before the update")
    parser.add_argument("--new", type=int, default=100)
    parser.add_argument("--replay", type=int, default=-1, help="old documents replayed; -1: all of them")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--config", default="{}", help="FastTierConfig fields as JSON")
    parser.add_argument("--cache-dir", default="var/benchmark-cache")
    parser.add_argument("--out", default="bench/results/incremental.json")
    args = parser.parse_args()

    train, test = load_split("train", args.train), load_split("test", args.test)
    labels = label_vocabulary([train, test])
    config = FastTierConfig.from_dict(json.loads(args.config))
    embeddings = {}
    if config.resolve(len(labels)).needs_embeddings:
        embeddings, _ = embed_splits([train, test], encoder_path=None, cache_dir=Path(args.cache_dir), progress=True)
    Y_train = multi_hot(train.label_lists, labels)
    Y_test = multi_hot(test.label_lists, labels)
    test_inputs = Inputs(texts=list(test.texts), embeddings=embeddings.get("test"))

    def inputs(rows: np.ndarray) -> Inputs:
        emb = embeddings["train"][rows] if "train" in embeddings else None
        return Inputs(texts=[train.texts[i] for i in rows], embeddings=emb)

    rows_out = []
    sizes = [int(size) for size in args.base.split(",")]
    for size in tqdm(sizes, desc="base sizes"):
        for seed in range(args.seeds):
            order = np.random.default_rng(seed).permutation(len(train.texts))
            base, new = order[:size], order[size : size + args.new]
            if args.replay < 0 or args.replay >= size:
                replay = base
            else:
                replay = np.random.default_rng(seed + 100).choice(base, size=args.replay, replace=False)
            model = FastTier.train(inputs(base), Y_train[base], labels, config)
            started = time.perf_counter()
            updated = model.update(inputs(new), Y_train[new], labels, replay=(inputs(replay), Y_train[replay]))
            update_seconds = time.perf_counter() - started
            both = np.concatenate([base, new])
            started = time.perf_counter()
            full = FastTier.train(inputs(both), Y_train[both], labels, config)
            full_seconds = time.perf_counter() - started
            result = {
                "base": size,
                "seed": seed,
                "update_seconds": round(update_seconds, 2),
                "full_seconds": round(full_seconds, 2),
                "time_ratio": round(update_seconds / full_seconds, 3),
                "update_info": {k: v for k, v in updated.train_info.items() if "seconds" in k or "update" in k},
                "before": _evaluate(model, test_inputs, Y_test),
                "incremental": _evaluate(updated, test_inputs, Y_test),
                "full": _evaluate(full, test_inputs, Y_test),
            }
            rows_out.append(result)
            tqdm.write(json.dumps(result))

    print(
        "| base docs | seed | update s | full s | time ratio "
        "| micro-F1 before / incremental / full | P@1 incremental / full | P@5 incremental / full |"
    )
    print("|--:|--:|--:|--:|--:|---|---|---|")
    for r in rows_out:
        print(
            f"| {r['base']} | {r['seed']} | {r['update_seconds']} | {r['full_seconds']} | {r['time_ratio']} | "
            f"{r['before']['micro_f1']:.4f} / {r['incremental']['micro_f1']:.4f} / {r['full']['micro_f1']:.4f} | "
            f"{r['incremental']['P@1']:.4f} / {r['full']['P@1']:.4f} | "
            f"{r['incremental']['P@5']:.4f} / {r['full']['P@5']:.4f} |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "results": rows_out}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
