"""Selection speed: every strategy of learner.strategies on a 100,000-document pool at 41,218 labels.

The strategies read each document's top-K shortlist (K = 100, what the platform and the simulator pass), so the
input is (N, K) label ids and calibrated probabilities, here drawn at random with a realistic shape (a few likely
labels per document, then a long tail near 0), plus 384-dimensional embeddings for the diverse batch rules and
2,000 labelled documents. Times scoring + the batch rule (a batch of 20, as in the simulator, and 200, the
platform's queue size) and prints a Markdown table; the model's own prediction time is in docs/benchmarks.md.
ProbCover is timed twice: with its delta rule (a project's first coverage round) and with the delta the platform
keeps per encoder (`annotator.services.chooser.probcover_delta`: the later rounds only pick).

    .venv/bin/python bench/bench_select.py [--docs 100000] [--labels 41218] [--shortlist 100]
        [--strategies a,b] [--repeats 3] [--out bench/results/select.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learner import strategies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=41_218)
    parser.add_argument("--shortlist", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--strategies", default=None, help="comma-separated (default: every strategy but modAL's)")
    parser.add_argument("--out", default=None, help="write the timings as JSON here")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n, k, n_labels = args.docs, args.shortlist, args.labels
    idx = np.stack([rng.choice(n_labels, size=k, replace=False) for _ in range(min(n, 2000))])  # (2000, K)
    idx = idx[rng.integers(0, len(idx), size=n)]  # (N, K) shortlists, reusing rows to save setup time
    decay = np.exp(-np.arange(k) / 3.0)  # (K,) a few likely labels, then near 0
    probs = np.clip(rng.beta(2, 5, size=(n, k)) * decay, 0, 1).astype(np.float32)  # (N, K) best first
    probs = -np.sort(-probs, axis=1)
    counts = rng.poisson(2.0, size=n_labels)  # (L,) labelled positives per label
    embeddings = rng.normal(size=(n, 384)).astype(np.float32)
    labelled = rng.normal(size=(2000, 384)).astype(np.float32)

    print(f"pool {n:,} documents, {n_labels:,} labels, shortlist {k}; best of {args.repeats}")
    print("| strategy | batch 20 (s) | batch 200 (s) |")
    print("|---|--:|--:|")
    # auto runs one of its arms each round (timed with them); modAL's peers are dense-only.
    names = [n for n in strategies.STRATEGIES if n not in strategies.MODAL_STRATEGIES and n != strategies.AUTO]
    if args.strategies:
        names = [name.strip() for name in args.strategies.split(",") if name.strip()]
    per_label = {int(label): 0.4 for label in rng.choice(n_labels, size=min(n_labels, 500), replace=False)}
    load_before = os.getloadavg()
    rows = []

    def best_of(run, *args_, **kwargs) -> float:
        best = float("inf")
        for repeat in range(args.repeats):
            started = time.perf_counter()
            run(*args_, **kwargs, seed=repeat)
            best = min(best, time.perf_counter() - started)
        return best

    def record(name: str, seconds: list[float]) -> None:
        print(f"| {name} | {seconds[0]:.2f} | {seconds[1]:.2f} |")
        rows.append(
            {"strategy": name, "batch_20_seconds": round(seconds[0], 3), "batch_200_seconds": round(seconds[1], 3)}
        )

    context = {
        "idx": idx,
        "probs": probs,
        "n_labels": n_labels,
        "threshold": 0.3,
        "mean_cardinality": 3.0,
        "label_counts": counts,
        "embeddings": embeddings,
        "labelled_embeddings": labelled,
        "per_label": per_label,
    }
    for name in names:
        record(name, [best_of(strategies.select, name, batch, **context) for batch in (20, 200)])
        if name == "probcover":  # the platform keeps ProbCover's delta per encoder: its later rounds only pick
            kept = {"embeddings": embeddings, "labelled_embeddings": labelled}
            kept["delta"] = strategies.probcover_delta(embeddings, n_labels, seed=0)
            zeros = np.zeros(n)
            record(
                "probcover, delta kept",
                [best_of(strategies.select_batch, name, zeros, batch, **kept) for batch in (20, 200)],
            )
    if args.out:
        payload = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
            "args": vars(args),
            "timings": rows,
        }
        Path(args.out).write_text(json.dumps(payload, indent=2), encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
