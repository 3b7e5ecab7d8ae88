"""The full tier: fine-tuning the bundled MiniLM encoder with flat and tree heads on CPU (CUDA test when present).

Texts are short word lists whose labels are fixed by the words in them, so a few hundred documents and one or two
epochs are enough to learn them; every model is trained once per module and shared by the tests that read it.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from learner import metrics
from learner.full import FullTier, FullTierConfig, Inputs

TOPICS = {
    "sport": ["football", "tennis", "goal", "match", "team", "stadium"],
    "food": ["pizza", "bread", "cheese", "soup", "salad", "butter"],
    "weather": ["rain", "snow", "storm", "sunny", "wind", "fog"],
    "music": ["guitar", "song", "piano", "concert", "drum", "violin"],
}
OLD = ["sport", "food", "weather"]
FILLER = ["the", "a", "today", "we", "saw", "really", "some", "very", "and", "with"]
# 64 labels for the tree head, one word each.
# fmt: off
WORDS = [
    "apple", "banana", "cherry", "grape", "lemon", "mango", "melon", "peach", "pear", "plum",
    "river", "lake", "ocean", "island", "desert", "forest", "mountain", "valley", "canyon", "glacier",
    "piano", "guitar", "violin", "drum", "flute", "trumpet", "cello", "harp", "lion", "tiger",
    "zebra", "giraffe", "eagle", "falcon", "parrot", "penguin", "shark", "whale", "dolphin", "octopus",
    "copper", "silver", "gold", "iron", "carbon", "oxygen", "helium", "neon", "football", "tennis",
    "hockey", "golf", "rugby", "cricket", "boxing", "rowing", "castle", "bridge", "tower", "church",
    "temple", "palace", "museum", "stadium",
]
# fmt: on
TREE_LABELS = [f"L{j:02d}" for j in range(len(WORDS))]
# Small, CPU-friendly settings: short texts, few epochs, a fast-learning head.
SMALL = {"max_length": 32, "epochs": 2, "batch_size": 32, "lr_head": 1e-2, "device": "cpu"}


def _topic_docs(n: int, seed: int, labels: list[str]) -> tuple[list[str], list[list[str]]]:
    """Documents with one or two topics of `labels`, two words of each plus three filler words."""
    rng = random.Random(seed)
    texts, label_lists = [], []
    for _ in range(n):
        chosen = rng.sample(labels, rng.choice([1, 1, 2]))
        words = [rng.choice(TOPICS[label]) for label in chosen for _ in range(2)] + rng.sample(FILLER, 3)
        rng.shuffle(words)
        texts.append(" ".join(words))
        label_lists.append(chosen)
    return texts, label_lists


def _matrix(label_lists: list[list[str]], labels: list[str]) -> sp.csr_matrix:
    Y = np.zeros((len(label_lists), len(labels)), dtype=np.float32)
    for row, chosen in enumerate(label_lists):
        Y[row, [labels.index(label) for label in chosen]] = 1.0
    return sp.csr_matrix(Y)


def _word_docs(n: int, seed: int) -> tuple[Inputs, sp.csr_matrix]:
    """Document i carries label i mod 64 (its word) and, three times in ten, a second random one."""
    rng = random.Random(seed)
    Y = np.zeros((n, len(WORDS)), dtype=np.float32)
    texts = []
    for i in range(n):
        chosen = sorted({i % len(WORDS)} | ({rng.randrange(len(WORDS))} if rng.random() < 0.3 else set()))
        words = [WORDS[j] for j in chosen] + rng.sample(FILLER, 3)
        rng.shuffle(words)
        texts.append(" ".join(words))
        Y[i, chosen] = 1.0
    return Inputs(texts=texts), sp.csr_matrix(Y)


@pytest.fixture(scope="module")
def flat() -> dict[str, Any]:
    """A flat-head model fine-tuned on 240 documents over three topics, and a held-out test set."""
    texts, label_lists = _topic_docs(240, 0, OLD)
    Y = _matrix(label_lists, OLD)
    model = FullTier.train(Inputs(texts=texts), Y, OLD, FullTierConfig(**SMALL))
    test_texts, test_lists = _topic_docs(120, 1, OLD)
    return {
        "model": model,
        "train": (texts, Y),
        "test": (Inputs(texts=test_texts), _matrix(test_lists, OLD)),
    }


@pytest.fixture(scope="module")
def tree() -> dict[str, Any]:
    """A tree-head model over 64 labels (levels of 2, 8 and 64 nodes), trained coarse to fine; no calibration
    (fewer documents than min_tune_documents), so its probabilities are the raw path products."""
    train, Y = _word_docs(192, 0)
    config = FullTierConfig(
        **{**SMALL, "max_length": 16, "lr_head": 2e-2, "lr_encoder": 1e-4},
        head="tree",
        tree={"branching": 4, "leaf_size": 8},
        beam=2,
        min_tune_documents=1000,
    )
    model = FullTier.train(train, Y, TREE_LABELS, config)
    return {"model": model, "train": (train, Y), "test": _word_docs(128, 1)}


# --- the flat head --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_flat_head_fine_tunes_and_learns_the_topics(flat: dict[str, Any]) -> None:
    model: FullTier = flat["model"]
    test, y_test = flat["test"]

    predicted = model.predict(test)
    idx, probs = model.predict_topk(test, 3)

    assert metrics.micro_f1(y_test, predicted) > 0.9  # predicting every label would score 0.5
    assert metrics.macro_f1(y_test, model.predict(test, objective="macro_f1")) > 0.9
    assert idx.shape == probs.shape == (120, 3) and idx.dtype == np.int64 and probs.dtype == np.float32
    assert np.all(np.diff(probs, axis=1) <= 0) and probs.min() >= 0.0 and probs.max() <= 1.0
    assert sorted(model.rules) == ["macro_f1", "micro_f1", "per_label"]
    assert model.metrics["n_val"] == 24  # 10% of the training documents held out for calibration and thresholds
    assert model.train_info["device"] == "cpu" and model.train_info["precision"] == "fp32"
    assert model.train_info["epoch_losses"][-1] < model.train_info["epoch_losses"][0]


@pytest.mark.slow
def test_scoring_in_small_chunks_gives_the_same_topk(flat: dict[str, Any]) -> None:
    model: FullTier = flat["model"]
    test, _ = flat["test"]

    test = test.take(np.arange(40))
    idx, probs = model.predict_topk(test, 2)
    small_idx, small_probs = model.predict_topk(test, 2, chunk_size=7)
    capped = FullTier(**{**_parts(model), "config": dataclasses.replace(model.config, max_score_cells=3)})
    capped_idx, capped_probs = capped.predict_topk(test, 2)  # one document at a time

    assert np.array_equal(idx, small_idx) and np.allclose(probs, small_probs, atol=1e-5)
    assert np.array_equal(idx, capped_idx) and np.allclose(probs, capped_probs, atol=1e-5)
    assert model.predict_topk(test, 50)[0].shape == (40, 3)  # k is capped at the number of labels


def _parts(model: FullTier) -> dict[str, Any]:
    names = ("labels", "config", "tokenizer", "encoder", "head", "device", "max_length", "platt", "rules")
    return {name: getattr(model, name) for name in names} | {"metrics": {}, "train_info": {}}


@pytest.mark.slow
def test_save_and_load_round_trip_gives_identical_topk(flat: dict[str, Any], tmp_path: Path) -> None:
    model: FullTier = flat["model"]
    test, _ = flat["test"]
    folder = tmp_path / "models" / "full"

    model.save(folder)
    model.save(folder)  # saving again replaces the folder
    again = FullTier.load(folder, device="cpu")

    assert np.array_equal(model.predict_topk(test, 3)[0], again.predict_topk(test, 3)[0])
    assert np.array_equal(model.predict_topk(test, 3)[1], again.predict_topk(test, 3)[1])
    assert again.labels == OLD and again.decision == model.decision and again.config == model.config
    assert again.fingerprint == model.fingerprint
    assert sorted(path.name for path in folder.parent.iterdir()) == ["full"]  # no temporary folder left behind
    payload = json.loads((folder / "full_tier.json").read_text())
    assert payload["labels"] == OLD and payload["config"]["head"] == "flat" and "torch" in payload["versions"]
    assert (folder / "encoder" / "model.safetensors").is_file() and (folder / "encoder" / "tokenizer.json").is_file()


@pytest.mark.slow
def test_a_tampered_model_folder_is_refused(flat: dict[str, Any], tmp_path: Path) -> None:
    folder = flat["model"].save(tmp_path / "m")
    head = folder / "head.safetensors"
    head.write_bytes(head.read_bytes()[:-4] + b"\0\0\0\0")

    with pytest.raises(ValueError, match="sha256"):
        FullTier.load(folder)
    with pytest.raises(ValueError, match="no readable full-tier model"):
        FullTier.load(tmp_path / "nothing-here")


@pytest.mark.slow
def test_embed_gives_normalised_vectors_that_group_the_topics_better_than_the_frozen_encoder(
    flat: dict[str, Any],
) -> None:
    from learner.config import EncoderConfig
    from learner.encoder import Encoder

    model: FullTier = flat["model"]
    texts, label_lists = _topic_docs(60, 3, OLD)
    single = [i for i, chosen in enumerate(label_lists) if len(chosen) == 1]
    topic = np.array([OLD.index(label_lists[i][0]) for i in single])

    tuned = model.embed(texts)
    frozen = Encoder.load(EncoderConfig(max_length=32, device="cpu")).encode(texts)

    def separation(vectors: np.ndarray) -> float:
        """Mean cosine within a topic minus mean cosine across topics (single-topic documents)."""
        cosine = vectors[single] @ vectors[single].T
        same = topic[:, None] == topic[None, :]
        return float(cosine[same].mean() - cosine[~same].mean())

    assert tuned.shape == (60, 384) and tuned.dtype == np.float32
    assert np.allclose(np.linalg.norm(tuned, axis=1), 1.0, atol=1e-5)
    assert np.abs(tuned - frozen).max() > 1e-2  # the encoder itself was fine-tuned
    assert separation(tuned) > separation(frozen)


@pytest.mark.slow
def test_update_learns_a_new_label_and_keeps_the_old_ones(flat: dict[str, Any]) -> None:
    model: FullTier = flat["model"]
    train_texts, y_train = flat["train"]
    labels = ["music", *OLD]  # a new label, and the old ones in another order: matched by name
    test_texts, test_lists = _topic_docs(150, 5, labels)
    test, y_test = Inputs(texts=test_texts), _matrix(test_lists, labels)
    before = model.predict_topk(test, 3)
    new_texts, new_lists = _topic_docs(80, 4, labels)
    replay_y = sp.hstack([sp.csr_matrix((80, 1)), y_train[:80]]).tocsr()  # old documents have no "music"

    updated = model.update(
        Inputs(texts=new_texts),
        _matrix(new_lists, labels),
        labels,
        replay=(Inputs(texts=train_texts[:80]), replay_y),
        epochs=2,
    )
    predicted = updated.predict(test)

    assert updated.labels == labels and updated.train_info["new_labels"] == ["music"]
    assert metrics.micro_f1(y_test[:, 1:], predicted[:, 1:]) > 0.9  # the old labels are still predicted
    assert metrics.micro_f1(y_test[:, :1], predicted[:, :1]) > 0.6  # and the new one is learned
    after = model.predict_topk(test, 3)  # the original model is unchanged
    assert model.labels == OLD and np.array_equal(before[0], after[0]) and np.allclose(before[1], after[1])

    with pytest.raises(ValueError, match="drop 1 label"):
        model.update(Inputs(texts=new_texts), _matrix(new_lists, labels)[:, :3], ["music", "sport", "food"])


# --- the tree head --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tree_head_learns_64_labels_coarse_to_fine(tree: dict[str, Any]) -> None:
    model: FullTier = tree["model"]
    test, y_test = tree["test"]

    idx, probs = model.predict_topk(test, 5)

    assert model.head.sizes == [2, 8, 64] and model.train_info["stages"] == [[0, 1], [1, 1], [2, 2]]
    assert metrics.precision_at_k(y_test, idx, 1) > 0.6  # chance is about 1/50
    assert metrics.recall_at_k(y_test, idx, 5) > 0.6
    assert probs.min() >= 0.0 and probs.max() <= 1.0 and np.all(np.diff(probs, axis=1) <= 0)


@pytest.mark.slow
def test_a_beam_covering_every_cluster_matches_brute_force_scoring(tree: dict[str, Any]) -> None:
    model: FullTier = tree["model"]
    test, _ = tree["test"]
    assert model.platt == (1.0, 0.0)  # no calibration: the probabilities are the path products

    best, best_probs = _brute_force_topk(model, test, 5)
    idx, probs = model.predict_topk(test, 5, beam=8)  # 8 = the widest cluster level

    assert np.array_equal(idx, best)
    assert np.allclose(probs, best_probs, atol=1e-4)


def _brute_force_topk(model: FullTier, inputs: Inputs, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every label's product of probabilities down its path, from the head's weights: the k best (N, k)."""
    features = model.embed(inputs.texts or []) * math.sqrt(model.dim)  # (N, H) what the head reads
    factor = 2.0 if model.config.loss == "zlpr" else 1.0  # ZLPR's probability is sigmoid(2s)
    path = np.ones((len(inputs), len(model.labels)))  # (N, L)
    for weight, bias, ancestor in zip(model.head.weights, model.head.biases, model.head.ancestors(), strict=True):
        scores = features @ weight.detach().numpy().T + bias.detach().numpy()  # (N, n_t)
        path *= 1.0 / (1.0 + np.exp(-factor * scores[:, ancestor]))
    best = np.argsort(-path, axis=1, kind="stable")[:, :k]
    return best, np.take_along_axis(path, best, axis=1)


