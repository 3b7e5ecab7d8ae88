"""Encoder fine-tuning throughput: training steps of the bundled MiniLM (all-MiniLM-L6-v2) with a multi-label head on
random token ids (forward, ZLPR-free BCE loss, backward, AdamW step), in bf16 autocast on CUDA (fp32 on the CPU).
Reports tokens per second and the model FLOPs utilisation (MFU) against the device's dense bf16 peak.

    .venv/bin/python bench/bench_throughput.py --out bench/results/throughput-<device>.json          # CUDA if present
    .venv/bin/python bench/bench_throughput.py --device cpu --batch-size 8 --steps 3 --out /tmp/t.json  # a dry run

FLOPs per training token: 6 N (N: the encoder's non-embedding parameters; forward 2 N, backward 4 N) plus the
attention's 12 L H T (L layers, H hidden size, T tokens per sequence), the PaLM paper's estimate (Chowdhery et al.
2022, appendix B). MFU = achieved FLOP/s / peak; the peak is looked up by device name (H100/H200 SXM: 989 TFLOP/s
dense bf16) and null for a device not in the table (the CPU).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import header, table, write_json

# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, by a substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L4": 121.0}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (cuda when present), cuda or cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--labels", type=int, default=28, help="outputs of the multi-label head")
    parser.add_argument("--steps", type=int, default=30, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--encoder", help="a local encoder folder (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args()


def peak_tflops(device_name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return value
    return None


def main() -> None:
    args = parse_args()
    import torch
    from transformers import AutoModel

    from learner.encoder import bundled_model_path

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    if device == "auto":
        device = "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    torch.manual_seed(0)
    folder = args.encoder or bundled_model_path()
    encoder = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32).to(device)
    config = encoder.config
    head = torch.nn.Linear(config.hidden_size, args.labels).to(device)
    parameters = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=5e-5)
    embedding_params = sum(p.numel() for n, p in encoder.named_parameters() if "embeddings" in n)
    n_params = sum(p.numel() for p in parameters) - embedding_params
    flops_per_token = 6 * n_params + 12 * config.num_hidden_layers * config.hidden_size * args.seq_len
    ids = torch.randint(1000, config.vocab_size, (args.batch_size, args.seq_len), device=device)
    mask = torch.ones_like(ids)
    target = (torch.rand(args.batch_size, args.labels, device=device) < 0.1).float()
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device == "cuda" else None

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        if autocast is not None:
            with autocast:
                hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, H)
                logits = head(hidden.mean(dim=1))  # (B, labels)
        else:
            hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            logits = head(hidden.mean(dim=1))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), target)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens_per_second = args.steps * args.batch_size * args.seq_len / seconds
    achieved_tflops = tokens_per_second * flops_per_token / 1e12
    peak = peak_tflops(name) if device == "cuda" else None
    result = {
        "device": name,
        "precision": "bf16 autocast" if device == "cuda" else "fp32",
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "steps": args.steps,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens_per_second, 1),
        "non_embedding_parameters": n_params,
        "flops_per_token": flops_per_token,
        "achieved_tflops": round(achieved_tflops, 3),
        "peak_bf16_tflops": peak,
        "mfu": round(achieved_tflops / peak, 4) if peak else None,
        "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if device == "cuda" else None,
        **header("throughput", vars(args) | {"out": str(args.out)}),
    }
    print(
        table(
            ["device", "tokens/s", "TFLOP/s", "MFU"],
            [[name, f"{tokens_per_second:,.0f}", f"{achieved_tflops:.2f}", result["mfu"]]],
        )
    )
    write_json(args.out, result)


if __name__ == "__main__":
    main()
