"""Out-of-memory handling: a CUDA out-of-memory error halves the batch and retries (learner.device).

The GPU running out of memory is outside our control, so these tests raise torch's own out-of-memory error from a
fake workload; the last test makes a real one on CUDA when present.
"""

from __future__ import annotations

import logging

import pytest
import torch

from learner.device import BatchOutOfMemoryError, free_device_memory, is_oom, retry_on_oom, run_batches


def cuda_oom() -> torch.cuda.OutOfMemoryError:
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.77 GiB total)")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (cuda_oom(), True),
        (RuntimeError("CUDA error: out of memory"), True),
        (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), True),
        (RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), True),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x32 and 16x3)"), False),
        (RuntimeError("index out of range in self"), False),
        (ValueError("out of memory"), False),  # not a RuntimeError: not torch's
        (MemoryError(), False),  # the host, not the device
        (BatchOutOfMemoryError("encoder batch of 1 still runs out of device memory"), False),  # given up already
    ],
)
def test_is_oom_recognises_device_allocation_failures_only(error: BaseException, expected: bool) -> None:
    assert is_oom(error) is expected


def test_an_oom_halves_the_batch_retries_it_and_keeps_the_smaller_size(caplog: pytest.LogCaptureFixture) -> None:
    ranges: list[tuple[int, int]] = []

    def work(start: int, stop: int) -> None:
        if stop - start > 4:
            raise cuda_oom()
        ranges.append((start, stop))

    with caplog.at_level(logging.WARNING, logger="learner.device"):
        size = run_batches(37, 32, work, what="encoder batch")

    assert size == 4  # 32 -> 16 -> 8 -> 4, and 4 for the rest of the call
    assert ranges == [(start, min(start + 4, 37)) for start in range(0, 37, 4)]  # every row once, in order
    assert [record.getMessage().split(" (")[0] for record in caplog.records] == [
        "encoder batch of 32 ran out of memory; retrying with 16",
        "encoder batch of 16 ran out of memory; retrying with 8",
        "encoder batch of 8 ran out of memory; retrying with 4",
    ]
    assert "Tried to allocate 2.00 GiB" in caplog.records[0].getMessage()


def test_nothing_fails_nothing_changes() -> None:
    ranges: list[tuple[int, int]] = []

    size = run_batches(10, 4, lambda start, stop: ranges.append((start, stop)))

    assert size == 4
    assert ranges == [(0, 4), (4, 8), (8, 10)]
    assert run_batches(0, 4, lambda start, stop: ranges.append((start, stop))) == 4  # no rows: no call


def test_retry_returns_the_result_and_the_size_that_fit() -> None:
    calls: list[int] = []

    def work(size: int) -> str:
        calls.append(size)
        if size > 5:
            raise RuntimeError("CUDA error: out of memory")
        return f"done with {size}"

    assert retry_on_oom(work, 24, what="training micro-batch") == ("done with 3", 3)
    assert calls == [24, 12, 6, 3]


def test_an_oom_at_a_batch_of_one_raises_a_clear_error() -> None:
    calls: list[int] = []

    def work(size: int) -> None:
        calls.append(size)
        raise cuda_oom()

    with pytest.raises(BatchOutOfMemoryError, match=r"scoring batch of 1 still runs out of device memory") as info:
        retry_on_oom(work, 8, what="scoring batch")

    assert calls == [8, 4, 2, 1]
    assert "halved from 8" in str(info.value) and "device='cpu'" in str(info.value)
    assert "Tried to allocate 2.00 GiB" in str(info.value)
    assert isinstance(info.value.__cause__, torch.cuda.OutOfMemoryError)  # the original error is kept


def test_an_error_that_is_not_an_oom_is_raised_unchanged_without_a_retry() -> None:
    calls: list[int] = []
    error = RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x32 and 16x3)")

    def work(start: int, stop: int) -> None:
        calls.append(stop - start)
        raise error

    with pytest.raises(RuntimeError) as info:
        run_batches(64, 32, work)

    assert info.value is error
    assert calls == [32]


def test_a_batch_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        run_batches(3, 0, lambda start, stop: None)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        retry_on_oom(lambda size: size, -2)


def test_the_cuda_cache_is_emptied_only_where_cuda_is_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    emptied: list[bool] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    free_device_memory()
    assert emptied == []  # never initialises CUDA just to empty it

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    free_device_memory()
    assert emptied == [True]


@pytest.mark.gpu
def test_a_real_cuda_oom_is_recognised_and_halving_gets_past_it() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    free, _ = torch.cuda.mem_get_info()
    chunk = free // 3  # bytes: 4 chunks cannot fit, 2 can

    def work(size: int) -> int:
        block = torch.empty(size * chunk, dtype=torch.uint8, device="cuda")
        return block.numel()

    allocated, size = retry_on_oom(work, 8, what="test batch")

    assert size == 2 and allocated == 2 * chunk
    with pytest.raises(torch.cuda.OutOfMemoryError) as info:
        work(4)
    assert is_oom(info.value)
