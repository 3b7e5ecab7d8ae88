"""Resolve the ``"auto" | "cpu" | "cuda"`` device setting; torch is imported only when called."""

from __future__ import annotations

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> str:
    """Turn a device setting into the device to run on.

    ``"auto"`` gives ``"cuda"`` when a CUDA device is available and ``"cpu"`` otherwise; ``"cpu"`` is
    returned as is; ``"cuda"`` raises ``ValueError`` when CUDA is not available.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    if device == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if device == "cuda" and not available:
        raise ValueError("device 'cuda' was requested but CUDA is not available on this machine")
    return "cuda" if available else "cpu"
