"""The label-name prior: zero-shot suggestions, calibration, the hand-over to the trained head, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from learner.fast import FastTier, FastTierConfig, Inputs
from learner.prior import LabelPrior, PriorConfig, label_text


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_label_text_joins_name_and_description_and_rejects_empty_names() -> None:
    assert label_text("joy") == "joy"
    assert label_text(" joy ", " happiness ") == "joy: happiness"
    with pytest.raises(ValueError, match="non-empty name"):
        label_text("  ")


def test_bundled_encoder_ranks_the_label_a_document_names_first_with_zero_labels() -> None:
    from learner.config import EncoderConfig
    from learner.encoder import Encoder

    encoder = Encoder.load(EncoderConfig(device="cpu"))
    labels = ["sports", "cooking", "music", "politics", "weather"]
    prior = LabelPrior(labels, encoder.encode([label_text(name) for name in labels]))
    docs = encoder.encode(
        [
            "We simmered the sauce for an hour and the cooking smelled wonderful.",
            "The election campaign and parliament debate dominated politics this week.",
            "Heavy rain and storms are in tomorrow's weather forecast.",
        ]
    )
    idx, probs = prior.predict_topk(docs, 3)
    assert [labels[row[0]] for row in idx] == ["cooking", "politics", "weather"]
    assert np.all(np.diff(probs, axis=1) <= 0)  # best first
    assert np.all((probs > 0) & (probs < 1))


def test_topk_goes_through_the_index_in_chunks_and_matches_a_full_sort() -> None:
    rng = np.random.default_rng(0)
    vectors = _unit(rng.normal(size=(500, 16)))
    docs = _unit(rng.normal(size=(37, 16)))
    prior = LabelPrior([f"l{j}" for j in range(500)], vectors, PriorConfig(chunk=8))
    idx, cos = prior.topk_cosines(docs, 10)
    full = docs @ vectors.T
    np.testing.assert_array_equal(idx, np.argsort(-full, axis=1)[:, :10])
    np.testing.assert_allclose(cos, np.sort(full, axis=1)[:, ::-1][:, :10], rtol=1e-5)
    np.testing.assert_allclose(prior.similarities(docs, idx), cos, rtol=1e-5)


def test_calibration_on_labelled_documents_raises_the_probability_of_true_labels() -> None:
    rng = np.random.default_rng(1)
    vectors = _unit(rng.normal(size=(4, 8)))
    labels = [f"l{j}" for j in range(4)]
    truth = rng.integers(0, 4, size=60)
    docs = _unit(vectors[truth] + rng.normal(scale=0.6, size=(60, 8)))
    Y = sp.csr_matrix((np.ones(60), (np.arange(60), truth)), shape=(60, 4))
    prior = LabelPrior(labels, vectors, PriorConfig(scale=1.0, offset=0.0))  # badly calibrated on purpose
    fitted = prior.calibrated(docs, Y)
    assert fitted.calibrated_on == 60
    before, after = prior.dense(docs), fitted.dense(docs)
    hits = Y.toarray() > 0

    def log_loss(p: np.ndarray) -> float:
        return float(-np.mean(np.where(hits, np.log(p), np.log1p(-p))))

    assert log_loss(after) < log_loss(before)
    assert after[hits].mean() > 0.5 > after[~hits].mean()
    assert prior.calibrated(docs[:2], Y[:2]) is prior  # too few documents: unchanged


def test_bad_input_is_rejected_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="2 labels but 3 label embeddings"):
        LabelPrior(["a", "b"], np.eye(3))
    with pytest.raises(ValueError, match="distinct"):
        LabelPrior(["a", "a"], np.eye(2))
    prior = LabelPrior(["a", "b"], np.eye(2))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        prior.predict_topk(np.ones((3, 5)), 1)
    with pytest.raises(ValueError, match="no embedding for 1 label"):
        prior.subset(["a", "c"])
    with pytest.raises(ValueError, match="unknown"):
        PriorConfig.from_dict({"scale": 1.0, "temperature": 2})


def test_prior_saves_and_loads(tmp_path: Path) -> None:
    prior = LabelPrior(["a", "b", "c"], np.eye(3), PriorConfig(pseudo_positives=2.0), scale=3.0, offset=-1.0)
    loaded = LabelPrior.load(prior.save(tmp_path / "prior"))
    assert loaded.labels == ["a", "b", "c"] and loaded.scale == 3.0 and loaded.offset == -1.0
    assert loaded.config.pseudo_positives == 2.0
    np.testing.assert_array_equal(loaded.vectors, prior.vectors)


# --- the hand-over inside the fast tier --------------------------------------------------------------------------
def _topic_data(n_per_label: dict[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Documents near their label's vector; label vectors are the prior's. Returns label vectors, X, Y."""
    vectors = _unit(np.random.default_rng(0).normal(size=(3, 24)))
    rng = np.random.default_rng(seed)
    rows: list[int] = []
    for label, count in n_per_label.items():
        rows += [label] * count
    X = _unit(vectors[rows] + rng.normal(scale=0.15, size=(len(rows), 24)))
    Y = np.zeros((len(rows), 3), dtype=np.float32)
    Y[np.arange(len(rows)), rows] = 1.0
    return vectors, X, Y


