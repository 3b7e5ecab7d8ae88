"""Resolve the ``"auto" | "cpu" | "cuda"`` device setting, and retry batched work with smaller batches when the
GPU runs out of memory. torch is imported only when called.

A CUDA out-of-memory error halves the batch and retries::

    size = run_batches(len(texts), encoder.batch_size, work, what="encoder batch")  # work(start, stop)
    encoder.batch_size = size  # the next call starts from the size that fit

``retry_on_oom`` is the building block: it calls ``work(batch_size)`` and, on an out-of-memory error, frees the
CUDA cache, logs a warning and calls it again with half the batch, down to a batch of 1; there it raises
``BatchOutOfMemoryError``. Any other error passes through untouched.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "DEVICES",
    "BatchOutOfMemoryError",
    "free_device_memory",
    "is_oom",
    "resolve_device",
    "retry_on_oom",
    "run_batches",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
# Messages of out-of-memory errors that torch raises as a plain RuntimeError (cuBLAS / cuDNN workspaces,
# older torch versions, other accelerators).
_OOM_MARKERS = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")


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


class BatchOutOfMemoryError(RuntimeError):
    """The device ran out of memory even with a batch of one; the original error is its ``__cause__``.

    Not an out-of-memory error for ``is_oom``: an enclosing retry does not halve its own batch again.
    """


def is_oom(exc: BaseException) -> bool:
    """Whether `exc` says the device ran out of memory: ``torch.cuda.OutOfMemoryError``, or a ``RuntimeError``
    whose message says so (``"CUDA out of memory"``, cuBLAS / cuDNN allocation failures such as
    ``CUBLAS_STATUS_ALLOC_FAILED``). ``BatchOutOfMemoryError`` (retrying already gave up) is not."""
    if isinstance(exc, BatchOutOfMemoryError) or not isinstance(exc, RuntimeError):
        return False
    torch = sys.modules.get("torch")  # a torch error means torch is loaded: no import here
    if torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    message = str(exc)
    return any(marker in message for marker in _OOM_MARKERS)


def free_device_memory() -> None:
    """Collect garbage and hand cached CUDA blocks back to the driver (``torch.cuda.empty_cache``) when CUDA is
    in use in this process (it is never initialised for this)."""
    gc.collect()
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def retry_on_oom(work: Callable[[int], T], batch_size: int, *, what: str = "batch") -> tuple[T, int]:
    """``work(batch_size)``, retried with half the batch size after each out-of-memory error (see ``is_oom``).

    Before a retry the failed attempt's tensors are released, the CUDA cache is emptied and a warning names the
    old and new size. `work` must leave nothing half-done behind when it raises (it is simply called again).
    Returns (work's result, the batch size that worked): store that size so that later calls start from it.
    Raises ``BatchOutOfMemoryError`` (from the original error) when a batch of 1 still runs out of memory, and
    ``ValueError`` when `batch_size` is below 1; any other error of `work` propagates unchanged.
    """
    _check_batch_size(batch_size)
    size = batch_size
    while True:
        try:
            return work(size), size
        except RuntimeError as exc:
            if not is_oom(exc):
                raise
            if size == 1:
                raise BatchOutOfMemoryError(
                    f"{what} of 1 still runs out of device memory (halved from {batch_size}): free GPU memory "
                    f"(other processes), lower max_length, or run on the CPU (device='cpu'); {_first_line(exc)}"
                ) from exc
            reason = _first_line(exc)
        # Outside the except block: the traceback, and with it the failed attempt's tensors, is gone.
        smaller = size // 2
        free_device_memory()
        logger.warning("%s of %d ran out of memory; retrying with %d (%s)", what, size, smaller, reason)
        size = smaller


def run_batches(total: int, batch_size: int, work: Callable[[int, int], None], *, what: str = "batch") -> int:
    """Calls ``work(start, stop)`` on consecutive ranges covering ``range(total)``, each at most `batch_size` long.

    On an out-of-memory error the failed range is retried with half the size (``retry_on_oom``), and the smaller
    size is kept for the rest of the call. `work` must only write its results once it has computed them (a
    retried range is computed again). Returns the batch size in effect at the end (`batch_size` when nothing
    failed): store it so that the next call starts from it. Raises like ``retry_on_oom``.
    """
    _check_batch_size(batch_size)
    size = batch_size
    start = 0
    while start < total:

        def attempt(n: int, start: int = start) -> int:
            stop = min(start + n, total)
            work(start, stop)
            return stop

        start, size = retry_on_oom(attempt, size, what=what)
    return size


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