@pytest.mark.slow
def test_tree_with_zlpr_a_frozen_encoder_and_encoder_label_features(tiny_encoder_dir: Path) -> None:
    train, Y = _word_docs(128, 2)
    config = FullTierConfig(
        encoder=str(tiny_encoder_dir),
        max_length=16,
        epochs=1,
        lr_encoder=0.0,
        loss="zlpr",
        head="tree",
        tree={"branching": 4, "leaf_size": 8},
        tree_features="encoder",
        min_tune_documents=1000,
    )
    from learner.config import EncoderConfig
    from learner.encoder import Encoder

    model = FullTier.train(train, Y, TREE_LABELS, config)
    best, best_probs = _brute_force_topk(model, train, 3)
    idx, probs = model.predict_topk(train, 3, beam=8)
    base = Encoder.load(EncoderConfig(path=str(tiny_encoder_dir), device="cpu")).model.state_dict()

    assert model.head.sizes == [2, 8, 64] and model.train_info["steps"] == 3 * 4  # 3 stages of 4 batches
    assert np.array_equal(idx, best) and np.allclose(probs, best_probs, atol=1e-4)
    assert all(np.array_equal(value.numpy(), base[name].numpy()) for name, value in model.encoder.state_dict().items())


@pytest.mark.slow
def test_tree_update_places_a_new_label_in_the_tree(tree: dict[str, Any]) -> None:
    model: FullTier = tree["model"]
    train, y_train = tree["train"]
    labels = [*TREE_LABELS, "volcano"]
    rng = random.Random(9)
    new_texts = [f"volcano {rng.choice(WORDS)} {rng.choice(FILLER)}" for _ in range(32)]
    y_new = np.zeros((32, len(labels)), dtype=np.float32)
    y_new[:, -1] = 1.0
    for row, text in enumerate(new_texts):
        y_new[row, WORDS.index(text.split()[1])] = 1.0
    replay_y = sp.hstack([y_train[:64], sp.csr_matrix((64, 1))]).tocsr()

    updated = model.update(Inputs(texts=new_texts), y_new, labels, replay=(train.take(np.arange(64)), replay_y))
    test, y_test = tree["test"]
    idx, _ = updated.predict_topk(test, 5)
    y_test = sp.hstack([y_test, sp.csr_matrix((len(test), 1))]).tocsr()  # no test document is about volcanoes
    volcano_idx, _ = updated.predict_topk(Inputs(texts=["volcano the a", "we saw a volcano today"]), 5)

    assert updated.head.sizes == [2, 8, 65] and 0 <= updated.head.parents[-1][64] < 8
    assert metrics.precision_at_k(y_test, idx, 1) > 0.5
    assert (volcano_idx == 64).any(axis=1).all()  # the new label is proposed for documents about it