def test_prior_carries_labels_without_positives_and_the_head_takes_over_as_positives_grow() -> None:
    labels = ["a", "b", "c"]
    vectors, X, Y = _topic_data({0: 40, 1: 40, 2: 0})
    _, X_c, _ = _topic_data({2: 20}, seed=1)
    config = FastTierConfig(features="embeddings", min_tune_documents=1000)
    plain = FastTier.train(Inputs(embeddings=X), Y, labels, config)
    with_prior = FastTier.train(Inputs(embeddings=X), Y, labels, config, prior=LabelPrior(labels, vectors))
    # Label c has no positive: only the prior can rank it first on documents about c.
    assert (plain.predict_topk(Inputs(embeddings=X_c), 1)[0][:, 0] == 2).mean() < 0.2
    assert (with_prior.predict_topk(Inputs(embeddings=X_c), 1)[0][:, 0] == 2).mean() > 0.8
    weights = with_prior.prior.weights(with_prior.positives)  # type: ignore[union-attr]
    assert weights[2] == 0.0 and weights[0] == pytest.approx(40 / (40 + PriorConfig().pseudo_positives))
    # With many positives the blend follows the head: the prior's share of a label goes to zero.
    many = LabelPrior(labels, vectors, PriorConfig(pseudo_positives=5.0)).weights(np.array([5000.0, 5.0, 0.0]))
    assert many[0] > 0.998 and many[1] == pytest.approx(0.5) and many[2] == 0.0


def test_prior_model_saves_loads_and_updates_with_a_new_label(tmp_path: Path) -> None:
    labels = ["a", "b", "c"]
    vectors, X, Y = _topic_data({0: 30, 1: 30, 2: 5})
    config = FastTierConfig(features="embeddings", min_tune_documents=1000)
    model = FastTier.train(Inputs(embeddings=X), Y, labels, config, prior=LabelPrior(labels, vectors))
    loaded = FastTier.load(model.save(tmp_path / "m"), device="cpu")
    assert loaded.prior is not None and loaded.uses_embeddings
    np.testing.assert_array_equal(loaded.positives, [30, 30, 5])
    np.testing.assert_allclose(
        loaded.predict_topk(Inputs(embeddings=X[:5]), 3)[1], model.predict_topk(Inputs(embeddings=X[:5]), 3)[1]
    )
    with pytest.raises(ValueError, match="embeddings"):
        loaded.predict_topk(Inputs(texts=["x"]), 1)
    # A label added later gets its label-name prior at once (no positive yet).
    d = _unit(np.random.default_rng(5).normal(size=(1, 24)))
    four = LabelPrior([*labels, "d"], np.vstack([vectors, d]))
    updated = loaded.update(Inputs(embeddings=X[:4]), np.hstack([Y[:4], np.zeros((4, 1))]), [*labels, "d"], prior=four)
    near_d = _unit(d + np.random.default_rng(6).normal(scale=0.1, size=(10, 24)))
    assert (updated.predict_topk(Inputs(embeddings=near_d), 2)[0] == 3).any(axis=1).mean() > 0.8  # d in the top 2
    blind = loaded.update(Inputs(embeddings=X[:4]), np.hstack([Y[:4], np.zeros((4, 1))]), [*labels, "d"])
    assert not (blind.predict_topk(Inputs(embeddings=near_d), 2)[0] == 3).any()  # no label vector: no prior
    np.testing.assert_array_equal(updated.positives, [34, 30, 5, 0])  # the 4 update documents are all about a


def test_tree_head_blends_the_prior_shortlist_with_its_own() -> None:
    rng = np.random.default_rng(3)
    words = [f"w{j}" for j in range(40)]
    labels = [f"label{j}" for j in range(40)]
    vectors = _unit(rng.normal(size=(40, 16)))
    texts, rows = [], []
    for i in range(200):
        j = i % 30  # labels 30..39 never occur in training
        texts.append(f"{words[j]} {words[(j + 1) % 30]} filler{i % 7}")
        rows.append(j)
    X = _unit(vectors[rows] + rng.normal(scale=0.3, size=(200, 16)))
    Y = sp.csr_matrix((np.ones(200), (np.arange(200), rows)), shape=(200, 40))
    config = FastTierConfig(head="tree", lexical_weight=0.0, tree={"tree": {"branching": 2, "leaf_size": 8}})
    kept_out = LabelPrior(labels, vectors, PriorConfig(blend_trees=False))
    plain = FastTier.train(Inputs(texts=texts), Y, labels, config, prior=kept_out)
    assert plain.prior is None and not plain.uses_embeddings  # the prior then serves before the first model only
    model = FastTier.train(Inputs(texts=texts, embeddings=X), Y, labels, config, prior=LabelPrior(labels, vectors))
    assert model.prior is not None and model.uses_embeddings  # by default trees blend it (tree_weight 0.95)
    unseen = _unit(vectors[35:36] + rng.normal(scale=0.1, size=(5, 16)))
    idx, _ = model.predict_topk(Inputs(texts=["w35 something"] * 5, embeddings=unseen), 5)
    assert np.all((idx == 35).any(axis=1))  # only the prior knows label 35: the tree alone never suggests it
    assert not (plain.predict_topk(Inputs(texts=["w35 something"] * 5), 5)[0] == 35).any()
    seen_idx, _ = model.predict_topk(Inputs(texts=texts[:30], embeddings=X[:30]), 1)
    assert (seen_idx[:, 0] == np.array(rows[:30])).mean() > 0.8  # where the tree knows, the tree leads
