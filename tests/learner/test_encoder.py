from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from learner.config import BUNDLED_MODEL_SHA256, EncoderConfig
from learner.device import BatchOutOfMemoryError
from learner.encoder import Encoder, bundled_model_path, encoder_fingerprint, file_sha256, resolve_device
from learner.testing import TINY_ENCODER_SENTENCES

TEXTS = [
    "a dog loves the game.",
    "the cat",
    "my friend finds a sunny day and the teacher breaks the red ball on a long night.",
    "our team wins.",
    "this movie makes great music, bad news, a long night and fresh bread for the weather.",
]


def load(folder: Path, **kwargs: object) -> Encoder:
    return Encoder.load(EncoderConfig(path=str(folder), device="cpu", **kwargs))  # type: ignore[arg-type]


def test_encode_returns_float32_rows_of_the_model_width(tiny_encoder_dir: Path) -> None:
    encoder = load(tiny_encoder_dir)

    vectors = encoder.encode(TEXTS)

    assert encoder.dim == 32
    assert vectors.shape == (len(TEXTS), 32)
    assert vectors.dtype == np.float32
    assert np.isfinite(vectors).all()


def test_rows_come_back_in_input_order_despite_length_sorting(tiny_encoder_dir: Path) -> None:
    encoder = load(tiny_encoder_dir, batch_size=2)

    batched = encoder.encode(TEXTS)
    one_by_one = np.stack([encoder.encode([text])[0] for text in TEXTS])

    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert not np.allclose(batched[0], batched[1])  # the rows really differ, so order matters


def test_vectors_are_unit_length_only_when_normalize(tiny_encoder_dir: Path) -> None:
    normalised = load(tiny_encoder_dir).encode(TEXTS)
    raw = load(tiny_encoder_dir, normalize=False).encode(TEXTS)

    np.testing.assert_allclose(np.linalg.norm(normalised, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), normalised, atol=1e-5)


