"""Few-shot encoder adaptation (`learner.adapt`): its wall time, and what it gains the fast tier.

Protocol (GoEmotions train file only; the dev and test files are never read): a seeded held-out sample of `--eval`
training documents is the evaluation set. For each size n in `--sizes` and each seed, n other training documents
are drawn (seeded; the samples of one seed are nested) and:

- frozen: the bundled all-MiniLM-L6-v2 embeds them; `FastTier.train(Inputs(texts, embeddings), Y, labels)`;
- adapted: `adapt_encoder(bundled model, texts, Y, folder, AdaptConfig(...))` (timed: the wall time of the call,
  model load and save included), the adapted encoder embeds the training and evaluation documents again, and the
  same fast tier is trained on those embeddings.

Both are scored on the evaluation set: micro-F1 at the rule tuned for micro-F1, macro-F1 at the rule tuned for
macro-F1, with the fast tier's default features (TF-IDF + embeddings) and with embeddings only (the encoder's
own contribution). Prints a Markdown table and writes JSON (date, machine, command, per-run numbers).

    .venv/bin/python bench/bench_adapt.py --sizes 200 --threads 1
    .venv/bin/python bench/bench_adapt.py --device cuda --sizes 200,1000,2000 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from typing import Any

import numpy as np
from common import RESULTS_DIR, ROOT, header, table, write_json
from tqdm import tqdm

from learner import metrics
from learner.adapt import AdaptConfig, adapt_encoder
from learner.benchmark import label_vocabulary, load_split
from learner.config import EncoderConfig
from learner.data import multi_hot
from learner.encoder import Encoder
from learner.fast import FastTier, FastTierConfig, Inputs

DATA = ROOT.parent / "shared" / "datasets" / "goemotions"
FEATURES = ("both", "embeddings")


def _scores(train: Inputs, Y: Any, labels: list[str], held: Inputs, Y_held: Any, features: str) -> dict[str, float]:
    model = FastTier.train(train, Y, labels, FastTierConfig(features=features))
    return {
        "micro_f1": round(metrics.micro_f1(Y_held, model.predict(held, objective="micro_f1")), 4),
        "macro_f1": round(metrics.macro_f1(Y_held, model.predict(held, objective="macro_f1")), 4),
    }


def _evaluate(
    texts: list[str],
    emb: np.ndarray,
    Y: Any,
    labels: list[str],
    held_texts: list[str],
    held_emb: np.ndarray,
    Y_held: Any,
) -> dict[str, dict[str, float]]:
    train, held = Inputs(texts=texts, embeddings=emb), Inputs(texts=held_texts, embeddings=held_emb)
    return {features: _scores(train, Y, labels, held, Y_held, features) for features in FEATURES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", default=str(DATA / "train.jsonl.gz"), help="JSONL(.gz) of {text, labels}")
    parser.add_argument("--sizes", default="200,1000,2000", help="labelled documents adapted on, comma-separated")
    parser.add_argument("--eval", type=int, default=2000, help="held-out training documents scored")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--config", default="{}", help="AdaptConfig fields as JSON (device comes from --device)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    parser.add_argument("--out", default=None, help="JSON output (default bench/results/adapt-<device>.json)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = AdaptConfig.from_dict({**json.loads(args.config), "device": args.device})
    sizes = [int(size) for size in args.sizes.split(",")]

    split = load_split("train", args.train)
    labels = label_vocabulary([split])
    Y_all = multi_hot(split.label_lists, labels)
    order = np.random.default_rng(12345).permutation(len(split.texts))
    held_rows, pool = order[: args.eval], order[args.eval :]
    if max(sizes) > len(pool):
        raise SystemExit(f"--sizes asks for {max(sizes)} documents; {len(pool)} are left after --eval")
    train_rows = {seed: np.random.default_rng(seed).permutation(pool)[: max(sizes)] for seed in range(args.seeds)}
    held_texts = [split.texts[i] for i in held_rows]
    Y_held = Y_all[held_rows]

    load_before = os.getloadavg()
    frozen_encoder = Encoder.load(EncoderConfig(device=args.device))
    needed = np.unique(np.concatenate(list(train_rows.values())))
    started = time.perf_counter()
    frozen_vectors = frozen_encoder.encode([split.texts[i] for i in needed], progress=True)
    frozen = dict(zip(needed.tolist(), frozen_vectors, strict=True))
    frozen_held = frozen_encoder.encode(held_texts, progress=True)
    frozen_encode_seconds = time.perf_counter() - started
    device = frozen_encoder.device
    del frozen_encoder

    work = tempfile.mkdtemp(prefix="alabel-bench-adapt-")
    runs = []
    try:
        for size in tqdm(sizes, desc="sizes"):
            for seed in range(args.seeds):
                rows = train_rows[seed][:size]
                texts = [split.texts[i] for i in rows]
                Y = Y_all[rows]
                before = _evaluate(
                    texts, np.stack([frozen[int(i)] for i in rows]), Y, labels, held_texts, frozen_held, Y_held
                )
                folder = os.path.join(work, f"adapted-{size}-{seed}")
                started = time.perf_counter()
                stats = adapt_encoder(None, texts, Y, folder, config, progress=True)
                adapt_seconds = time.perf_counter() - started
                encoder = Encoder.load(EncoderConfig(path=folder, device=args.device))
                started = time.perf_counter()
                emb = encoder.encode(texts)
                held_emb = encoder.encode(held_texts)
                encode_seconds = time.perf_counter() - started
                after = _evaluate(texts, emb, Y, labels, held_texts, held_emb, Y_held)
                del encoder
                shutil.rmtree(folder, ignore_errors=True)
                run = {
                    "size": size,
                    "seed": seed,
                    "adapt_seconds": round(adapt_seconds, 1),
                    "encode_seconds": round(encode_seconds, 1),
                    "frozen": before,
                    "adapted": after,
                    "adaptation": {
                        k: stats[k]
                        for k in ("n_pairs", "n_positive_pairs", "steps", "loss_first", "loss_last", "device", "bf16")
                    },
                }
                runs.append(run)
                tqdm.write(json.dumps(run))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows_out = []
    for run in runs:
        row: list[object] = [run["size"], run["seed"], run["adapt_seconds"], run["adaptation"]["steps"]]
        row.append(f"{run['adaptation']['loss_first']:.3f} -> {run['adaptation']['loss_last']:.3f}")
        for features in FEATURES:
            for metric in ("micro_f1", "macro_f1"):
                a, b = run["frozen"][features][metric], run["adapted"][features][metric]
                row.append(f"{a:.3f} -> {b:.3f} ({b - a:+.3f})")
        rows_out.append(row)
    headers = ["docs", "seed", "adapt s", "steps", "pair loss"]
    headers += [f"{m} {f} frozen -> adapted" for f in ("TF-IDF+emb", "emb only") for m in ("micro-F1", "macro-F1")]
    print(table(headers, rows_out))
    payload = {
        **header("adapt", vars(args)),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "config": config.to_dict(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "eval_documents": len(held_rows),
        "labels": len(labels),
        "frozen_encode_seconds": round(frozen_encode_seconds, 1),
        "runs": runs,
    }
    out = args.out or RESULTS_DIR / f"adapt-{device}.json"
    print(f"wrote {write_json(out, payload)}")


if __name__ == "__main__":
    main()
