"""How the pre-tick rule's confidence level trades precision for recall, from a stored low-data run.

Every point of a `python -m learner.simulate --checkpoints ...` run keeps the model's out-of-fold tick curve
(``tick_curve``, what the threshold is chosen on) and the same curve on the documents it was measured on
(``test_tick_curve``). For each confidence level this picks the threshold ``learner.decision.pretick_threshold``
would pick and reads what such pre-ticks did on the measured documents, per learner and label count::

    .venv/bin/python bench/pretick_confidence.py bench/results/tune-pretick-goemotions \
        > bench/results/tune-pretick-goemotions/confidence-levels.txt

Choose the level on a run measured on a held-out part of the train file (``--test-from-pool``), never on test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learner.decision import pretick_threshold, tick_stats

LEVELS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the --out folder of a learner.simulate --checkpoints run")
    parser.add_argument("--floor", type=float, default=0.7)
    args = parser.parse_args()
    cells: dict[tuple[str, int, float], list[tuple[float | None, float]]] = {}
    for file in sorted(Path(args.folder, "runs").glob("checkpoints-*-seed*.json")):
        learner = file.stem.removeprefix("checkpoints-").rsplit("-seed", 1)[0]
        for point in json.loads(file.read_text(encoding="utf-8"))["result"]:
            if point.get("tick_curve") is None or "test_tick_curve" not in point:
                continue
            for level in LEVELS:
                threshold = pretick_threshold(point["tick_curve"], args.floor, confidence=level)
                stats = (
                    tick_stats(point["test_tick_curve"], threshold)
                    if threshold is not None
                    else {"precision": None, "recall": 0.0}
                )
                cells.setdefault((learner, point["labelled"], level), []).append(
                    (stats["precision"], stats["recall"] or 0.0)
                )
    print("learner labels confidence | seeds that pre-tick | their precision: lowest, mean | mean recall")
    for (learner, labelled, level), values in sorted(cells.items()):
        precisions = [p for p, _ in values if p is not None]
        low = f"{min(precisions):.3f}" if precisions else "-"
        mean = f"{np.mean(precisions):.3f}" if precisions else "-"
        recall = np.mean([r for _, r in values])
        print(
            f"{learner:6s} {labelled:5d} {level:.2f} | {len(precisions)}/{len(values)} | {low}, {mean} | {recall:.3f}"
        )


if __name__ == "__main__":
    main()
