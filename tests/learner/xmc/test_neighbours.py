from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from learner.xmc.neighbours import NeighbourConfig, NeighbourVoter
from tests.learner.xmc.problems import make_problem


def _brute_force(X_train: sp.csr_matrix, X: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k with ties to the lower index."""

    def unit(M: sp.csr_matrix) -> np.ndarray:
        dense = M.toarray().astype(np.float64)
        return dense / np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-30)

    sims = unit(X) @ unit(X_train).T  # (N, N_train)
    order = np.lexsort((np.broadcast_to(np.arange(sims.shape[1]), sims.shape), -sims), axis=1)[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


def test_the_nearest_documents_are_found_exactly_when_no_word_is_left_out() -> None:
    X, Y = make_problem(n_docs=400)
    voter = NeighbourVoter.fit(X[:300], Y[:300], NeighbourConfig(k=7, max_df=1.0, n_jobs=1))

    idx, sim = voter.neighbours(X[300:])
    want_idx, want_sim = _brute_force(X[:300], X[300:], 7)

    assert np.allclose(sim, want_sim, atol=1e-5)
    assert np.array_equal(idx[sim > 0], want_idx[sim > 0])
    assert np.all(np.diff(sim, axis=1) <= 1e-7)  # best first
    # two threads find the same neighbours
    threaded = NeighbourVoter.fit(X[:300], Y[:300], NeighbourConfig(k=7, max_df=1.0, n_jobs=2)).neighbours(X[300:])
    assert np.array_equal(threaded[0], idx) and np.allclose(threaded[1], sim)


def test_neighbours_vote_for_their_labels() -> None:
    X, Y = make_problem(n_docs=700)
    voter = NeighbourVoter.fit(X[:600], Y[:600], NeighbourConfig(k=10, max_df=1.0))

    scores = voter.score(X[600:]).toarray()  # (100, L)
    top1 = scores.argmax(axis=1)
    p_at_1 = float(np.asarray(Y[600:].toarray())[np.arange(100), top1].mean())
    chance = float(Y[600:].sum()) / (100 * Y.shape[1])

    assert scores.min() >= 0 and scores.max() <= 1 + 1e-6
    assert p_at_1 > 0.8 and p_at_1 > 5 * chance
    # a training document asks: it is its own nearest neighbour, and with k = 1 it gets exactly its own labels
    own = voter.score(X[:5], k=1).toarray()
    assert np.array_equal(own > 0, Y[:5].toarray() > 0)


def test_words_in_too_many_documents_are_left_out_of_the_search() -> None:
    # "common" (feature 0) is in every document; the documents differ only in one rare word each
    rows = [[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]]
    X = sp.csr_matrix(np.array(rows, dtype=np.float32))
    Y = sp.csr_matrix(np.eye(3, dtype=np.float32))
    query = sp.csr_matrix(np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0]], dtype=np.float32))

    pruned = NeighbourVoter.fit(X, Y, NeighbourConfig(k=2, max_df=0.5))
    kept_all = NeighbourVoter.fit(X, Y, NeighbourConfig(k=2, max_df=1.0))

    assert pruned.kept.tolist() == [False, True, True, True]
    scores = pruned.score(query).toarray()
    assert scores[0].sum() == 0  # only the common word: no neighbour, no vote
    assert scores[1].tolist() == [0.0, 1.0, 0.0]  # the rare word finds document 1 alone
    assert kept_all.score(query).toarray()[0].sum() == pytest.approx(1.0)  # with it, everyone is a neighbour


def test_new_documents_and_labels_join_the_index_and_the_saved_voter_answers_the_same(tmp_path) -> None:
    X, Y = make_problem(n_docs=500)
    voter = NeighbourVoter.fit(X[:400], Y[:400, :30], NeighbourConfig(k=5, max_df=1.0))
    grown = voter.with_documents(X[400:450], Y[400:450])  # 10 new label columns

    assert (grown.n_documents, grown.n_labels) == (450, Y.shape[1])
    assert (voter.n_documents, voter.n_labels) == (400, 30)  # unchanged
    own = grown.score(X[400:405], k=1).toarray()
    assert np.array_equal(own > 0, Y[400:405].toarray() > 0)  # the new documents vote, with their new labels

    again = NeighbourVoter.load(grown.save(tmp_path / "voter"))
    assert (again.score(X[450:]) != grown.score(X[450:])).nnz == 0
    assert again.config == grown.config


def test_bad_input_is_refused_with_a_clear_message(tmp_path) -> None:
    X, Y = make_problem(n_docs=50)
    voter = NeighbourVoter.fit(X, Y)
    with pytest.raises(ValueError, match="features"):
        voter.score(X[:, :10])
    with pytest.raises(ValueError, match="rows"):
        NeighbourVoter.fit(X, Y[:10])
    with pytest.raises(ValueError, match="max_df"):
        NeighbourConfig(max_df=0.0)
    with pytest.raises(ValueError, match="k must"):
        NeighbourConfig(k=0)
    with pytest.raises(ValueError, match="n_jobs"):
        NeighbourConfig(n_jobs=0)
    with pytest.raises(ValueError, match="columns"):
        voter.with_documents(X[:3], Y[:3, :5])
    (tmp_path / "broken").mkdir()
    with pytest.raises(ValueError, match="no saved neighbour voter"):
        NeighbourVoter.load(tmp_path / "broken")
