"""Choose the label-name prior's settings on a split of the TRAIN file (never on the test or dev file).

    .venv/bin/python bench/tune_prior.py --train ../shared/datasets/goemotions/train.jsonl.gz \
        [--pseudo 1,3,10,30] [--checkpoints 20,100,500] [--seeds 2] [--out bench/results/tune_prior_goemotions.json]

The train file is split at random into a pool (80 %) and a held-out part (20 %, at most --held-out documents).
1. The zero-label calibration (scale, offset of sigmoid(scale * cos + offset)): fitted on --calibration pool
   documents (logistic regression of their gold labels on the cosines), the value ``PriorConfig`` then carries.
2. The hand-over weight ``pseudo_positives``: each value is run through the simulator's checkpoint mode (random
   picks, the same documents for every value) and measured on the held-out part; the turn-1 learner beside it.
Prints a table and writes the JSON named by --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine_info
from learner.benchmark import embed_splits, embed_texts, label_vocabulary, load_split
from learner.data import multi_hot
from learner.prior import LabelPrior, PriorConfig, label_text
from learner.simulate import LowData, Simulation, interval


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--train-labels", default=None, help="side file of {id, labels} (tibkat-gnd domains)")
    parser.add_argument("--pseudo", default="1,3,10,30")
    parser.add_argument("--checkpoints", default="20,100,500")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--held-out", type=int, default=5000)
    parser.add_argument("--pool-size", type=int, default=None, help="a sample of the pool part (large files)")
    parser.add_argument("--calibration", type=int, default=2000)
    parser.add_argument("--config", default="{}", help="FastTierConfig fields as JSON")
    parser.add_argument("--cache-dir", default="var/benchmark-cache")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from learner.simulate import replace_labels

    split = replace_labels(load_split("train", args.train), args.train_labels, "train-labels")
    embeddings, _ = embed_splits([split], encoder_path=None, cache_dir=Path(args.cache_dir), progress=True)
    X = embeddings["train"]
    labels = label_vocabulary([split])
    Y = multi_hot(split.label_lists, labels)
    label_vectors = embed_texts(
        [label_text(name) for name in labels], encoder_path=None, cache_dir=Path(args.cache_dir), progress=True
    )
    order = np.random.default_rng(7).permutation(len(split))
    n_held = min(args.held_out, len(split) // 5)
    held, pool = np.sort(order[:n_held]), np.sort(order[n_held:])
    if args.pool_size:
        pool = np.sort(pool[: args.pool_size])

    calibration_rows = pool[: args.calibration]
    fitted = LabelPrior(labels, label_vectors).calibrated(X[calibration_rows], Y[calibration_rows])
    scale, offset = round(fitted.scale, 2), round(fitted.offset, 2)
    print(f"zero-label calibration on {len(calibration_rows)} pool documents: scale {scale}, offset {offset}")

    simulation = Simulation(
        texts=[split.texts[i] for i in pool],
        Y=Y[pool],
        test_texts=[split.texts[i] for i in held],
        Y_test=Y[held],
        labels=labels,
        config=json.loads(args.config),
        embeddings=X[pool],
        test_embeddings=X[held],
        progress=True,
    )
    checkpoints = [int(n) for n in args.checkpoints.split(",")]
    results: dict[str, dict[str, dict[str, float | None]]] = {}

    def measure(name: str, learner: str, config: PriorConfig) -> None:
        low = LowData(simulation=simulation, label_embeddings=label_vectors, prior_config=config.to_dict())
        runs = [low.run(learner, seed, checkpoints) for seed in range(args.seeds)]
        results[name] = {
            str(n): {
                metric: interval([run[r].get(metric) for run in runs])["mean"]
                for metric in ("micro_f1", "macro_f1", "P@1", "P@5", "pretick_precision", "pretick_recall")
            }
            for r, n in enumerate(checkpoints)
        }

    base = PriorConfig(scale=scale, offset=offset)
    measure("turn1", "turn1", base)
    zero = LowData(simulation=simulation, label_embeddings=label_vectors, prior_config=base.to_dict()).point(
        "prior", np.array([], dtype=np.int64)
    )
    for pseudo in [float(p) for p in args.pseudo.split(",")]:
        measure(f"prior pseudo={pseudo:g}", "prior", dataclasses.replace(base, pseudo_positives=pseudo))

    print(f"\nprior alone at 0 labels (held-out part of train): P@1 {zero['P@1']:.3f}, P@5 {zero['P@5']:.3f}")
    print("| learner | labels | micro-F1 | macro-F1 | P@1 | P@5 |")
    print("|---|--:|--:|--:|--:|--:|")
    for name, rows in results.items():
        for n, row in rows.items():
            cells = " | ".join(f"{row[m]:.3f}" for m in ("micro_f1", "macro_f1", "P@1", "P@5"))
            print(f"| {name} | {n} | {cells} |")
    if args.out:
        payload = {
            "machine": machine_info(),
            "command": " ".join(sys.argv),
            "zero_label_calibration": {"scale": scale, "offset": offset, "documents": len(calibration_rows)},
            "zero_labels": zero,
            "results": results,
            "pool_documents": len(pool),
            "held_out_documents": len(held),
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
