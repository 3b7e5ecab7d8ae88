"""Why a strategy's batch moves macro-F1: one batch of a strategy against one random batch, the decision rules each
model fits, on GoEmotions (train sample -> dev), with the learner the platform serves (the fast tier + the prior).

    .venv/bin/python bench/rule_bias.py [--strategy anchors] [--seed 0] [--batch 20] [--out bench/results/x.json]

From the simulator's first 20 random documents of ``--seed`` (a seeded 20,000-document sample of the train file, as
in docs/benchmarks.md), it adds the strategy's next batch or a random batch of the same size, trains the learner on
each set and prints micro/macro-F1, P@1/P@5 on dev, the positives each batch brought (and of how many labels) and
the thresholds of the micro-F1 and macro-F1 rules that cross-validation chose on each labelled set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import header, write_json
from learner import simulate
from learner.benchmark import embed_splits, embed_texts, label_vocabulary, load_split
from learner.prior import LabelPrior, label_text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", default="../shared/datasets/goemotions/train.jsonl.gz")
    parser.add_argument("--test", default="../shared/datasets/goemotions/dev.jsonl.gz")
    parser.add_argument("--strategy", default="anchors")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--cache-dir", default="var/benchmark-cache")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    cache = Path(args.cache_dir)
    train = simulate.sample_split(load_split("train", args.train), 20000, 1)  # the simulator's --pool-size 20000 sample
    test = load_split("test", args.test)
    labels = label_vocabulary([train, test])
    embeddings, _ = embed_splits([train, test], encoder_path=None, cache_dir=cache, progress=True)
    vectors = embed_texts([label_text(name) for name in labels], encoder_path=None, cache_dir=cache, progress=False)
    options = argparse.Namespace(shortlist=simulate.SHORTLIST, no_progress=True)
    sim = simulate.build_simulation(train, test, labels, {}, embeddings, options, prior=LabelPrior(labels, vectors))

    first = sim.seed_documents(args.seed, 20)
    pool = np.setdiff1d(np.arange(len(sim.texts)), first)
    batches = {
        args.strategy: pool[sim.pick(args.strategy, sim.train(first), first, pool, args.batch, args.seed)],
        "random": pool[np.random.default_rng([args.seed, 1]).choice(len(pool), args.batch, replace=False)],
    }
    results = {}
    for name, batch in batches.items():
        model = sim.train(np.concatenate([first, batch]))
        brought = np.asarray(sim.Y[batch].todense())
        results[name] = {
            **sim.evaluate(model),
            "positives_brought": int(brought.sum()),
            "labels_brought": int((brought.sum(axis=0) > 0).sum()),
            "micro_rule_threshold": round(float(model.rules["micro_f1"].threshold), 3),
            "macro_rule_threshold": round(float(model.rules["macro_f1"].threshold), 3),
            "macro_rule_per_label": len(model.rules["macro_f1"].per_label),
        }
        print(name, results[name])
    if args.out:
        write_json(Path(args.out), {**header("rule_bias", vars(args)), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
