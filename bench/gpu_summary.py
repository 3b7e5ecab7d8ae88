"""Summarises a bench/gpu_check.sh output folder as Markdown (device, date, each step's numbers):

python bench/gpu_summary.py gpu-out
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(folder: Path) -> None:
    device = (folder / "device.txt").read_text().strip() if (folder / "device.txt").exists() else "unknown"
    print(f"## GPU check\n\n```\n{device}\n```\n")
    print("| run | P@1 | P@5 | micro-F1 | macro-F1 | train s | peak RSS MB |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for name in ("full-goemotions", "full-tibkat"):
        result = _load(folder / f"{name}.json")
        if result is None:
            print(f"| {name} | failed: see {name}.log | | | | | |")
            continue
        m = result["metrics"]
        print(
            f"| {name} | {m['P@1']:.3f} | {m['P@5']:.3f} | {m['micro_f1']:.3f} | {m['macro_f1']:.3f} "
            f"| {result['train_seconds']:.0f} | {result.get('peak_rss_mb', 0):.0f} |"
        )
    throughput = _load(folder / "throughput.json")
    if throughput is None:
        print("\nthroughput: failed (see throughput.log)")
    else:
        mfu = throughput["mfu"]
        print(
            f"\nFine-tuning throughput ({throughput['device']}, {throughput['precision']}, batch "
            f"{throughput['batch_size']} x {throughput['seq_len']} tokens): {throughput['tokens_per_second']:,.0f} "
            f"tokens/s, {throughput['achieved_tflops']:.1f} TFLOP/s, MFU "
            + (f"{mfu:.1%}" if mfu is not None else "n/a (no peak known for this device)")
        )
    log = folder / "gpu-tests.log"
    if log.exists():
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        print(f"\n`pytest -m gpu`: {lines[-1] if lines else 'no output'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "gpu-out"))
