from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from learner.adapt import (
    ADAPTATION_FILE,
    AdaptConfig,
    adapt_encoder,
    check_adaptation,
    check_split,
    make_pairs,
)
from learner.config import EncoderConfig
from learner.encoder import Encoder, encoder_fingerprint
from learner.testing import TINY_ENCODER_SENTENCES

# A tiny model needs a far larger learning rate than a pretrained one to move in a few dozen steps.
FAST: dict[str, Any] = {"learning_rate": 1e-3, "device": "cpu", "warmup_fraction": 0.0, "pairs_per_document": 8}


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Two intra-op threads on a busy 2-core machine make the tiny model 50x slower; one is plenty for it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def verb_documents() -> tuple[list[str], sp.csr_matrix]:
    """Sentences labelled by their verb only: label 0 "loves"/"wins", label 1 "hates"/"loses".

    Subjects and objects, most of each sentence's tokens, are shared by both labels, so the randomly initialised
    encoder's similarity barely sees the labels.
    """
    texts, rows = [], []
    for text in TINY_ENCODER_SENTENCES:
        if " loves " in text or " wins " in text:
            texts.append(text)
            rows.append([1, 0])
        elif " hates " in text or " loses " in text:
            texts.append(text)
            rows.append([0, 1])
    return texts[::2], sp.csr_matrix(np.array(rows[::2], dtype=np.float32))


def load(folder: Path | str) -> Encoder:
    return Encoder.load(EncoderConfig(path=str(folder), device="cpu"))


def label_gap(vectors: np.ndarray, Y: sp.csr_matrix) -> float:
    """Mean cosine within a label minus mean cosine between labels (vectors are unit length)."""
    label = np.asarray(Y.argmax(axis=1)).ravel()
    cos = vectors @ vectors.T
    same = label[:, None] == label[None, :]
    off_diagonal = ~np.eye(len(label), dtype=bool)
    return float(cos[same & off_diagonal].mean() - cos[~same].mean())