# --- training settings ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_same_seed_gives_the_same_model_and_a_time_budget_stops_early(tiny_encoder_dir: Path) -> None:
    texts, label_lists = _topic_docs(48, 6, OLD)
    Y = _matrix(label_lists, OLD)
    config = FullTierConfig(
        encoder=str(tiny_encoder_dir), max_length=16, epochs=1, batch_size=8, grad_accumulation=2, loss="zlpr"
    )

    first = FullTier.train(Inputs(texts=texts), Y, OLD, config)
    second = FullTier.train(Inputs(texts=texts), Y, OLD, config)
    budget = FullTier.train(Inputs(texts=texts), Y, OLD, dataclasses.replace(config, max_train_seconds=1e-6))

    assert first.train_info["steps"] == 3  # 6 batches, 2 per optimizer step
    assert first.fingerprint == second.fingerprint
    assert np.array_equal(first.predict_topk(Inputs(texts=texts), 3)[1], second.predict_topk(Inputs(texts=texts), 3)[1])
    assert budget.train_info["stopped_early"] is True and budget.train_info["steps"] == 1
    assert budget.predict_topk(Inputs(texts=texts[:2]), 1)[0].shape == (2, 1)  # still a usable model


@pytest.mark.gpu
def test_cuda_training_in_bf16_learns(tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    texts, label_lists = _topic_docs(240, 0, OLD)
    test_texts, test_lists = _topic_docs(120, 1, OLD)
    config = FullTierConfig(**{**SMALL, "device": "cuda", "precision": "bf16"})

    model = FullTier.train(Inputs(texts=texts), _matrix(label_lists, OLD), OLD, config)
    predicted = model.predict(Inputs(texts=test_texts))
    on_cpu = FullTier.load(model.save(tmp_path / "m"), device="cpu")

    assert model.train_info["device"] == "cuda" and model.train_info["precision"] == "bf16"
    assert metrics.micro_f1(_matrix(test_lists, OLD), predicted) > 0.9
    assert on_cpu.device == "cpu"
    assert (
        np.mean(
            on_cpu.predict_topk(Inputs(texts=test_texts), 1)[0] == model.predict_topk(Inputs(texts=test_texts), 1)[0]
        )
        > 0.95
    )


# --- out of GPU memory ---------------------------------------------------------------------------------------------
# The GPU running out of memory is outside our control: a fake encoder raises CUDA's out-of-memory error on
# batches above a size, as a GPU that is too small would.
@pytest.fixture(scope="module")
def dropout_free_encoder_dir(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT without dropout: a batch split in two then computes the same gradients as the whole batch."""
    import shutil

    folder = Path(shutil.copytree(tiny_encoder_dir, tmp_path_factory.mktemp("no-dropout") / "encoder"))
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _small_gpu(monkeypatch: pytest.MonkeyPatch, rows: int, target: Any = None) -> list[int]:
    """Every forward pass of the encoder (`target`: one loaded model; default: every BERT) over more than `rows`
    documents raises CUDA's out-of-memory error; returns the batch sizes the encoder is called with."""
    import torch
    from transformers import BertModel

    sizes: list[int] = []
    owner = target if target is not None else BertModel
    forward = owner.forward

    def small_gpu_forward(*args: Any, **kwargs: Any) -> Any:
        sizes.append(int(kwargs["input_ids"].shape[0]))
        if sizes[-1] > rows:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 MiB")
        return forward(*args, **kwargs)

    monkeypatch.setattr(owner, "forward", small_gpu_forward)
    return sizes


def _oom_config(encoder: Path) -> FullTierConfig:
    return FullTierConfig(
        encoder=str(encoder),
        max_length=16,
        epochs=2,
        batch_size=8,
        grad_accumulation=2,
        lr_encoder=1e-4,
        lr_head=1e-2,
        device="cpu",
        min_tune_documents=1000,
    )


def test_training_out_of_memory_halves_the_micro_batch_and_keeps_the_effective_batch(
    dropout_free_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, label_lists = _topic_docs(48, 7, OLD)
    Y = _matrix(label_lists, OLD)
    config = _oom_config(dropout_free_encoder_dir)
    expected = FullTier.train(Inputs(texts=texts), Y, OLD, config)
    sizes = _small_gpu(monkeypatch, 4)

    model = FullTier.train(Inputs(texts=texts), Y, OLD, config)

    assert sizes[0] == 8 and max(sizes[1:]) == 4  # 8 failed once; 4 from then on
    assert model.train_info["micro_batch_size"] == 4 and model.train_batch_cap == 4
    assert "micro_batch_size" not in expected.train_info and expected.train_batch_cap is None
    # Twice the backward passes, the same optimizer steps over the same documents: the same model.
    assert model.train_info["steps"] == expected.train_info["steps"] == 6  # 48 / (8 * 2) per epoch, 2 epochs
    assert np.allclose(model.train_info["epoch_losses"], expected.train_info["epoch_losses"], atol=1e-4)
    idx, probs = model.predict_topk(Inputs(texts=texts), 3)
    expected_idx, expected_probs = expected.predict_topk(Inputs(texts=texts), 3)
    assert np.array_equal(idx, expected_idx) and np.allclose(probs, expected_probs, atol=1e-4)

    sizes.clear()
    updated = model.update(Inputs(texts=texts[:16]), Y[:16], OLD)
    assert updated.train_batch_cap == 4 and max(sizes) == 4  # an update starts from the size that fit


def test_scoring_and_embedding_out_of_memory_halve_the_batch_and_keep_the_size(
    dropout_free_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, label_lists = _topic_docs(40, 8, OLD)
    model = FullTier.train(Inputs(texts=texts), _matrix(label_lists, OLD), OLD, _oom_config(dropout_free_encoder_dir))
    expected_vectors = model.embed(texts, batch_size=32)
    expected_idx, expected_probs = model.predict_topk(Inputs(texts=texts), 2)
    sizes = _small_gpu(monkeypatch, 4, target=model.encoder)

    vectors = model.embed(texts, batch_size=32)

    assert np.allclose(vectors, expected_vectors, atol=1e-5)
    assert sizes[:4] == [32, 16, 8, 4] and set(sizes[4:]) == {4}  # 32 -> 4, then 4 for the rest of the call
    assert model.inference_batch_cap == 4
    sizes.clear()
    idx, probs = model.predict_topk(Inputs(texts=texts), 2)
    assert np.array_equal(idx, expected_idx) and np.allclose(probs, expected_probs, atol=1e-5)
    assert set(sizes) == {4}  # the next call starts from the size that fit: no new out-of-memory error


def test_training_out_of_memory_at_a_batch_of_one_is_raised_clearly(
    tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from learner.device import BatchOutOfMemoryError

    texts, label_lists = _topic_docs(16, 9, OLD)
    sizes = _small_gpu(monkeypatch, 0)

    with pytest.raises(
        BatchOutOfMemoryError, match="training micro-batch of 1 still runs out of device memory"
    ) as info:
        FullTier.train(Inputs(texts=texts), _matrix(label_lists, OLD), OLD, _oom_config(tiny_encoder_dir))

    assert sizes == [8, 4, 2, 1]
    assert isinstance(info.value.__cause__, torch.cuda.OutOfMemoryError)


def test_a_training_error_that_is_not_out_of_memory_is_not_swallowed(
    tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import BertModel

    calls: list[int] = []

    def broken_forward(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(BertModel, "forward", broken_forward)
    texts, label_lists = _topic_docs(16, 9, OLD)

    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        FullTier.train(Inputs(texts=texts), _matrix(label_lists, OLD), OLD, _oom_config(tiny_encoder_dir))
    assert calls == [1]


@pytest.mark.gpu
def test_cuda_out_of_memory_in_training_is_survived(tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    texts, label_lists = _topic_docs(48, 7, OLD)
    config = dataclasses.replace(_oom_config(tiny_encoder_dir), device="cuda", precision="bf16")
    free, _ = torch.cuda.mem_get_info()
    from transformers import BertModel

    forward = BertModel.forward

    def hungry_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs["input_ids"].shape[0] > 4:  # a real allocation failure on the GPU, not a raised imitation
            torch.empty(2 * free, dtype=torch.uint8, device="cuda")
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(BertModel, "forward", hungry_forward)

    model = FullTier.train(Inputs(texts=texts), _matrix(label_lists, OLD), OLD, config)

    assert model.train_info["micro_batch_size"] == 4 and model.train_info["steps"] == 6
    assert model.predict_topk(Inputs(texts=texts), 2)[0].shape == (48, 2) and model.inference_batch_cap == 4


# --- the benchmark command ------------------------------------------------------------------------------------------
def _write_jsonl(path: Path, texts: list[str], label_lists: list[list[str]]) -> str:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for i, (text, chosen) in enumerate(zip(texts, label_lists, strict=True)):
            handle.write(json.dumps({"id": f"{path.stem}-{i}", "text": text, "labels": chosen}) + "\n")
    return str(path)


@pytest.mark.slow
def test_the_benchmark_runs_the_full_tier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from learner.benchmark import METRIC_KEYS, main

    files = {
        name: _write_jsonl(tmp_path / f"{name}.jsonl.gz", *_topic_docs(n, seed, OLD))
        for name, n, seed in (("train", 60, 1), ("dev", 20, 2), ("test", 20, 3))
    }
    out = tmp_path / "results.json"
    tier_settings = {"max_length": 16, "epochs": 2, "batch_size": 16, "lr_head": 1e-2, "device": "cpu"}

    status = main(
        [
            *("--train", files["train"], "--dev", files["dev"], "--test", files["test"], "--out", str(out)),
            *("--tier", "full", "--no-progress", "--no-baseline", "--config", json.dumps(tier_settings)),
        ]
    )

    assert status == 0
    result = json.loads(out.read_text())
    assert result["tier"] == "full" and result["model"] == "full tier (encoder, flat head)"
    assert list(result["metrics"]) == list(METRIC_KEYS)
    assert all(-1e-9 <= value <= 1 + 1e-9 for value in result["metrics"].values())
    assert result["metrics"]["P@1"] > 0.8
    assert result["config"]["head"] == "flat" and result["config"]["max_length"] == 16
    assert set(result["decision"]["rules"]) == {"micro_f1", "macro_f1", "per_label"}
    assert result["validation_metrics"]["n_val"] == 20  # tuned on the dev file
    assert "full tier (encoder, flat head)" in capsys.readouterr().out


# --- configuration and input errors ---------------------------------------------------------------------------------
def test_config_round_trips_through_json_and_resolves_the_head() -> None:
    config = FullTierConfig(loss="zlpr", tree={"branching": 4}, max_train_seconds=60, lr_encoder=0)

    again = FullTierConfig.from_dict(json.loads(json.dumps(config.to_dict())))

    assert again == config and again.max_train_seconds == 60.0
    assert config.resolve(2000).head == "flat" and config.resolve(2001).head == "tree"
    assert FullTierConfig(head="tree").resolve(10).head == "tree"
    assert config.features == "encoder" and config.needs_texts and not config.needs_embeddings


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"loss": "hinge"}, "loss must be one of"),
        ({"head": "deep"}, "head must be one of"),
        ({"precision": "fp16"}, "precision must be one of"),
        ({"device": "tpu"}, "device must be one of"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"lr_head": 0}, "lr_head must be in"),
        ({"lr_encoder": -1e-5}, "lr_encoder must be in"),
        ({"warmup_fraction": 1.0}, "warmup_fraction must be in"),
        ({"max_train_seconds": 0}, "max_train_seconds must be in"),
        ({"tree": {"branching": 3}}, "branching must be a power of 2"),
        ({"tree": {"depth": 3}}, "unknown TreeConfig key"),
        ({"tree_features": "labels"}, "tree_features must be one of"),
        ({"encoder": ""}, "encoder must be None"),
        ({"calibrate": "yes"}, "calibrate must be a bool"),
    ],
)
def test_bad_config_is_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FullTierConfig(**overrides)


def test_unknown_config_keys_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown FullTierConfig key.*learning_rate"):
        FullTierConfig.from_dict({"learning_rate": 0.1})


def test_bad_training_input_is_refused_before_loading_the_encoder() -> None:
    texts = ["rain today", "pizza and bread"]
    Y = sp.csr_matrix(np.eye(2, dtype=np.float32))

    with pytest.raises(ValueError, match="reads the documents' texts"):
        FullTier.train(Inputs(embeddings=np.zeros((2, 4))), Y, ["wet", "food"])
    with pytest.raises(ValueError, match=r"Y must have shape \(2, 3\)"):
        FullTier.train(Inputs(texts=texts), Y, ["wet", "food", "sport"])
    with pytest.raises(ValueError, match="non-empty list"):
        FullTier.train(Inputs(texts=texts), Y, [])
    with pytest.raises(ValueError, match="duplicates"):
        FullTier.train(Inputs(texts=texts), Y, ["wet", "wet"])
    with pytest.raises(ValueError, match="only 0 and 1"):
        FullTier.train(Inputs(texts=texts), Y * 2, ["wet", "food"])
    with pytest.raises(ValueError, match="no training documents"):
        FullTier.train(Inputs(texts=[]), sp.csr_matrix((0, 2)), ["wet", "food"])


@pytest.mark.slow
def test_bad_prediction_input_is_refused(flat: dict[str, Any]) -> None:
    model: FullTier = flat["model"]

    with pytest.raises(ValueError, match="k must be a positive integer"):
        model.predict_topk(Inputs(texts=["rain"]), 0)
    with pytest.raises(ValueError, match="objective must be one of"):
        model.predict(Inputs(texts=["rain"]), objective="accuracy")
    with pytest.raises(ValueError, match="not one string"):
        model.embed("rain and snow")
    assert model.predict_topk(Inputs(texts=[]), 2)[0].shape == (0, 2)


def test_importing_the_full_tier_loads_neither_torch_nor_transformers() -> None:
    import subprocess
    import sys

    code = "import sys, learner.full; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True, timeout=120
    )

    assert result.stdout.strip() == "[]"


# --- the APLC head --------------------------------------------------------------------------------------------------
APLC_WORDS = WORDS[:24]
APLC_LABELS = [f"A{j:02d}" for j in range(len(APLC_WORDS))]


def _zipf_docs(n: int, seed: int, n_labels: int = len(APLC_WORDS)) -> tuple[Inputs, sp.csr_matrix]:
    """Documents with one label (three times in ten a second), drawn with probability 1 / (rank + 1): label 0 is
    about 20 times as frequent as label 23. A document holds its labels' words and three filler words."""
    rng = random.Random(seed)
    weights = [1.0 / (rank + 1) for rank in range(n_labels)]
    Y = np.zeros((n, n_labels), dtype=np.float32)
    texts = []
    for i in range(n):
        chosen = set(rng.choices(range(n_labels), weights, k=2 if rng.random() < 0.3 else 1))
        words = [APLC_WORDS[j] for j in chosen] + rng.sample(FILLER, 3)
        rng.shuffle(words)
        texts.append(" ".join(words))
        Y[i, sorted(chosen)] = 1.0
    return Inputs(texts=texts), sp.csr_matrix(Y)


@pytest.fixture(scope="module")
def aplc() -> dict[str, Any]:
    """An APLC-head model over 24 Zipf-distributed labels: clusters of 5, 7 and 12 labels (cutoffs 0.2 and 0.5 of
    the labels), tails projected to 384 / 2 and 384 / 4 dims; 10% of the 320 documents tune the decision rules."""
    train, Y = _zipf_docs(320, 0)
    config = FullTierConfig(**{**SMALL, "lr_head": 2e-2, "lr_encoder": 1e-4}, head="aplc")
    model = FullTier.train(train, Y, APLC_LABELS, config)
    return {"model": model, "train": (train, Y), "test": _zipf_docs(160, 1)}


def _aplc_probabilities(model: FullTier, inputs: Inputs) -> np.ndarray:
    """(N, L) every label's probability computed from the head's tensors with numpy: sigmoid of the head layer's
    scores, times sigmoid of its gate for a tail label (sigmoid(2s) for ZLPR)."""
    head = model.head
    factor = 2.0 if model.config.loss == "zlpr" else 1.0

    def sigmoid(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-factor * x))

    def array(tensor: Any) -> np.ndarray:
        return tensor.detach().double().numpy()

    features = model.embed(inputs.texts or []).astype(np.float64) * math.sqrt(model.dim)  # (N, H)
    top = sigmoid(features @ array(head.head_weight).T + array(head.head_bias))  # (N, n_0 + T)
    n_head = len(head.members[0])
    out = np.zeros((len(inputs), len(model.labels)))
    out[:, head.members[0]] = top[:, :n_head]
    for i in range(1, len(head.members)):
        hidden = features @ array(head.projections[i - 1]).T  # (N, d_i)
        hidden = (hidden - hidden.mean(axis=1, keepdims=True)) / np.sqrt(hidden.var(axis=1, keepdims=True) + 1e-5)
        hidden = np.maximum(hidden * array(head.norm_weights[i - 1]) + array(head.norm_biases[i - 1]), 0.0)
        own = sigmoid(hidden @ array(head.out_weights[i - 1]).T + array(head.out_biases[i - 1]))  # (N, n_i)
        out[:, head.members[i]] = top[:, n_head + i - 1 : n_head + i] * own
    return out


@pytest.mark.slow
def test_aplc_head_learns_frequent_and_rare_labels(aplc: dict[str, Any]) -> None:
    model: FullTier = aplc["model"]
    test, y_test = aplc["test"]
    train_counts = np.asarray(aplc["train"][1].sum(axis=0)).ravel()

    idx, probs = model.predict_topk(test, 5)
    tail_labels = np.concatenate(model.head.members[1:])
    tail_docs = np.flatnonzero(y_test[:, tail_labels].getnnz(axis=1) > 0)
    most_frequent = np.full((len(test), 1), int(np.argmax(train_counts)))

    assert model.head.sizes == [5, 7, 12] and model.head.widths == [384, 192, 96]
    assert set(model.head.members[0]) == set(np.argsort(-train_counts, kind="stable")[:5])  # the most frequent
    assert model.train_info["head"] == "aplc" and model.train_info["cluster_widths"] == [384, 192, 96]
    assert metrics.precision_at_k(y_test, most_frequent, 1) < 0.35  # the prior alone
    assert metrics.precision_at_k(y_test, idx, 1) > 0.85
    assert len(tail_docs) > 50 and metrics.recall_at_k(y_test[tail_docs], idx[tail_docs], 5) > 0.8  # tail labels
    assert metrics.micro_f1(y_test, model.predict(test)) > 0.8
    assert probs.min() >= 0.0 and probs.max() <= 1.0 and np.all(np.diff(probs, axis=1) <= 0)
    assert model.train_info["epoch_losses"][-1] < model.train_info["epoch_losses"][0]


@pytest.mark.slow
def test_aplc_tail_probability_is_the_gate_times_the_label_probability(aplc: dict[str, Any]) -> None:
    from learner.decision import apply_platt

    model: FullTier = aplc["model"]
    test, _ = aplc["test"]
    test = test.take(np.arange(40))
    raw = FullTier(**{**_parts(model), "platt": (1.0, 0.0)})  # the same model, uncalibrated

    expected = _aplc_probabilities(model, test)  # (40, 24)
    best = np.argsort(-expected, axis=1, kind="stable")[:, :6]
    idx, probs = raw.predict_topk(test, 6)
    calibrated_idx, calibrated = model.predict_topk(test, 6)

    assert np.array_equal(idx, best)
    assert np.allclose(probs, np.take_along_axis(expected, best, axis=1), atol=1e-5)
    assert model.platt != (1.0, 0.0)  # calibrated: Platt scaling of the product, as for the other heads
    assert np.array_equal(calibrated_idx, idx) and np.allclose(calibrated, apply_platt(probs, *model.platt), atol=1e-6)
    assert np.all((expected >= 0) & (expected <= 1))


@pytest.mark.slow
def test_aplc_save_and_load_round_trip_gives_identical_topk(aplc: dict[str, Any], tmp_path: Path) -> None:
    model: FullTier = aplc["model"]
    test, _ = aplc["test"]

    again = FullTier.load(model.save(tmp_path / "aplc"), device="cpu")

    curve = model.decision["tick_curve"]  # tuned on held-out documents: pre-ticks have their measured precision
    assert curve["documents"] > 0 and curve["ticked"][0] >= curve["correct"][0] > 0
    assert np.array_equal(model.predict_topk(test, 5)[0], again.predict_topk(test, 5)[0])
    assert np.array_equal(model.predict_topk(test, 5)[1], again.predict_topk(test, 5)[1])
    assert again.config == model.config and again.decision == model.decision
    assert again.head.sizes == model.head.sizes and all(
        np.array_equal(a, b) for a, b in zip(again.head.members, model.head.members, strict=True)
    )
    payload = json.loads((tmp_path / "aplc" / "full_tier.json").read_text())
    assert payload["config"]["head"] == "aplc" and payload["config"]["aplc_cutoffs"] == [0.2, 0.5]


@pytest.mark.slow
def test_aplc_update_puts_a_new_label_in_the_last_tail_cluster_and_learns_it(aplc: dict[str, Any]) -> None:
    model: FullTier = aplc["model"]
    train, y_train = aplc["train"]
    labels = ["volcano", *APLC_LABELS]  # a new label first: old labels are matched by name
    rng = random.Random(9)
    new_texts, y_new = [], np.zeros((48, len(labels)), dtype=np.float32)
    for row in range(48):
        word = rng.randrange(len(APLC_WORDS))
        new_texts.append(f"volcano {APLC_WORDS[word]} {rng.choice(FILLER)}")
        y_new[row, [0, word + 1]] = 1.0
    replay_y = sp.hstack([sp.csr_matrix((96, 1)), y_train[:96]]).tocsr()
    test, y_test = aplc["test"]
    before = model.predict_topk(test, 3)

    updated = model.update(
        Inputs(texts=new_texts), y_new, labels, replay=(train.take(np.arange(96)), replay_y), epochs=2
    )
    idx, _ = updated.predict_topk(test, 5)
    volcano_idx, _ = updated.predict_topk(Inputs(texts=["volcano the a", "we saw a volcano today"]), 3)

    assert updated.head.sizes == [5, 7, 13] and updated.head.members[-1][-1] == 0  # appended to the last cluster
    assert updated.train_info["new_labels"] == ["volcano"]
    y_test = sp.hstack([sp.csr_matrix((len(test), 1)), y_test]).tocsr()  # no test document is about volcanoes
    assert metrics.precision_at_k(y_test, idx, 1) > 0.6  # the old labels are still predicted
    assert (volcano_idx == 0).any(axis=1).all()  # and the new one is proposed for documents about it
    after = model.predict_topk(test, 3)  # the original model is unchanged
    assert np.array_equal(before[0], after[0]) and np.allclose(before[1], after[1])


@pytest.mark.slow
def test_aplc_with_zlpr_and_frequency_cutoffs(tiny_encoder_dir: Path) -> None:
    train, Y = _zipf_docs(96, 2)
    config = FullTierConfig(
        encoder=str(tiny_encoder_dir),
        max_length=16,
        epochs=1,
        loss="zlpr",
        head="aplc",
        aplc_cutoffs=(0.5,),
        aplc_cutoff_by="frequency",
        aplc_dim_factor=4,
        min_tune_documents=1000,
    )

    model = FullTier.train(train, Y, APLC_LABELS, config)
    expected = _aplc_probabilities(model, train)
    idx, probs = model.predict_topk(train, 3)
    counts = np.asarray(Y.sum(axis=0)).ravel()
    head_share = counts[model.head.members[0]].sum() / counts.sum()

    assert len(model.head.sizes) == 2 and model.head.widths == [32, 8]
    assert head_share >= 0.5 and head_share - counts[model.head.members[0]].min() / counts.sum() < 0.5  # fewest
    assert np.array_equal(idx, np.argsort(-expected, axis=1, kind="stable")[:, :3])
    assert np.allclose(probs, np.sort(expected, axis=1)[:, ::-1][:, :3], atol=1e-5)


@pytest.mark.slow
def test_aplc_with_a_single_cluster_grows_its_head_cluster(tiny_encoder_dir: Path) -> None:
    texts, label_lists = _topic_docs(48, 6, OLD)
    config = FullTierConfig(
        encoder=str(tiny_encoder_dir), max_length=16, epochs=1, head="aplc", aplc_cutoffs=(0.9,), device="cpu"
    )
    labels = ["music", *OLD]
    new_texts, new_lists = _topic_docs(24, 7, labels)

    model = FullTier.train(Inputs(texts=texts), _matrix(label_lists, OLD), OLD, config)  # ceil(0.9 * 3) = 3 labels
    updated = model.update(Inputs(texts=new_texts), _matrix(new_lists, labels), labels)
    idx, probs = updated.predict_topk(Inputs(texts=new_texts), 4)

    assert model.head.sizes == [3] and model.head.widths == [32] and model.train_info["cluster_widths"] == [32]
    assert updated.head.sizes == [4] and updated.head.members[0][-1] == 0  # no tail cluster: the head one grows
    assert np.array_equal(np.sort(idx, axis=1), np.tile(np.arange(4), (24, 1))) and probs.max() <= 1.0


@pytest.mark.gpu
def test_aplc_cuda_training_in_bf16_learns(tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    train, Y = _zipf_docs(320, 0)
    test, y_test = _zipf_docs(160, 1)
    config = FullTierConfig(**{**SMALL, "lr_head": 2e-2, "device": "cuda", "precision": "bf16"}, head="aplc")

    model = FullTier.train(train, Y, APLC_LABELS, config)
    idx, _ = model.predict_topk(test, 1)
    on_cpu = FullTier.load(model.save(tmp_path / "m"), device="cpu")

    assert model.train_info["device"] == "cuda" and model.train_info["precision"] == "bf16"
    assert metrics.precision_at_k(y_test, idx, 1) > 0.85
    assert on_cpu.device == "cpu" and np.mean(on_cpu.predict_topk(test, 1)[0] == idx) > 0.95


def test_aplc_clusters_follow_the_label_frequencies() -> None:
    from learner.full.aplc import aplc_clusters

    counts = [1, 50, 0, 20, 5, 10, 2, 2, 30, 40]  # positives per label; 160 in all
    Y = sp.csr_matrix(np.array([[1.0 if i < c else 0.0 for c in counts] for i in range(50)], dtype=np.float32))

    by_labels = aplc_clusters(Y, (0.2, 0.5), "labels")
    by_frequency = aplc_clusters(Y, (0.5, 0.9), "frequency")

    assert [list(c) for c in by_labels] == [[1, 9], [8, 3, 5], [4, 6, 7, 0, 2]]
    assert [list(c) for c in by_frequency] == [[1, 9], [8, 3, 5], [4, 6, 7, 0, 2]]  # 56%, then 94% of positives
    assert [list(c) for c in aplc_clusters(Y, (0.01, 0.02), "labels")] == [[1], [9, 8, 3, 5, 4, 6, 7, 0, 2]]
    assert [list(c) for c in aplc_clusters(Y[:, :1], (0.2, 0.5), "labels")] == [[0]]  # one label: one cluster


def test_aplc_config_round_trips_through_json() -> None:
    config = FullTierConfig(head="aplc", aplc_cutoffs=[0.1, 0.4, 0.8], aplc_cutoff_by="frequency", aplc_dim_factor=4)

    again = FullTierConfig.from_dict(json.loads(json.dumps(config.to_dict())))

    assert again == config and again.aplc_cutoffs == (0.1, 0.4, 0.8) and again.aplc_dim_factor == 4.0
    assert config.resolve(10).head == "aplc" and config.resolve(100_000).head == "aplc"
    assert FullTierConfig().resolve(10).head == "flat"  # "auto" never picks APLC


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"aplc_cutoffs": []}, "at least one cutoff"),
        ({"aplc_cutoffs": [0.5, 0.2]}, "strictly increasing"),
        ({"aplc_cutoffs": [0.2, 0.2]}, "strictly increasing"),
        ({"aplc_cutoffs": [0.0, 0.5]}, r"numbers in \(0, 1\)"),
        ({"aplc_cutoffs": [0.5, 1.0]}, r"numbers in \(0, 1\)"),
        ({"aplc_cutoffs": [100, 1000]}, r"numbers in \(0, 1\)"),
        ({"aplc_cutoffs": ["0.5"]}, r"numbers in \(0, 1\)"),
        ({"aplc_cutoffs": 0.5}, "must be a list"),
        ({"aplc_cutoff_by": "count"}, "aplc_cutoff_by must be one of"),
        ({"aplc_dim_factor": 0.5}, "aplc_dim_factor must be in"),
        ({"aplc_dim_factor": "2"}, "aplc_dim_factor must be a number"),
    ],
)
def test_bad_aplc_config_is_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FullTierConfig(head="aplc", **overrides)