def test_empty_input_gives_zero_rows(tiny_encoder_dir: Path) -> None:
    vectors = load(tiny_encoder_dir).encode([])

    assert vectors.shape == (0, 32)
    assert vectors.dtype == np.float32


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["fine", 3], r"texts\[1\] is a int"),
        (["fine", None], r"texts\[1\] is a NoneType"),
        (["fine", ""], r"texts\[1\] is empty"),
        (["   \n"], r"texts\[0\] is empty"),
        ("a single string", "not a single string"),
    ],
)
def test_bad_input_raises_value_error(tiny_encoder_dir: Path, texts: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load(tiny_encoder_dir).encode(texts)  # type: ignore[arg-type]


def test_on_progress_reports_after_every_batch(tiny_encoder_dir: Path) -> None:
    calls: list[tuple[int, int]] = []

    load(tiny_encoder_dir, batch_size=2).encode(TEXTS, on_progress=lambda done, total: calls.append((done, total)))

    assert calls == [(2, 5), (4, 5), (5, 5)]


def run_out_of_memory_above(encoder: Encoder, rows: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the encoder's model raise CUDA's out-of-memory error on batches of more than `rows` texts, as a GPU
    that is too small would; returns the batch sizes it is called with."""
    import torch

    forward = encoder.model.forward
    sizes: list[int] = []

    def small_gpu_forward(*args: object, **kwargs: torch.Tensor) -> object:
        sizes.append(int(kwargs["input_ids"].shape[0]))
        if sizes[-1] > rows:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return forward(*args, **kwargs)

    monkeypatch.setattr(encoder.model, "forward", small_gpu_forward)
    return sizes


def test_an_out_of_memory_batch_is_halved_and_the_size_that_fit_is_kept(
    tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = list(TINY_ENCODER_SENTENCES[:40])
    expected = load(tiny_encoder_dir, batch_size=32).encode(texts)
    encoder = load(tiny_encoder_dir, batch_size=32)
    sizes = run_out_of_memory_above(encoder, 4, monkeypatch)
    calls: list[tuple[int, int]] = []

    vectors = encoder.encode(texts, on_progress=lambda done, total: calls.append((done, total)))

    assert np.allclose(vectors, expected, atol=1e-5)
    assert sizes[:4] == [32, 16, 8, 4] and set(sizes[4:]) == {4}  # halved down to 4, then kept for the call
    assert encoder.batch_size == 4
    assert calls == [(done, 40) for done in range(4, 41, 4)]  # progress counts each text once
    sizes.clear()
    assert np.allclose(encoder.encode(texts[:9]), expected[:9], atol=1e-5)
    assert sizes == [4, 4, 1]  # the next call starts from the size that fit


def test_an_out_of_memory_error_at_a_batch_of_one_is_raised_clearly(
    tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    encoder = load(tiny_encoder_dir, batch_size=4)
    sizes = run_out_of_memory_above(encoder, 0, monkeypatch)

    with pytest.raises(BatchOutOfMemoryError, match="encoder batch of 1 still runs out of device memory") as info:
        encoder.encode(TEXTS)

    assert sizes == [4, 2, 1]
    assert isinstance(info.value.__cause__, torch.cuda.OutOfMemoryError)


def test_an_error_that_is_not_out_of_memory_is_not_swallowed(
    tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = load(tiny_encoder_dir, batch_size=4)
    calls: list[int] = []

    def broken_forward(*args: object, **kwargs: object) -> object:
        calls.append(1)
        raise RuntimeError("index out of range in self")

    monkeypatch.setattr(encoder.model, "forward", broken_forward)

    with pytest.raises(RuntimeError, match="index out of range in self"):
        encoder.encode(TEXTS)
    assert calls == [1] and encoder.batch_size == 4


def test_long_texts_are_truncated_to_max_length(tiny_encoder_dir: Path) -> None:
    encoder = load(tiny_encoder_dir, max_length=8)
    long_text = " ".join(["the cat loves the game"] * 100)

    head_only = encoder.encode(["the cat loves the game the cat"])
    truncated = encoder.encode([long_text])

    np.testing.assert_allclose(truncated, head_only, atol=1e-5)


def test_fingerprint_is_stable_and_differs_across_encoders_and_settings(
    tiny_encoder_dir: Path, other_tiny_encoder_dir: Path
) -> None:
    base = load(tiny_encoder_dir).fingerprint

    assert load(tiny_encoder_dir, batch_size=3).fingerprint == base  # batch size does not change vectors
    others = {
        load(other_tiny_encoder_dir).fingerprint,
        load(tiny_encoder_dir, max_length=64).fingerprint,
        load(tiny_encoder_dir, normalize=False).fingerprint,
    }
    assert base not in others
    assert len(others) == 3
    assert all(len(fp) == 16 and int(fp, 16) >= 0 for fp in others | {base})


def test_fingerprint_is_known_without_loading_the_model(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    config = EncoderConfig(path=str(tiny_encoder_dir))
    assert encoder_fingerprint(config) == Encoder.load(config).fingerprint
    assert encoder_fingerprint(EncoderConfig(path=str(tiny_encoder_dir), max_length=16)) != encoder_fingerprint(config)
    with pytest.raises(ValueError, match="encoder folder not found"):
        encoder_fingerprint(EncoderConfig(path=str(tmp_path / "nowhere")))


def test_fingerprint_without_hashing_uses_size_and_mtime(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_encoder_dir, tmp_path / "copy"))
    before = load(copy, verify_hash=False).fingerprint

    weights = copy / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    assert load(copy, verify_hash=False).fingerprint != before


def test_expected_hash_is_checked(tiny_encoder_dir: Path) -> None:
    actual = file_sha256(tiny_encoder_dir / "model.safetensors")

    assert load(tiny_encoder_dir, expected_sha256=actual).dim == 32
    with pytest.raises(ValueError, match=f"expected {'0' * 64}, got {actual}"):
        load(tiny_encoder_dir, expected_sha256="0" * 64)


def test_missing_folder_or_weights_raise_value_error(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="encoder folder not found"):
        load(tmp_path / "nowhere")
    copy = Path(shutil.copytree(tiny_encoder_dir, tmp_path / "no-weights"))
    (copy / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"has no model\.safetensors"):
        load(copy)


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda") == "cuda"
    assert resolve_device("cpu") == "cpu"


@pytest.mark.slow
def test_bundled_minilm_gives_unit_vectors_that_rank_similar_sentences_closer(tmp_path: Path) -> None:
    encoder = Encoder.load(EncoderConfig(device="cpu"))

    vectors = encoder.encode(["I am so happy today!", "What a joyful, wonderful day.", "The invoice is due on Monday."])

    assert encoder.dim == 384
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2

    tampered = Path(shutil.copytree(bundled_model_path(), tmp_path / "tampered"))
    with open(tampered / "model.safetensors", "r+b") as handle:
        handle.seek(-16, 2)
        last = handle.read(16)
        handle.seek(-16, 2)
        handle.write(bytes(b ^ 0xFF for b in last))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        Encoder.load(EncoderConfig(path=str(tampered), expected_sha256=BUNDLED_MODEL_SHA256, device="cpu"))


def test_corrupt_weights_raise_value_error_when_hashing_is_off(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_encoder_dir, tmp_path / "corrupt"))
    (copy / "model.safetensors").write_bytes(b"garbage!")

    with pytest.raises(ValueError, match="cannot load the encoder"):
        load(copy, verify_hash=False)
