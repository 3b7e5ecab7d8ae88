"""Can the label-name prior beat a frequency baseline at 0 labels? Label-text templates and pool normalisation, on a
split of the TRAIN file (never the test or dev file).

    .venv/bin/python bench/prior_templates.py --train ../shared/datasets/goemotions/train.jsonl.gz \
        [--out bench/results/prior-templates-goemotions.json]

The train file is split as bench/tune_prior.py splits it (a held-out part of 5,000 documents, the rest the pool).
For each template the labels are embedded as ``template.format(name)``; each held-out document's labels are ranked
by cosine similarity (``raw``), by cosine minus the label's mean cosine over 10,000 pool documents (``centred``,
"calibrate before use"), or by its z-score over them (``z``). The frequency baseline ranks the labels by their
positives in the pool: it needs labels the prior does not have. Prints P@1 / P@5 per variant, and how often the 5
pool documents nearest to a label's name carry it (what the `anchors` strategy relies on); writes the JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import header, write_json
from learner.benchmark import embed_splits, embed_texts, label_vocabulary, load_split
from learner.data import multi_hot

TEMPLATES = {
    "name": "{}",
    "expresses": "This comment expresses {}.",
    "feel": "I feel {}.",
    "emotion": "The emotion in this text is {}.",
    "about": "A text about {}.",
}


def precision_at(Y: np.ndarray, scores: np.ndarray, k: int) -> float:
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.take_along_axis(Y, top, axis=1).sum(axis=1).mean() / k)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--held-out", type=int, default=5000)
    parser.add_argument("--cache-dir", default="var/benchmark-cache")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    split = load_split("train", args.train)
    cache = Path(args.cache_dir)
    X = embed_splits([split], encoder_path=None, cache_dir=cache, progress=True)[0]["train"]
    labels = label_vocabulary([split])
    Y = np.asarray(multi_hot(split.label_lists, labels).todense(), dtype=np.float32)
    order = np.random.default_rng(7).permutation(len(split))  # bench/tune_prior.py's split
    n_held = min(args.held_out, len(split) // 5)
    held, pool = np.sort(order[:n_held]), np.sort(order[n_held:])
    reference = X[pool[:10000]]

    frequency = np.broadcast_to(Y[pool].sum(axis=0), (len(held), len(labels)))
    results = {"frequency": {"P@1": precision_at(Y[held], frequency, 1), "P@5": precision_at(Y[held], frequency, 5)}}
    for name, template in TEMPLATES.items():
        vectors = embed_texts(
            [template.format(label) for label in labels], encoder_path=None, cache_dir=cache, progress=False
        )
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        cos, ref = X[held] @ vectors.T, reference @ vectors.T
        variants = {"raw": cos, "centred": cos - ref.mean(axis=0), "z": (cos - ref.mean(axis=0)) / ref.std(axis=0)}
        for variant, scores in variants.items():
            results[f"{name}/{variant}"] = {
                "P@1": precision_at(Y[held], scores, 1),
                "P@5": precision_at(Y[held], scores, 5),
            }
    print("| ranking | P@1 | P@5 |\n|---|--:|--:|")
    for name, row in results.items():
        print(f"| {name} | {row['P@1']:.3f} | {row['P@5']:.3f} |")

    # The other direction (what `anchors` relies on): per label, the share of positives among the 5 pool documents
    # most similar to its bare name, against the label's share of all pool documents (a random pick's chance).
    names = embed_texts(list(labels), encoder_path=None, cache_dir=cache, progress=False)
    sims = X[pool[:20000]] @ (names / np.linalg.norm(names, axis=1, keepdims=True)).T  # (20,000, L)
    top5 = np.argsort(-sims, axis=0, kind="stable")[:5]  # (5, L)
    Y_pool = Y[pool[:20000]]
    retrieval = {
        label: {"top5": float(Y_pool[top5[:, j], j].mean()), "base_rate": float(Y_pool[:, j].mean())}
        for j, label in enumerate(labels)
    }
    mean_top5 = float(np.mean([row["top5"] for row in retrieval.values()]))
    mean_base = float(np.mean([row["base_rate"] for row in retrieval.values()]))
    print(f"label-name retrieval: positives among the 5 nearest {mean_top5:.3f}, at random {mean_base:.3f} (mean)")
    if args.out:
        payload = {**header("prior_templates", vars(args)), "templates": TEMPLATES, "results": results}
        payload["retrieval"] = {"mean_top5": mean_top5, "mean_base_rate": mean_base, "labels": retrieval}
        write_json(Path(args.out), {**payload, "held_out_documents": len(held)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
