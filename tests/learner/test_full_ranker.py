"""The full tier's XR-Transformer final ranker: XR-Linear over [TF-IDF ⊕ fine-tuned embedding] on the head's label
tree ranks the labels; saved and loaded with the model, continued by an incremental update."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from learner import metrics
from learner.full import FullTier, FullTierConfig, Inputs

from .test_full import FILLER, TREE_LABELS, WORDS, _word_docs

# A frozen tiny encoder (seconds on the CPU): its embeddings know nothing of the words, so what the ranker adds is
# the TF-IDF evidence a weak encoder misses.
CONFIG = {
    "max_length": 16,
    "epochs": 1,
    "batch_size": 32,
    "lr_encoder": 0.0,
    "lr_head": 2e-2,
    "device": "cpu",
    "head": "tree",
    "tree": {"branching": 4, "leaf_size": 8},
    "beam": 2,
    "min_tune_documents": 1000,
}


@pytest.fixture(scope="module")
def models(tiny_encoder_dir: Path) -> dict[str, Any]:
    train, Y = _word_docs(192, 0)
    base = {**CONFIG, "encoder": str(tiny_encoder_dir)}
    return {
        "ranked": FullTier.train(train, Y, TREE_LABELS, FullTierConfig(**base, ranker="xr")),
        "head": FullTier.train(train, Y, TREE_LABELS, FullTierConfig(**base)),
        "train": (train, Y),
        "test": _word_docs(128, 1),
    }


def test_the_ranker_ranks_with_the_words_a_weak_encoder_misses(models: dict[str, Any]) -> None:
    ranked: FullTier = models["ranked"]
    test, y_test = models["test"]

    idx, probs = ranked.predict_topk(test, 5)
    head_idx, _ = models["head"].predict_topk(test, 5)

    assert ranked.ranker is not None and models["head"].ranker is None
    assert ranked.train_info["ranker_seconds"] > 0
    assert metrics.precision_at_k(y_test, idx, 1) > 0.9  # each document names its label's word
    assert metrics.precision_at_k(y_test, idx, 1) > metrics.precision_at_k(y_test, head_idx, 1) + 0.2
    assert idx.shape == probs.shape == (128, 5) and idx.dtype == np.int64 and probs.dtype == np.float32
    assert probs.min() >= 0.0 and probs.max() <= 1.0 and np.all(np.diff(probs, axis=1) <= 1e-6)
    # the ranker and the head share one label tree
    assert ranked.ranker.model.n_labels == len(TREE_LABELS)


def test_save_and_load_keep_the_ranker(models: dict[str, Any], tmp_path: Path) -> None:
    ranked: FullTier = models["ranked"]
    test, _ = models["test"]
    ranked.save(tmp_path / "model")

    loaded = FullTier.load(tmp_path / "model", device="cpu")

    assert (tmp_path / "model" / "ranker").is_dir() and loaded.ranker is not None
    for got, want in zip(loaded.predict_topk(test, 5), ranked.predict_topk(test, 5), strict=True):
        assert np.allclose(got, want, atol=1e-6)


def test_an_update_continues_the_ranker_with_a_new_label(models: dict[str, Any]) -> None:
    """The TF-IDF vocabulary is kept by an update, so the new label "summit" is taught on documents with a word the
    model knows ("mountain")."""
    ranked: FullTier = models["ranked"]
    train, y_train = models["train"]
    labels = ["summit", *TREE_LABELS]  # the new label first: the update's label order need not be the model's
    mountain = WORDS.index("mountain")
    rng = random.Random(9)
    new_texts = [f"mountain {rng.choice(FILLER)} {rng.choice(FILLER)}" for _ in range(32)]
    y_new = np.zeros((32, len(labels)), dtype=np.float32)
    y_new[:, 0] = 1.0
    y_new[:, 1 + mountain] = 1.0
    replay_y = sp.hstack([sp.csr_matrix((64, 1)), y_train[:64]]).tocsr()

    updated = ranked.update(Inputs(texts=new_texts), y_new, labels, replay=(train.take(np.arange(64)), replay_y))
    summit_idx, _ = updated.predict_topk(Inputs(texts=["mountain the a", "we saw a mountain today"]), 3)
    test, y_test = models["test"]
    idx, _ = updated.predict_topk(test, 5)
    y_test = sp.hstack([sp.csr_matrix((len(test), 1)), y_test]).tocsr()

    assert updated.ranker is not None and updated.ranker.model.n_labels == 65
    assert (summit_idx == 0).any(axis=1).all()  # the new label (index 0 in the update's order) is proposed
    assert (summit_idx == 1 + mountain).any(axis=1).all()  # next to the old one, at its new index
    assert metrics.precision_at_k(y_test, idx, 1) > 0.9  # the old labels keep their ranks
    assert updated.labels == labels


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"ranker": "pecos"}, "ranker must be one of none, xr"),
        ({"ranker_embedding_weight": -1.0}, "ranker_embedding_weight"),
        ({"ranker_xr": {"beem": 3}}, "beem"),
    ],
)
def test_bad_ranker_settings_are_refused_by_name(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        FullTierConfig(**fields)


def test_the_ranker_needs_the_tree_head(tiny_encoder_dir: Path) -> None:
    train, Y = _word_docs(16, 3)
    config = FullTierConfig(encoder=str(tiny_encoder_dir), head="flat", ranker="xr", device="cpu")
    with pytest.raises(ValueError, match="needs the tree head"):
        FullTier.train(train, Y, TREE_LABELS, config)