@pytest.fixture(scope="module")
def adapted(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    texts, Y = verb_documents()
    out = tmp_path_factory.mktemp("adapted") / "encoder"
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stats = adapt_encoder(tiny_encoder_dir, texts, Y, out, AdaptConfig(**FAST, epochs=4))
    finally:
        torch.set_num_threads(previous)
    return out, stats


# --- what adaptation does ---------------------------------------------------------------------------------------
def test_adapted_folder_loads_with_a_new_fingerprint_and_other_embeddings(
    tiny_encoder_dir: Path, adapted: tuple[Path, dict[str, Any]]
) -> None:
    out, stats = adapted
    texts, _ = verb_documents()

    before, after = load(tiny_encoder_dir), load(out)

    assert after.fingerprint != before.fingerprint
    assert (
        stats["base_fingerprint"]
        == before.fingerprint
        == encoder_fingerprint(EncoderConfig(path=str(tiny_encoder_dir)))
    )
    vectors = after.encode(texts)
    assert vectors.shape == (len(texts), before.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(vectors - before.encode(texts)).max() > 0.05
    # The tokenizer is the source's, byte for byte; the source is untouched.
    assert (out / "tokenizer.json").read_bytes() == (tiny_encoder_dir / "tokenizer.json").read_bytes()
    assert not (tiny_encoder_dir / ADAPTATION_FILE).exists()


def test_adaptation_brings_documents_of_a_label_closer_than_documents_of_different_labels(
    tiny_encoder_dir: Path, adapted: tuple[Path, dict[str, Any]]
) -> None:
    out, stats = adapted
    texts, Y = verb_documents()

    gap_before = label_gap(load(tiny_encoder_dir).encode(texts), Y)
    gap_after = label_gap(load(out).encode(texts), Y)

    assert gap_before < 0.05  # the random encoder hardly separates the labels
    assert gap_after > gap_before + 0.2
    assert stats["loss_last"] < stats["loss_first"]


def test_adaptation_json_records_the_run(adapted: tuple[Path, dict[str, Any]]) -> None:
    out, stats = adapted
    texts, _ = verb_documents()

    saved = json.loads((out / ADAPTATION_FILE).read_text())

    assert saved == stats
    assert AdaptConfig.from_dict(saved["config"]) == AdaptConfig(**FAST, epochs=4)
    assert saved["n_documents"] == saved["n_documents_given"] == len(texts)
    assert saved["device"] == "cpu" and saved["bf16"] is False
    assert saved["steps"] == 4 * int(np.ceil(saved["n_pairs"] / 16))
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in out.iterdir()}


def test_same_seed_gives_the_same_weights_and_progress_reaches_one(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    texts, Y = verb_documents()
    config = AdaptConfig(**FAST)
    seen: list[float] = []

    adapt_encoder(tiny_encoder_dir, texts, Y, tmp_path / "a", config, on_progress=seen.append)
    adapt_encoder(tiny_encoder_dir, texts, Y, tmp_path / "b", config)

    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) > 2


def test_out_folder_is_replaced_whole_and_no_temporary_folder_is_left(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    texts, Y = verb_documents()
    out = tmp_path / "encoder"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")

    adapt_encoder(tiny_encoder_dir, texts, Y, out, AdaptConfig(**{**FAST, "pairs_per_document": 2}))

    assert not (out / "stale.txt").exists()
    assert (out / ADAPTATION_FILE).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder"]


def test_more_documents_than_max_documents_adapts_on_a_sample(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    texts, Y = verb_documents()

    stats = adapt_encoder(tiny_encoder_dir, texts, Y, tmp_path / "out", AdaptConfig(**FAST, max_documents=20))

    assert stats["n_documents"] == 20 and stats["n_documents_given"] == len(texts)


def test_a_step_out_of_gpu_memory_is_redone_in_halves(
    tiny_encoder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import BertModel

    folder = Path(shutil.copytree(tiny_encoder_dir, tmp_path / "no-dropout"))
    settings = json.loads((folder / "config.json").read_text())
    settings.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(settings))
    texts, Y = verb_documents()
    config = AdaptConfig(**{**FAST, "pairs_per_document": 4, "batch_size": 8})
    expected = adapt_encoder(folder, texts, Y, tmp_path / "expected", config)
    sizes: list[int] = []
    forward = BertModel.forward

    def small_gpu_forward(*args: Any, **kwargs: Any) -> Any:
        sizes.append(int(kwargs["input_ids"].shape[0]))
        if sizes[-1] > 10:  # the documents of more than ~5 pairs do not fit
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 MiB")
        return forward(*args, **kwargs)

    monkeypatch.setattr(BertModel, "forward", small_gpu_forward)

    stats = adapt_encoder(folder, texts, Y, tmp_path / "halved", config)

    assert stats["micro_batch_size"] == 4 and expected["micro_batch_size"] == 8
    assert stats["steps"] == expected["steps"]
    np.testing.assert_allclose(
        load(tmp_path / "halved").encode(texts), load(tmp_path / "expected").encode(texts), atol=1e-4
    )


@pytest.mark.gpu
def test_cuda_adaptation_in_bf16(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    texts, Y = verb_documents()

    stats = adapt_encoder(
        tiny_encoder_dir, texts, Y, tmp_path / "out", AdaptConfig(**{**FAST, "device": "cuda", "epochs": 4})
    )

    assert stats["device"] == "cuda" and stats["bf16"] is True
    assert np.isfinite([stats["loss_first"], stats["loss_last"]]).all()
    assert stats["loss_last"] < stats["loss_first"]
    vectors = Encoder.load(EncoderConfig(path=str(tmp_path / "out"), device="cuda")).encode(texts)
    assert label_gap(vectors, Y) > label_gap(load(tiny_encoder_dir).encode(texts), Y) + 0.2


# --- pairs --------------------------------------------------------------------------------------------------------
LABEL_SETS = np.array(
    [
        [1, 1, 0],  # 0: a, b
        [1, 0, 0],  # 1: a
        [0, 1, 0],  # 2: b
        [0, 0, 1],  # 3: c
        [0, 0, 0],  # 4: none
        [0, 0, 0],  # 5: none
    ],
    dtype=np.float32,
)


def test_pairs_carry_the_jaccard_similarity_and_never_join_two_unlabelled_documents() -> None:
    first, second, target = make_pairs(LABEL_SETS, pairs_per_document=10, pair_target="jaccard", seed=3)

    pairs = {(int(i), int(j)): float(t) for i, j, t in zip(first, second, target, strict=True)}
    # With 10 pairs per anchor every candidate is drawn: every pair but (4, 5) and the self-pairs, once.
    assert set(pairs) == {(i, j) for i in range(6) for j in range(i + 1, 6)} - {(4, 5)}
    assert pairs[(0, 1)] == pairs[(0, 2)] == 0.5
    assert pairs[(1, 2)] == pairs[(0, 3)] == pairs[(3, 4)] == 0.0


def test_share_targets_are_one_for_any_common_label() -> None:
    first, second, target = make_pairs(LABEL_SETS, pairs_per_document=10, seed=3)  # "share" is the default

    pairs = {(int(i), int(j)): float(t) for i, j, t in zip(first, second, target, strict=True)}
    assert pairs[(0, 1)] == pairs[(0, 2)] == 1.0
    assert pairs[(1, 2)] == 0.0
    assert set(np.unique(target)) == {0.0, 1.0}


def test_pairs_are_balanced_and_seeded() -> None:
    Y = sp.csr_matrix(np.repeat(np.eye(4, dtype=np.float32), 25, axis=0))  # 4 labels x 25 documents

    first, second, target = make_pairs(Y, pairs_per_document=8, seed=0)
    again = make_pairs(Y, pairs_per_document=8, seed=0)
    other = make_pairs(Y, pairs_per_document=8, seed=1)

    assert all(np.array_equal(a, b) for a, b in zip((first, second, target), again, strict=True))
    assert not np.array_equal(first, other[0]) or not np.array_equal(second, other[1])
    assert 0.4 < float((target > 0).mean()) < 0.6
    assert len(target) <= 100 * 8 and not np.any(first == second)


# --- bad input ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("texts", "Y", "message"),
    [
        (["a dog.", "the cat."], np.eye(3), "Y has 3 rows but there are 2 texts"),
        ([], np.zeros((0, 2)), "no documents"),
        (["a dog."], np.ones((1, 2)), "at least 2 labelled documents"),
        (["a dog.", "the cat.", "my friend."], np.eye(3), "no two documents share a label"),
        (["a dog.", "the cat."], np.ones((2, 2)), "no two documents have disjoint label sets"),
        (["a dog.", "  "], np.eye(2), r"texts\[1\] is empty"),
        ("a dog.", np.eye(1), "not a single string"),
        (["a dog.", "the cat."], np.array([[2.0], [1.0]]), "only 0 and 1"),
    ],
)
def test_bad_input_raises_a_clear_value_error(
    tiny_encoder_dir: Path, tmp_path: Path, texts: Any, Y: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        adapt_encoder(tiny_encoder_dir, texts, Y, tmp_path / "out", AdaptConfig(device="cpu"))
    assert not (tmp_path / "out").exists()


def test_missing_source_folder_and_source_as_output_are_rejected(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    texts, Y = verb_documents()

    with pytest.raises(ValueError, match="encoder folder not found"):
        adapt_encoder(tmp_path / "nowhere", texts, Y, tmp_path / "out", AdaptConfig(device="cpu"))
    with pytest.raises(ValueError, match="out_folder must differ from the source folder"):
        adapt_encoder(tiny_encoder_dir, texts, Y, tiny_encoder_dir, AdaptConfig(device="cpu"))


# --- config -------------------------------------------------------------------------------------------------------
def test_config_round_trips_through_json() -> None:
    config = AdaptConfig(pairs_per_document=12, learning_rate=1e-4, pair_target="jaccard", loss="cosent", bf16=False)

    assert AdaptConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert AdaptConfig.from_dict({}) == AdaptConfig()


def test_config_rejects_unknown_keys_by_name() -> None:
    with pytest.raises(ValueError, match=r"unknown AdaptConfig key\(s\): pairs_per_doc"):
        AdaptConfig.from_dict({"pairs_per_doc": 8})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pairs_per_document": 1}, "pairs_per_document must be >= 2"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"batch_size": 1.5}, "batch_size must be an integer"),
        ({"learning_rate": 0}, "learning_rate must be in"),
        ({"warmup_fraction": 1.0}, "warmup_fraction must be in"),
        ({"max_documents": 1}, "max_documents must be >= 2"),
        ({"pair_target": "overlap"}, "pair_target must be one of jaccard, share"),
        ({"loss": "mse"}, "loss must be one of cosine, cosent"),
        ({"device": "gpu"}, "device must be one of"),
        ({"bf16": "yes"}, "bf16 must be a bool"),
    ],
)
def test_config_rejects_bad_values(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptConfig(**changes)


def test_cosent_loss_also_separates_the_labels(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    texts, Y = verb_documents()

    adapt_encoder(tiny_encoder_dir, texts, Y, tmp_path / "out", AdaptConfig(**FAST, epochs=4, loss="cosent"))

    gap_before = label_gap(load(tiny_encoder_dir).encode(texts), Y)
    assert label_gap(load(tmp_path / "out").encode(texts), Y) > gap_before + 0.2


def test_importing_the_module_loads_neither_torch_nor_transformers() -> None:
    code = "import sys, learner.adapt; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"


# --- the held-out check of an adaptation ------------------------------------------------------------------------------
def test_check_split_holds_out_a_fifth_of_the_documents_and_none_of_too_few() -> None:
    fit, check = check_split(100, seed=3)
    assert len(check) == 20 and len(fit) == 80 and not set(fit) & set(check)
    assert sorted(np.concatenate([fit, check]).tolist()) == list(range(100))
    assert np.array_equal(check, check_split(100, seed=3)[1]) and not np.array_equal(check, check_split(100, seed=4)[1])
    assert len(check_split(30)[1]) == 10  # at least 10 held out ...
    fit, check = check_split(19)  # ... and none of fewer than 20: every document adapts
    assert len(check) == 0 and fit.tolist() == list(range(19))
    with pytest.raises(ValueError, match="n_documents"):
        check_split(-1)


def test_check_adaptation_measures_the_gain_on_documents_the_adaptation_never_saw() -> None:
    from learner.fast import FastTierConfig, Inputs

    # Base embeddings carry nothing of the labels; "adapted" ones separate the three labels: the check says it pays.
    rng = np.random.default_rng(0)
    n_fit, n_check, dim = 60, 30, 8
    rows = rng.integers(0, 3, n_fit + n_check)
    Y = sp.csr_matrix((np.ones(len(rows)), (np.arange(len(rows)), rows)), shape=(len(rows), 3))
    base = rng.normal(size=(len(rows), dim)).astype(np.float32)
    adapted = (np.eye(3, dim)[rows] * 3 + rng.normal(scale=0.3, size=(len(rows), dim))).astype(np.float32)
    config = FastTierConfig(features="embeddings")
    fit, check = np.arange(n_fit), np.arange(n_fit, n_fit + n_check)

    def pair(X: np.ndarray) -> tuple[Inputs, Inputs]:
        return Inputs(embeddings=X[fit]), Inputs(embeddings=X[check])

    result = check_adaptation(pair(base), pair(adapted), Y[fit], Y[check], ["a", "b", "c"], config)

    assert result["documents"] == n_check
    assert result["adapted"]["micro_f1"] > 0.9 and result["base"]["micro_f1"] < 0.6
    assert result["gain"] == pytest.approx(result["adapted"]["micro_f1"] - result["base"]["micro_f1"], abs=1e-4)
    assert check_adaptation(pair(adapted), pair(base), Y[fit], Y[check], ["a", "b", "c"], config)["gain"] < 0
