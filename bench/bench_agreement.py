"""Speed and size of the inter-annotator agreement report (learner.agreement) at the platform's label counts.

Synthetic overlap documents over a label universe of --labels (default 41,218, tibkat-gnd's): each document has a
true label set of 3-6 labels (drawn Zipf-like, as subject headings are, or uniformly with --uniform); each of
--annotators experts keeps each true label with probability 0.8 and adds 0-2 labels of their own; every fifth
document has gold. For each --units size it times one `agreement(...)` call with --resamples bootstrap resamples
(what the agreement job computes) and measures the JSON report's size. alpha-MASI is computed on at most
learner.agreement.MASI_MAX_UNITS units (a uniform sample above; the report says how many).

    .venv/bin/python bench/bench_agreement.py                 # 500, 2,000 and 5,000 documents
    .venv/bin/python bench/bench_agreement.py --units 500 --uniform

Prints a Markdown table and writes bench/results/agreement.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from common import RESULTS_DIR, header, table, write_json  # puts the repository root on the path

from learner.agreement import MASI_MAX_UNITS, agreement


def units_for(rng: np.random.Generator, n_units: int, n_labels: int, annotators: int, uniform: bool):
    p = None if uniform else 1.0 / np.arange(1, n_labels + 1)
    if p is not None:
        p = p / p.sum()
    units, gold = [], []
    for u in range(n_units):
        true = set(rng.choice(n_labels, size=int(rng.integers(3, 7)), replace=False, p=p).tolist())
        answers = {}
        for a in range(annotators):
            own = set(rng.choice(n_labels, size=int(rng.integers(0, 3)), p=p).tolist())
            answers[f"annotator{a}"] = {label for label in true if rng.random() < 0.8} | own
        units.append(answers)
        gold.append(true if u % 5 == 0 else None)
    return units, gold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, default=41_218)
    parser.add_argument("--units", type=int, nargs="+", default=[500, 2_000, 5_000])
    parser.add_argument("--annotators", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--uniform", action="store_true", help="labels drawn uniformly instead of Zipf-like")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "agreement.json")
    args = parser.parse_args()

    runs = []
    for n_units in args.units:
        rng = np.random.default_rng(args.seed)
        units, gold = units_for(rng, n_units, args.labels, args.annotators, args.uniform)
        started = time.perf_counter()
        report = agreement(units, labels=range(args.labels), gold=gold, n_boot=args.resamples, seed=args.seed)
        seconds = time.perf_counter() - started
        runs.append(
            {
                "units": n_units,
                "answers": report["answers"],
                "labels_in_play": report["labels_in_play"],
                "masi_units": report["masi_units"],
                "seconds": round(seconds, 3),
                "report_mb": round(len(json.dumps(report)) / 1e6, 3),
                "alpha_masi": report["overall"]["alpha_masi"],
                "alpha_macro": report["overall"]["alpha_macro"],
                "ac1_pooled": report["overall"]["ac1_pooled"],
            }
        )
        print(f"{n_units} documents: {seconds:.2f} s", flush=True)
    print(
        f"\n{args.labels} labels ({'uniform' if args.uniform else 'Zipf-like'}), {args.annotators} annotators, "
        f"{args.resamples} bootstrap resamples, alpha-MASI on at most {MASI_MAX_UNITS} documents"
    )
    print(
        table(
            ["documents", "answers", "labels in play", "alpha-MASI on", "seconds", "report MB", "alpha-MASI"],
            [
                [
                    r["units"],
                    r["answers"],
                    r["labels_in_play"],
                    r["masi_units"],
                    r["seconds"],
                    r["report_mb"],
                    f"{r['alpha_masi']['value']:.3f} [{r['alpha_masi']['low']:.3f}, {r['alpha_masi']['high']:.3f}]",
                ]
                for r in runs
            ],
        )
    )
    payload = {
        **header("agreement", {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}),
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average": os.getloadavg(),
        "runs": runs,
    }
    print(f"wrote {write_json(args.out, payload)}")


if __name__ == "__main__":
    main()
