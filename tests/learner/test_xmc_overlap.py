"""Overlapping leaf clusters (label disentanglement) in the XR-Linear fast tier: learner.xmc.overlap + XRLinear."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from learner.xmc import TreeConfig, XRConfig, XREnsemble, XRLinear
from learner.xmc.overlap import assign_slots, merge_slots, route_counts, slot_tree
from learner.xmc.tree import LabelTree
from tests.learner.xmc.problems import FAST, make_problem

TOPICS = 16  # per group: labels 0..15 are group A's topics, 16..31 group B's
AMBIGUOUS = 2 * TOPICS  # label 32: two meanings, one per group
WORDS, OWN_WORDS, COMMON_WORDS = 10, 6, 8  # per topic; of each meaning of the ambiguous label; per group
# beam 1 at training and inference; leaves of >= 4 slots, so top-2 never widens the beam (same work for both lambdas)
CONFIG = XRConfig(tree=TreeConfig(branching=2, leaf_size=8, seed=0), beam=1, pifa_weight=0.0, n_jobs=1)


def two_meanings(
    seed: int, per_topic: int, n_major: int, n_minor: int
) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """Two groups of documents with disjoint vocabularies (A: features 0..173, B: 174..347), 16 topics each.

    A topic document has its topic's label and 4 of its 10 words plus 2 of its group's 8 common words. The
    ambiguous label's documents are topic-0 documents of their group (they carry topic 0's label too, twice as
    many topic-0 documents exist without it) plus words of their meaning: 3 of 6 in group A (``n_major`` of
    them), 1 of 6 in group B (``n_minor``). Returns X (N, F) unit rows, Y (N, 33), meaning (N,) (0: A, 1: B,
    -1: not an ambiguous document).
    """
    rng = np.random.default_rng(seed)
    per_group = TOPICS * WORDS + OWN_WORDS + COMMON_WORDS
    spec = [(g, t, -1) for g in (0, 1) for t in range(TOPICS) for _ in range(per_topic * (2 if t == 0 else 1))]
    spec += [(0, 0, 0)] * n_major + [(1, 0, 1)] * n_minor
    spec = [spec[i] for i in rng.permutation(len(spec))]
    rows, cols, y_rows, y_cols = [], [], [], []
    for i, (group, topic, meaning) in enumerate(spec):
        base = group * per_group
        words = [
            base + topic * WORDS + rng.choice(WORDS, 4, replace=False),
            base + TOPICS * WORDS + OWN_WORDS + rng.choice(COMMON_WORDS, 2, replace=False),
        ]
        labels = [group * TOPICS + topic]
        if meaning >= 0:
            words.append(base + TOPICS * WORDS + rng.choice(OWN_WORDS, 3 if meaning == 0 else 1, replace=False))
            labels.append(AMBIGUOUS)
        features = np.concatenate(words)
        rows += [i] * len(features)
        cols += list(features)
        y_rows += [i] * len(labels)
        y_cols += labels
    values = rng.uniform(0.5, 1.0, len(rows))
    X = sp.csr_matrix((values, (rows, cols)), shape=(len(spec), 2 * per_group), dtype=np.float32)
    X = sp.csr_matrix(X.multiply(1.0 / np.sqrt(X.multiply(X).sum(axis=1))), dtype=np.float32)
    Y = sp.csr_matrix((np.ones(len(y_rows), np.float32), (y_rows, y_cols)), shape=(len(spec), AMBIGUOUS + 1))
    return X, Y, np.array([m for _, _, m in spec])


@pytest.fixture(scope="module")
def data() -> dict[str, sp.csr_matrix | np.ndarray]:
    X, Y, _ = two_meanings(0, per_topic=20, n_major=60, n_minor=15)
    X_test, Y_test, meaning = two_meanings(1, per_topic=5, n_major=20, n_minor=20)
    return {"X": X, "Y": Y, "X_test": X_test, "Y_test": Y_test, "meaning": meaning}


@pytest.fixture(scope="module")
def plain(data) -> XRLinear:
    return XRLinear.train(data["X"], data["Y"], CONFIG)


@pytest.fixture(scope="module")
def overlapped(data) -> XRLinear:
    return XRLinear.train(data["X"], data["Y"], XRConfig.from_dict({**CONFIG.to_dict(), "overlap_lambda": 2}))


def found(model: XRLinear, X: sp.csr_matrix, label: int, k: int = 2) -> float:
    """Share of the rows of X whose top-k holds ``label``."""
    indices, _ = model.predict_topk(X, k)
    return float((indices == label).any(axis=1).mean())


def leaf_members(model: XRLinear, leaf: int) -> set[int]:
    """The labels of the slots in a leaf."""
    slots = model.tree.order[model.tree.leaf_bounds[leaf] : model.tree.leaf_bounds[leaf + 1]]
    return {int(label) for label in model.slot_label[slots]}


# ------------------------------------------------------------------------------------ the two meanings


def test_an_ambiguous_label_gets_one_leaf_per_meaning_and_finds_its_minority_meaning(plain, overlapped, data) -> None:
    X_test, meaning = data["X_test"], data["meaning"]
    slot_leaf = overlapped.tree.leaf_of_label()  # (S,) by slot id

    ambiguous_leaves = sorted(int(slot_leaf[s]) for s in np.flatnonzero(overlapped.slot_label == AMBIGUOUS))
    assert len(ambiguous_leaves) == 2
    home, extra = int(slot_leaf[AMBIGUOUS]), next(c for c in ambiguous_leaves if c != slot_leaf[AMBIGUOUS])
    assert 0 in leaf_members(overlapped, home)  # with topic 0 of group A: its majority meaning
    assert 16 in leaf_members(overlapped, extra)  # with topic 0 of group B: its minority meaning
    assert leaf_members(overlapped, extra) - {AMBIGUOUS} <= set(range(16, 32))  # a group-B leaf
    assert overlapped.n_labels == plain.n_labels == 33 and overlapped.n_slots > 33

    minor, major = X_test[meaning == 1], X_test[meaning == 0]
    assert found(plain, minor, AMBIGUOUS) <= 0.2  # lambda=1: measured 0.05
    assert found(overlapped, minor, AMBIGUOUS) >= 0.9  # lambda=2: measured 1.00
    assert found(overlapped, major, AMBIGUOUS) >= found(plain, major, AMBIGUOUS)  # the majority meaning keeps
    for model in (plain, overlapped):  # one column per label: distinct labels, valid ids
        indices, _ = model.predict_topk(X_test, 5)
        assert indices.max() < 33 and all(len(set(row)) == 5 for row in indices)


def test_overlap_training_is_deterministic_and_rounds_alternate(data) -> None:
    config = XRConfig.from_dict({**CONFIG.to_dict(), "overlap_lambda": 2, "overlap_rounds": 2})
    first = XRLinear.train(data["X"], data["Y"], config)
    second = XRLinear.train(data["X"], data["Y"], config)

    assert np.array_equal(first.slot_label, second.slot_label)
    assert np.array_equal(first.predict_topk(data["X_test"], 3)[0], second.predict_topk(data["X_test"], 3)[0])
    assert len(first.train_info["overlap_rounds"]) == 2
    assert found(first, data["X_test"][data["meaning"] == 1], AMBIGUOUS) >= 0.9


def test_min_count_keeps_rarely_routed_leaves_out(data) -> None:
    config = XRConfig.from_dict({**CONFIG.to_dict(), "overlap_lambda": 2, "overlap_min_count": 1000})

    model = XRLinear.train(data["X"], data["Y"], config)

    assert model.n_slots == model.n_labels and not model.overlapped  # no leaf reached by 1000 documents


# -------------------------------------------------------------------------------------------- merging


def test_merge_max_and_mean_of_the_slots_the_beam_reached() -> None:
    slot_label = np.array([0, 1, 2, 0, 1])  # slots 3 and 4 duplicate labels 0 and 1
    slots = np.array([[3, 1, 0, 2], [2, 4, 0, 1]])
    scores = np.array([[0.9, 0.8, 0.3, 0.2], [0.7, 0.6, 0.5, 0.1]], dtype=np.float32)

    labels, merged = merge_slots(slots, scores, slot_label, 3, "max")
    assert labels.tolist() == [[0, 1, 2], [2, 1, 0]]
    np.testing.assert_allclose(merged, [[0.9, 0.8, 0.2], [0.7, 0.6, 0.5]])

    labels, merged = merge_slots(slots, scores, slot_label, 3, "mean")
    assert labels.tolist() == [[1, 0, 2], [2, 0, 1]]
    np.testing.assert_allclose(merged, [[0.8, 0.6, 0.2], [0.7, 0.5, 0.35]], rtol=1e-6)

    with pytest.raises(ValueError, match="fewer than k"):
        merge_slots(slots, scores, slot_label, 4, "max")


def test_model_merge_mean_never_scores_above_max_and_follows_the_config(overlapped, data) -> None:
    X_test = data["X_test"]
    by_max = overlapped.predict_topk(X_test, 33, beam=8)  # every leaf: every slot of every label is scored
    by_mean = overlapped.predict_topk(X_test, 33, beam=8, merge="mean")

    top_max = np.zeros((X_test.shape[0], 33))
    top_mean = np.zeros((X_test.shape[0], 33))
    np.put_along_axis(top_max, by_max[0], by_max[1], axis=1)
    np.put_along_axis(top_mean, by_mean[0], by_mean[1], axis=1)
    assert np.all(top_mean <= top_max + 1e-7)
    single = np.bincount(overlapped.slot_label) == 1  # labels with one slot: both merges agree
    np.testing.assert_allclose(top_mean[:, single], top_max[:, single])
    assert np.any(top_mean[:, ~single] < top_max[:, ~single] - 1e-4)

    as_config = XRLinear(
        config=XRConfig.from_dict({**overlapped.config.to_dict(), "overlap_merge": "mean"}),
        tree=overlapped.tree,
        layers=overlapped.layers,
        n_features=overlapped.n_features,
        slot_label=overlapped.slot_label,
    )
    assert np.array_equal(as_config.predict_topk(X_test, 33, beam=8)[0], by_mean[0])
    with pytest.raises(ValueError, match="merge"):
        overlapped.predict_topk(X_test, 3, merge="sum")


# --------------------------------------------------------------------------------- save, load, update


def test_save_load_keeps_the_slots_and_the_predictions(overlapped, data, tmp_path) -> None:
    loaded = XRLinear.load(overlapped.save(tmp_path / "model"))

    assert np.array_equal(loaded.slot_label, overlapped.slot_label) and loaded.n_labels == 33
    for merge in ("max", "mean"):
        expected = overlapped.predict_topk(data["X_test"], 5, merge=merge)
        got = loaded.predict_topk(data["X_test"], 5, merge=merge)
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["n_labels"] == 33 and saved["n_slots"] == overlapped.n_slots


def test_update_with_every_document_replayed_refits_every_slot_exactly(overlapped, data) -> None:
    updated = overlapped.update(data["X"], data["Y"])

    assert np.array_equal(updated.slot_label, overlapped.slot_label)
    for a, b in zip(overlapped.layers, updated.layers, strict=True):
        assert (a.weights != b.weights).nnz == 0 and np.array_equal(a.bias, b.bias)


def test_update_after_overlap_retrains_a_labels_slots_together_and_adds_new_labels_once(overlapped, data) -> None:
    X_test = data["X_test"]
    X_new, Y_old, _ = two_meanings(2, per_topic=0, n_major=0, n_minor=10)  # 10 minority-meaning documents
    new_label = sp.csr_matrix(Y_old[:, 16].toarray())  # label 33: on all of them
    Y_new = sp.hstack([Y_old, new_label], format="csr")

    updated = overlapped.update(X_new, Y_new)

    assert updated.n_labels == 34 and updated.n_slots == overlapped.n_slots + 1
    assert np.flatnonzero(updated.slot_label == 33).size == 1  # a new label gets one slot
    position = np.argsort(updated.tree.order)  # slot id -> tree position
    old_position = np.argsort(overlapped.tree.order)
    weights, old_weights = updated.layers[-1].weights, overlapped.layers[-1].weights
    for slot in np.flatnonzero(overlapped.slot_label == AMBIGUOUS):  # both slots of the ambiguous label retrained
        assert (weights[position[slot]] != old_weights[old_position[slot]]).nnz > 0
    untouched = 5  # topic 5 of group A: no update document carries it, its weights are kept
    assert (weights[position[untouched]] != old_weights[old_position[untouched]]).nnz == 0
    indices, _ = updated.predict_topk(X_test, 3)
    assert indices.max() < 34 and all(len(set(row)) == 3 for row in indices)
    assert found(updated, X_test[data["meaning"] == 1], 33, k=3) >= 0.9  # the new label is learned


def test_an_ensemble_of_overlapped_trees_predicts_labels_and_round_trips(data, tmp_path) -> None:
    config = XRConfig.from_dict({**CONFIG.to_dict(), "overlap_lambda": 2})
    ensemble = XREnsemble.train(data["X"], data["Y"], config, n_trees=2)

    assert all(member.overlapped for member in ensemble.members)
    indices, scores = ensemble.predict_topk(data["X_test"], 3)
    assert indices.max() < 33 and all(len(set(row)) == 3 for row in indices)
    loaded = XREnsemble.load(ensemble.save(tmp_path / "ensemble"))
    again = loaded.predict_topk(data["X_test"], 3)
    assert np.array_equal(again[0], indices) and np.array_equal(again[1], scores)


# ----------------------------------------------------------------------------- lambda = 1 and config


def test_lambda_one_is_the_plain_tree_whatever_the_other_overlap_options(tmp_path) -> None:
    X, Y = make_problem()
    inert = XRConfig.from_dict(
        {**FAST.to_dict(), "overlap_lambda": 1, "overlap_rounds": 3, "overlap_merge": "mean", "overlap_min_count": 7}
    )
    plain = XRLinear.train(X[:500], Y[:500], FAST)
    other = XRLinear.train(X[:500], Y[:500], inert)

    assert other.n_slots == other.n_labels == 40 and np.array_equal(other.slot_label, np.arange(40))
    for a, b in zip(plain.layers, other.layers, strict=True):
        assert (a.weights != b.weights).nnz == 0 and np.array_equal(a.bias, b.bias)
    expected = plain.predict_topk(X[500:], 7)
    got = other.predict_topk(X[500:], 7)
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])

    folder = plain.save(tmp_path / "plain")  # a model saved before the overlap options existed
    with np.load(folder / "arrays.npz") as arrays:
        assert "slot_label" not in arrays.files
    payload = json.loads((folder / "config.json").read_text())
    for key in ("overlap_lambda", "overlap_rounds", "overlap_merge", "overlap_min_count", "overlap_beam"):
        del payload["config"][key]
    (folder / "config.json").write_text(json.dumps(payload))
    loaded = XRLinear.load(folder)
    assert loaded.config.overlap_lambda == 1
    assert np.array_equal(loaded.predict_topk(X[500:], 7)[0], expected[0])


def test_overlap_config_round_trips_through_json() -> None:
    config = XRConfig(overlap_lambda=3, overlap_rounds=2, overlap_merge="mean", overlap_min_count=4, overlap_beam=2)

    assert XRConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.overlapping and not XRConfig().overlapping


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("overlap_lambda", 0),
        ("overlap_lambda", 2.0),
        ("overlap_lambda", True),
        ("overlap_rounds", 0),
        ("overlap_merge", "sum"),
        ("overlap_min_count", 0),
        ("overlap_beam", -1),
    ],
)
def test_bad_overlap_values_raise_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        XRConfig.from_dict({field: value})


# ------------------------------------------------------------------------------------- the assignment


def test_assignment_keeps_the_home_leaf_and_adds_the_most_routed_others() -> None:
    counts = sp.csr_matrix(
        np.array(
            [
                [9, 5, 5, 1],  # label 0, home 0: leaves 1 and 2 tie, the lower index wins
                [0, 7, 0, 3],  # label 1, home 3: leaf 1
                [2, 0, 8, 0],  # label 2, home 2: leaf 0 only with min_count <= 2
            ]
        )
    )
    home = np.array([0, 3, 2])

    slot_label, slot_leaf = assign_slots(counts, home, 2, min_count=3)
    assert slot_label.tolist() == [0, 1, 2, 0, 1] and slot_leaf.tolist() == [0, 3, 2, 1, 1]
    slot_label, slot_leaf = assign_slots(counts, home, 3, min_count=1)
    assert slot_label.tolist() == [0, 1, 2, 0, 0, 1, 2] and slot_leaf.tolist() == [0, 3, 2, 1, 2, 1, 0]
    slot_label, slot_leaf = assign_slots(counts, home, 1)
    assert slot_label.tolist() == [0, 1, 2] and slot_leaf.tolist() == home.tolist()
    with pytest.raises(ValueError, match="home_leaf"):
        assign_slots(counts, np.array([0, 1]), 2)


def test_route_counts_and_slot_tree() -> None:
    Y = sp.csr_matrix(np.array([[1, 0], [1, 1], [0, 1]], dtype=np.float32))
    leaves = np.array([[0, 1], [1, -1], [1, 1]])  # a leaf listed twice counts once
    assert route_counts(Y, leaves, 2).toarray().tolist() == [[1, 2], [0, 2]]

    base = LabelTree(order=np.array([1, 0]), leaf_bounds=np.array([0, 1, 2]), depths=[1], config=TreeConfig())
    tree = slot_tree(base, np.array([0, 1, 1]), np.array([1, 0, 1]))  # slot 2: label 1 in leaf 1 too
    assert tree.order.tolist() == [1, 0, 2] and tree.leaf_bounds.tolist() == [0, 1, 3]
    with pytest.raises(ValueError, match="base leaves"):
        slot_tree(base, np.array([0, 1, 1]), np.array([0, 0, 1]))
