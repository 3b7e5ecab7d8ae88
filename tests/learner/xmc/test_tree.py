from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from learner.xmc import LabelTree, TreeConfig, pifa

# ------------------------------------------------------------------------------------------- PIFA, tree


def test_pifa_is_the_normalised_sum_of_positive_documents() -> None:
    X = sp.csr_matrix(np.array([[3.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32))
    Y = sp.csr_matrix(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0]], dtype=np.float32))

    Z = pifa(X, Y).toarray()

    np.testing.assert_allclose(Z, [[0.6, 0.8, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]], atol=1e-6)


def test_pifa_rejects_row_mismatch() -> None:
    with pytest.raises(ValueError, match="rows"):
        pifa(sp.csr_matrix((3, 2)), sp.csr_matrix((4, 2)))


@pytest.mark.parametrize(
    ("n_labels", "branching", "leaf_size"), [(103, 4, 10), (1000, 16, 100), (37, 2, 2), (8, 16, 10)]
)
def test_tree_is_balanced_and_holds_every_label_once(n_labels: int, branching: int, leaf_size: int) -> None:
    rng = np.random.default_rng(1)
    Z = sp.random(n_labels, 50, density=0.2, random_state=rng, format="csr", dtype=np.float32)

    tree = LabelTree.build(Z, TreeConfig(branching=branching, leaf_size=leaf_size))

    assert np.array_equal(np.sort(tree.order), np.arange(n_labels))  # every label in exactly one leaf
    sizes = np.diff(tree.leaf_bounds)
    assert sizes.max() <= leaf_size and sizes.max() - sizes.min() <= 1
    depth = tree.depths[-1] if tree.depths else 0
    assert depth == (math.ceil(math.log2(n_labels / leaf_size)) if n_labels > leaf_size else 0)
    for layer, matrix in enumerate(tree.matrices()):  # at every level: one parent each, sizes within 1
        assert np.all(np.asarray(matrix.sum(axis=1)).ravel() == 1)
        members = np.bincount(tree.node_of_position(layer))
        assert members.max() - members.min() <= 1
    # the top level has at most `branching` clusters, every level below fans out by `branching`
    assert tree.level_sizes[0] <= branching or not tree.depths
    for upper, lower in zip(tree.depths, tree.depths[1:], strict=False):
        assert 2 ** (lower - upper) == branching


def test_tree_is_deterministic_for_a_seed_and_groups_similar_labels() -> None:
    rng = np.random.default_rng(2)
    centres = rng.random((2, 40)) * (rng.random((2, 40)) < 0.3)
    Z = np.vstack([centres[i % 2] + 0.05 * rng.random(40) for i in range(64)]).astype(np.float32)

    tree = LabelTree.build(Z, TreeConfig(branching=2, leaf_size=8, seed=5))
    again = LabelTree.build(Z, TreeConfig(branching=2, leaf_size=8, seed=5))
    other = LabelTree.build(Z, TreeConfig(branching=2, leaf_size=8, seed=6))

    assert np.array_equal(tree.order, again.order)
    assert not np.array_equal(tree.order, other.order)
    top = tree.node_of_position(0)  # the first split separates the two groups
    assert {frozenset(tree.order[top == c] % 2) for c in (0, 1)} == {frozenset({0}), frozenset({1})}


def test_tree_rejects_no_labels() -> None:
    with pytest.raises(ValueError, match="no rows"):
        LabelTree.build(sp.csr_matrix((0, 5)), TreeConfig())
