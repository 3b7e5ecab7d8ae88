from __future__ import annotations

import dataclasses
import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from learner.xmc import LabelTree, TreeConfig, XRConfig, XRLinear, pifa
from learner.xmc.model import transform_scores
from tests.learner.xmc.problems import FAST, recall_at

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "tibkat-sample.jsonl.gz"


# --------------------------------------------------------------------------------------------- training


def brute_force_topk(model: XRLinear, X: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Score every label along its whole path, no beam: the reference the beam search must match."""
    tree = model.tree
    path_score = np.ones((X.shape[0], tree.n_labels))
    for t, layer in enumerate(model.layers):
        raw = (X @ layer.weights.T).toarray() + layer.bias  # (N, n_t) every node of the layer
        node = tree.node_of_position(t)  # (L,) ancestor at layer t of each tree position
        path_score = path_score**model.config.path_exponent * transform_scores(raw, model.config.transform)[:, node]
    by_label = np.empty_like(path_score)
    by_label[:, tree.order] = path_score
    top = np.argsort(-by_label, axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(by_label, top, axis=1)


@pytest.mark.parametrize("path_exponent", [1.0, 0.4])
def test_beam_search_equals_exhaustive_scoring_when_the_beam_covers_every_cluster(problem, path_exponent) -> None:
    X, Y = problem
    config = XRConfig.from_dict({**FAST.to_dict(), "path_exponent": path_exponent})
    model = XRLinear.train(X[:500], Y[:500], config)
    assert model.tree.level_sizes == [2, 4, 8, 40]

    indices, scores = model.predict_topk(X[500:], 10, beam=8)
    expected_indices, expected_scores = brute_force_topk(model, X[500:], 10)

    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-7)
    assert (indices == expected_indices).mean() > 0.99  # equal up to exact ties


def test_a_label_set_within_one_leaf_is_one_versus_all(problem) -> None:
    X, Y = problem
    Y = Y[:, :8]  # 8 labels <= leaf_size: no cluster levels, one classifier per label on every document
    model = XRLinear.train(X[:500], Y[:500], XRConfig(tree=TreeConfig(leaf_size=100), pifa_weight=0.0, n_jobs=1))

    indices, scores = model.predict_topk(X[500:], 3, beam=1)
    expected_indices, expected_scores = brute_force_topk(model, X[500:], 3)

    assert model.tree.level_sizes == [8] and model.tree.n_layers == 1
    assert np.array_equal(indices, expected_indices)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-7)


def test_recall_degrades_gracefully_with_a_smaller_beam(model, problem) -> None:
    X, Y = problem
    recalls = [recall_at(Y[500:], model.predict_topk(X[500:], 5, beam=b)[0]) for b in (1, 2, 4, 8)]

    assert recalls == sorted(recalls)  # never better with a narrower beam
    assert recalls[1] >= 0.8 * recalls[-1]  # a quarter of the leaves still finds most of it
    assert recalls[0] >= 0.5 * recalls[-1]  # one leaf: at least the labels of the best leaf
    assert recalls[-1] > 0.9


def test_predictions_are_sorted_unique_scores_in_unit_interval(model, problem) -> None:
    X, _ = problem
    indices, scores = model.predict_topk(X[500:], 7)

    assert indices.shape == scores.shape == (100, 7)
    assert indices.dtype == np.int64 and scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert all(len(set(row)) == 7 for row in indices)


def test_model_beats_a_random_ranker_and_tfn_only_works(problem) -> None:
    X, Y = problem
    for config in (FAST, XRConfig.from_dict({**FAST.to_dict(), "negatives": "tfn", "loss": "logistic"})):
        model = XRLinear.train(X[:500], Y[:500], config)
        top, _ = model.predict_topk(X[500:], 1)
        precision = float(np.asarray(Y[500:][np.arange(100), top[:, 0]]).mean())
        assert precision > 0.6  # random: about 2 / 40


def test_predict_topk_streams_in_chunks_with_identical_results(model, problem) -> None:
    X = problem[0][:150]
    whole = model.predict_topk(X, 5, chunk_size=10_000)

    for chunk_size in (1, 7, 64):
        part = model.predict_topk(X, 5, chunk_size=chunk_size)
        assert np.array_equal(part[0], whole[0]) and np.array_equal(part[1], whole[1])


def test_k_larger_than_the_beam_reaches_enough_labels(model, problem) -> None:
    X, _ = problem
    indices, _ = model.predict_topk(X[:20], 40, beam=1)  # 1 leaf of 5 labels is not enough: the beam widens

    assert all(sorted(row) == list(range(40)) for row in indices)
    assert model.predict_topk(X[:3], 1000)[0].shape == (3, 40)  # k is clipped to the number of labels


def test_training_does_not_depend_on_the_number_of_workers(problem, monkeypatch) -> None:
    from learner.xmc import solver

    monkeypatch.setattr(solver, "MIN_FORK_WORK", 0)  # fork workers even for this small problem
    X, Y = problem
    one = XRLinear.train(X[:300], Y[:300], FAST)
    two = XRLinear.train(X[:300], Y[:300], XRConfig.from_dict({**FAST.to_dict(), "n_jobs": 2}))

    for a, b in zip(one.layers, two.layers, strict=True):
        assert (a.weights != b.weights).nnz == 0 and np.array_equal(a.bias, b.bias)


def test_a_given_tree_is_used_and_labels_without_positives_score_near_zero(problem) -> None:
    X, Y = problem
    Y = sp.hstack([Y, sp.csr_matrix((Y.shape[0], 3))], format="csr")  # 3 labels no document carries
    tree = LabelTree.build(pifa(X, Y), TreeConfig(branching=4, leaf_size=6, seed=1))

    model = XRLinear.train(X[:500], Y[:500], XRConfig(tree=tree.config, n_jobs=1), tree=tree)
    indices, scores = model.predict_topk(X[500:], 43, beam=100)

    assert model.tree is tree
    unseen = np.isin(indices, [40, 41, 42])
    assert np.all(scores[unseen] < 1e-6)


def test_weight_threshold_makes_the_model_sparser(problem) -> None:
    X, Y = problem
    dense = XRLinear.train(X[:500], Y[:500], XRConfig.from_dict({**FAST.to_dict(), "weight_threshold": 0.0}))
    sparse = XRLinear.train(X[:500], Y[:500], XRConfig.from_dict({**FAST.to_dict(), "weight_threshold": 0.3}))

    assert sparse.nnz < 0.5 * dense.nnz
    assert all(np.all(np.abs(layer.weights.data) >= 0.3) for layer in sparse.layers)


def test_progress_callback_reaches_one(problem) -> None:
    X, Y = problem
    seen: list[float] = []

    XRLinear.train(X[:200], Y[:200], FAST, on_progress=seen.append)

    assert seen and seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    assert all(0.0 <= value <= 1.0 for value in seen)


# ------------------------------------------------------------------------------------- incremental update


def test_update_with_every_document_replayed_refits_exactly_what_training_fitted(model, problem) -> None:
    X, Y = problem

    updated = model.update(X[:500], Y[:500])  # the same documents, all of them new

    assert updated.train_info["update_retrained_labels"] == int((np.asarray(Y[:500].sum(axis=0)) > 0).sum())
    for a, b in zip(model.layers, updated.layers, strict=True):
        assert (a.weights != b.weights).nnz == 0 and np.array_equal(a.bias, b.bias)
    assert np.array_equal(model.predict_topk(X[500:], 5)[0], updated.predict_topk(X[500:], 5)[0])


def label_recall(model: XRLinear, X: sp.csr_matrix, Y: sp.csr_matrix, labels: range, k: int = 5) -> float:
    """Share of the test documents carrying one of ``labels`` that get it in their top-k."""
    top, _ = model.predict_topk(X, k)
    dense = Y.toarray()
    found = [label in top[i] for label in labels for i in np.flatnonzero(dense[:, label])]
    return float(np.mean(found))


def test_update_grows_the_tree_with_new_labels_and_learns_them(problem, tmp_path) -> None:
    X, Y = problem
    old = XRLinear.train(X[:300], Y[:300, :35], FAST)  # labels 35..39 do not exist yet
    before = old.predict_topk(X[500:], 5)

    updated = old.update(X[300:500], Y[300:500], new_rows=np.arange(200))

    assert updated.n_labels == 40 and old.n_labels == 35  # the old model is unchanged
    assert np.array_equal(old.predict_topk(X[500:], 5)[0], before[0])
    assert np.array_equal(np.sort(updated.tree.order), np.arange(40))  # every label in exactly one leaf
    assert updated.tree.depths == old.tree.depths
    leaf = updated.tree.leaf_of_label()
    assert np.array_equal(leaf[:35], old.tree.leaf_of_label())  # old labels stay in their leaves
    assert label_recall(updated, X[500:], Y[500:], range(35, 40)) > 0.4  # chance: 5 of 40 labels
    everything = label_recall(updated, X[500:], Y[500:], range(40))
    assert everything > label_recall(old, X[500:], Y[500:], range(35)) * 35 / 40  # new labels add recall
    assert updated.train_info["update_added_labels"] == 5
    loaded = XRLinear.load(updated.save(tmp_path / "updated"))
    assert np.array_equal(loaded.predict_topk(X[500:], 5)[0], updated.predict_topk(X[500:], 5)[0])


def test_update_with_pifa_gives_new_labels_their_centroids(problem) -> None:
    X, Y = problem
    config = XRConfig.from_dict({**FAST.to_dict(), "pifa_weight": 0.5})
    old = XRLinear.train(X[:300], Y[:300, :38], config)

    updated = old.update(X[300:500], Y[300:500])

    assert updated.label_features is not None and updated.label_features.shape == (40, X.shape[1])
    position = np.argsort(updated.tree.order)  # label id -> tree position
    expected = pifa(X[300:500], Y[300:500, 38:]).toarray()
    expected[np.abs(expected) < config.pifa_threshold] = 0.0  # as training prunes them
    assert np.allclose(updated.label_features[position[38:]].toarray(), expected, atol=1e-6)
    kept = old.label_features.toarray()[np.argsort(old.tree.order)]  # old labels keep their centroids
    assert np.allclose(updated.label_features[position[:38]].toarray(), kept)


def test_a_new_label_without_documents_joins_the_smallest_leaf_and_scores_near_zero(model, problem) -> None:
    X, Y = problem
    Y_more = sp.hstack([Y, sp.csr_matrix((Y.shape[0], 1))], format="csr")  # label 40: no document has it
    smallest = int(np.argmin(np.diff(model.tree.leaf_bounds)))

    updated = model.update(X[500:550], Y_more[500:550])

    assert updated.tree.leaf_of_label()[40] == smallest
    indices, scores = updated.predict_topk(X[500:], 41, beam=100)
    assert np.all(scores[indices == 40] < 1e-6)


def test_update_of_a_one_leaf_model_is_one_versus_all_on_every_document(problem) -> None:
    X, Y = problem
    config = XRConfig.from_dict({**FAST.to_dict(), "tree": {"leaf_size": 64, "branching": 2, "seed": 0}})
    old = XRLinear.train(X[:400], Y[:400, :39], config)
    assert old.tree.n_layers == 1

    updated = old.update(X[:400], Y[:400])  # label 39 joins the only leaf; every document routes to it

    again = XRLinear.train(X[:400], Y[:400], config)
    assert np.array_equal(updated.tree.order, np.arange(40))
    for a, b in zip(updated.layers, again.layers, strict=True):
        assert (a.weights != b.weights).nnz == 0 and np.array_equal(a.bias, b.bias)


@pytest.mark.parametrize(
    ("Y_cut", "kwargs", "match"),
    [(39, {}, "cannot drop labels"), (40, {"new_rows": [0, 99]}, "new_rows")],
)
def test_update_rejects_bad_input(model, problem, Y_cut: int, kwargs: dict, match: str) -> None:
    X, Y = problem
    with pytest.raises(ValueError, match=match):
        model.update(X[:50], Y[:50, :Y_cut], **kwargs)


# ------------------------------------------------------------------------------------------ persistence


def test_save_and_load_give_identical_predictions_without_pickle(model, problem, tmp_path) -> None:
    X, _ = problem
    folder = model.save(tmp_path / "xr")

    loaded = XRLinear.load(folder)

    assert sorted(p.name for p in folder.iterdir()) == ["arrays.npz", "config.json"]
    with np.load(folder / "arrays.npz", allow_pickle=False) as arrays:
        assert "layer3_data" in arrays
    payload = json.loads((folder / "config.json").read_text())
    assert payload["n_labels"] == 40 and payload["config"] == model.config.to_dict()
    assert loaded.config == model.config and loaded.tree.level_sizes == model.tree.level_sizes
    for a, b in zip(model.predict_topk(X, 5), loaded.predict_topk(X, 5), strict=True):
        assert np.array_equal(a, b)
    model.save(folder)  # replacing an existing model folder
    assert XRLinear.load(folder).nnz == model.nnz


def test_load_rejects_missing_and_corrupt_folders(model, tmp_path) -> None:
    with pytest.raises(ValueError, match="no saved XR-Linear"):
        XRLinear.load(tmp_path / "missing")
    folder = model.save(tmp_path / "xr")
    (folder / "arrays.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="corrupt"):
        XRLinear.load(folder)


# ------------------------------------------------------------------------------------------- bad input


def test_bad_training_input_raises_value_error(problem) -> None:
    X, Y = problem
    with pytest.raises(ValueError, match="rows"):
        XRLinear.train(X[:10], Y[:11], FAST)
    with pytest.raises(ValueError, match="no documents"):
        XRLinear.train(X[:0], Y[:0], FAST)
    with pytest.raises(ValueError, match="only 0 and 1"):
        XRLinear.train(X[:10], Y[:10] * 2, FAST)
    bad = X[:10].copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        XRLinear.train(bad, Y[:10], FAST)
    tree = LabelTree.build(np.eye(5, dtype=np.float32), TreeConfig(leaf_size=2))
    with pytest.raises(ValueError, match="covers 5 labels"):
        XRLinear.train(X[:10], Y[:10], FAST, tree=tree)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k must"),
        ({"k": True}, "k must"),
        ({"k": 3, "beam": 0}, "beam"),
        ({"k": 3, "chunk_size": 0}, "chunk"),
    ],
)
def test_bad_prediction_arguments_raise_value_error(model, problem, kwargs: dict, match: str) -> None:
    X, _ = problem
    with pytest.raises(ValueError, match=match):
        model.predict_topk(X[:5], **kwargs)


def test_prediction_input_with_the_wrong_width_raises(model, problem) -> None:
    X, _ = problem
    with pytest.raises(ValueError, match="300 columns"):
        model.predict_topk(X[:5, :100], 3)
    assert model.predict_topk(X[:0], 3)[0].shape == (0, 3)


# ------------------------------------------------------------------------------------------ real data


def read_sample() -> tuple[list[dict], list[dict]]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    return [r for r in records if r["split"] == "train"], [r for r in records if r["split"] == "dev"]


@pytest.mark.slow
def test_tibkat_sample_beats_a_random_ranker_by_far() -> None:
    from learner.data import multi_hot
    from learner.features import TfidfConfig, TfidfFeaturizer
    from learner.metrics import precision_at_k
    from learner.xmc.lexical import LabelNameMatcher, blend_topk

    train, dev = read_sample()
    labels = sorted({label for record in train + dev for label in record["labels"]})
    featurizer, X_train = TfidfFeaturizer.fit_transform([r["text"] for r in train], TfidfConfig())
    X_dev = featurizer.transform([r["text"] for r in dev])
    Y_train = multi_hot([r["labels"] for r in train], labels)
    Y_dev = multi_hot([r["labels"] for r in dev], labels)

    model = XRLinear.train(X_train, Y_train, XRConfig(tree=TreeConfig(leaf_size=50), n_jobs=1))
    top, scores = model.predict_topk(X_dev, 20)

    random_p5 = float(Y_dev.sum()) / (Y_dev.shape[0] * Y_dev.shape[1])  # expected P@5 of a random ranker
    p1, p5 = precision_at_k(Y_dev, top, 1), precision_at_k(Y_dev, top, 5)
    assert p5 >= 10 * random_p5  # measured: 0.094 against 0.0009
    assert p1 > 0.15  # measured: 0.24
    # the label names add what 2,000 documents cannot teach (measured P@1: 0.38)
    matcher = LabelNameMatcher.fit(labels, [r["text"] for r in train], Y_train)
    blended, _ = blend_topk(top, scores, matcher.score([r["text"] for r in dev]), 0.08, 5)
    assert precision_at_k(Y_dev, blended, 1) > p1 + 0.05


# ------------------------------------------------------------------------------------ PIFA re-ranking


def test_pifa_reranking_blends_the_centroid_similarity_and_can_be_switched_off(problem, tmp_path) -> None:
    X, Y = problem
    config = XRConfig.from_dict({**FAST.to_dict(), "pifa_weight": 0.5, "pifa_threshold": 0.01})
    model = XRLinear.train(X[:500], Y[:500], config)
    plain = XRLinear.train(X[:500], Y[:500], FAST)

    assert model.label_features is not None and model.label_features.shape == (40, 300)
    assert np.all(model.label_features.data >= 0.01)
    blended, blended_scores = model.predict_topk(X[500:], 5, beam=8)
    off, off_scores = model.predict_topk(X[500:], 5, beam=8, pifa_weight=0.0)
    reference = plain.predict_topk(X[500:], 5, beam=8)
    assert np.array_equal(off, reference[0]) and np.allclose(off_scores, reference[1])  # same rankers
    assert not np.array_equal(blended, off)
    assert np.all((blended_scores >= 0) & (blended_scores <= 1))
    # the blended score of the best label, recomputed by hand from the exhaustive path score
    top, path = brute_force_topk(model, X[500:501], 40)
    z = model.label_features[np.argsort(model.tree.order)]  # rows back in label order
    cosine = (X[500:501] @ z.T).toarray().ravel()
    expected = (dict(zip(top[0], path[0], strict=True))[blended[0, 0]] + 0.5 * cosine[blended[0, 0]]) / 1.5
    assert blended_scores[0, 0] == pytest.approx(expected, rel=1e-5)
    loaded = XRLinear.load(model.save(tmp_path / "pifa"))
    assert np.array_equal(loaded.predict_topk(X[500:], 5, beam=8)[0], blended)
    with pytest.raises(ValueError, match="pifa_weight"):
        plain.predict_topk(X[:5], 3, pifa_weight=0.3)


def test_dense_embeddings_with_negative_values_work_and_scores_stay_in_the_unit_interval() -> None:
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(6, 16))
    cluster = rng.integers(0, 6, size=400)
    X = (centres[cluster] + 0.3 * rng.normal(size=(400, 16))).astype(np.float32)  # like sentence embeddings
    Y = np.zeros((400, 30), dtype=np.float32)
    for i, c in enumerate(cluster):
        Y[i, [c, 6 + c * 4 + i % 4]] = 1.0

    model = XRLinear.train(X[:300], Y[:300], XRConfig(tree=TreeConfig(leaf_size=4, branching=4), n_jobs=1))
    indices, scores = model.predict_topk(X[300:], 3)

    assert np.all((scores >= 0) & (scores <= 1))
    assert np.mean(Y[300:][np.arange(100), indices[:, 0]]) > 0.9  # the cluster's own label comes first


# ------------------------------------------------------------------- label-embedding negatives (LightDXML)


def test_label_neighbours_are_the_most_similar_other_labels_with_ties_to_the_lower_index(monkeypatch) -> None:
    from learner.xmc import model as xmc_model
    from learner.xmc.model import label_neighbours

    Z = sp.csr_matrix(
        np.array(
            [
                [1, 0, 0, 0],  # 0: nearest 1
                [3, 3, 0, 0],  # 1: as near to 0 as to 2 (cosines are scale-free): the tie goes to 0
                [0, 1, 0, 0],  # 2: nearest 1
                [0, 0, 1, 0],  # 3 and 4: identical
                [0, 0, 2, 0],
                [0, 0, 0, 0],  # 5: no positive document, nobody's neighbour
                [0, 0, 0, 1],  # 6: orthogonal to all: cosine 0 is never a neighbour
            ],
            dtype=np.float32,
        )
    )

    one = label_neighbours(Z, 1)
    two = label_neighbours(Z, 2, n_jobs=2)
    monkeypatch.setattr(xmc_model, "NEIGHBOUR_BLOCK", 7)  # one label per block
    chunked = label_neighbours(Z, 2)

    assert [list(row.indices) for row in one] == [[1], [0], [1], [4], [3], [], []]
    assert [sorted(row.indices) for row in two] == [[1], [0, 2], [1], [4], [3], [], []]
    assert (chunked != two).nnz == 0 and (label_neighbours(Z, 100) != two).nnz == 0  # all positive cosines
    with pytest.raises(ValueError, match="k must be"):
        label_neighbours(Z, 0)


def confusable_problem() -> tuple[sp.csr_matrix, sp.csr_matrix, LabelTree]:
    """8 labels in 4 leaves of 2 (tree order = label ids); labels 0 (leaf 0) and 5 (leaf 2) share feature 8.

    Each label has 10 documents with its own feature (and feature 8 for labels 0 and 5), so PIFA makes
    label 5 the only neighbour of label 0 and the other way round."""
    rows, cols, vals = [], [], []
    for doc in range(80):
        label = doc // 10
        features = [label, 8] if label in (0, 5) else [label]
        rows += [doc] * len(features)
        cols += features
        vals += [1.0 / math.sqrt(len(features))] * len(features)
    X = sp.csr_matrix((vals, (rows, cols)), shape=(80, 10), dtype=np.float32)
    Y = sp.csr_matrix((np.ones(80, np.float32), (np.arange(80), np.arange(80) // 10)), shape=(80, 8))
    tree = LabelTree(
        order=np.arange(8),
        leaf_bounds=np.array([0, 2, 4, 6, 8]),
        depths=[2],
        config=TreeConfig(branching=4, leaf_size=2),
    )
    return X, Y, tree


def test_led_routes_a_document_to_the_leaves_of_its_labels_nearest_labels() -> None:
    from learner.xmc.model import label_neighbours, led_routes

    X, Y, tree = confusable_problem()

    (leaves,) = led_routes(Y, label_neighbours(pifa(X, Y), 1), tree)  # one cluster level: (80, 4)

    expected = np.zeros((80, 4), dtype=bool)
    expected[0:10, 2] = True  # label 0's documents also go to label 5's leaf
    expected[50:60, 0] = True  # and the other way round
    assert np.array_equal(leaves.toarray(), expected)
    with pytest.raises(ValueError, match="columns"):
        led_routes(Y[:, :7], label_neighbours(pifa(X, Y), 1), tree)


def test_led_negatives_teach_a_ranker_to_reject_the_confusable_label() -> None:
    X, Y, tree = confusable_problem()
    config = XRConfig(tree=tree.config, beam=1, negatives="tfn", led_neighbours=1, pifa_weight=0.0, n_jobs=1)
    plain = XRLinear.train(X, Y, config, tree=tree)
    led = XRLinear.train(X, Y, XRConfig.from_dict({**config.to_dict(), "negatives": "tfn+led"}), tree=tree)

    def label5_decision(model: XRLinear) -> float:  # the label-5 ranker on a label-0 document
        layer = model.layers[-1]
        return float((X[0] @ layer.weights[5].T).toarray()[0, 0] + layer.bias[5])

    assert led.train_info["layer1_active_pairs"] == plain.train_info["layer1_active_pairs"] + 20
    assert led.train_info["led_label_pairs"] == 2
    assert label5_decision(plain) > 0 > label5_decision(led)  # without the hard negatives, it fires


def test_led_modes_train_predict_round_trip_and_do_not_depend_on_workers(problem, tmp_path, monkeypatch) -> None:
    from learner.xmc import solver

    monkeypatch.setattr(solver, "MIN_FORK_WORK", 0)  # fork workers even for this small problem
    X, Y = problem
    config = XRConfig.from_dict({**FAST.to_dict(), "negatives": "tfn+man+led", "led_neighbours": 3})
    one = XRLinear.train(X[:300], Y[:300], config)
    two = XRLinear.train(X[:300], Y[:300], XRConfig.from_dict({**config.to_dict(), "n_jobs": 2}))
    man = XRLinear.train(X[:300], Y[:300], FAST)

    for a, b in zip(one.layers, two.layers, strict=True):
        assert (a.weights != b.weights).nnz == 0 and np.array_equal(a.bias, b.bias)
    assert one.train_info["layer2_active_pairs"] > man.train_info["layer2_active_pairs"]
    top, _ = one.predict_topk(X[300:], 1)
    assert float(np.asarray(Y[300:][np.arange(300), top[:, 0]]).mean()) > 0.6  # random: about 2 / 40
    loaded = XRLinear.load(one.save(tmp_path / "led"))
    assert loaded.config == config and loaded.config.led_neighbours == 3
    assert np.array_equal(loaded.predict_topk(X[300:], 5)[0], one.predict_topk(X[300:], 5)[0])
    assert XRConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_a_smaller_negative_beam_routes_fewer_documents_and_still_learns(problem) -> None:
    X, Y = problem
    wide = XRLinear.train(X[:300], Y[:300], FAST)
    narrow = XRLinear.train(X[:300], Y[:300], XRConfig.from_dict({**FAST.to_dict(), "negative_beam": 1}))

    assert narrow.config.training_beam == 1 and wide.config.training_beam == FAST.beam
    deepest = f"layer{len(wide.layers) - 1}_active_pairs"
    assert narrow.train_info[deepest] < wide.train_info[deepest]  # training cost grows with the routed documents
    assert narrow.train_info[deepest] >= 300  # every document still reaches its own labels' nodes
    top, _ = narrow.predict_topk(X[300:], 1, beam=FAST.beam)  # inference keeps the full beam
    assert float(np.asarray(Y[300:][np.arange(300), top[:, 0]]).mean()) > 0.6  # random: about 2 / 40
    with pytest.raises(ValueError, match="negative_beam"):
        XRConfig(negative_beam=-1)


def test_levels_of_few_nodes_can_train_the_layer_below_without_the_beams_negatives(problem) -> None:
    X, Y = problem
    config = XRConfig.from_dict({**FAST.to_dict(), "tree": {**FAST.tree.to_dict(), "branching": 4}, "beam": 3})
    every = XRLinear.train(X[:300], Y[:300], config)
    sizes = every.train_info["level_sizes"]
    assert len(sizes) >= 3 and sizes[0] <= 4 < sizes[1]
    coarse = XRLinear.train(X[:300], Y[:300], dataclasses.replace(config, man_min_parents=sizes[0]))
    none = XRLinear.train(X[:300], Y[:300], dataclasses.replace(config, man_min_parents=max(sizes)))
    tfn = XRLinear.train(X[:300], Y[:300], dataclasses.replace(config, negatives="tfn"))

    # below the first level (few nodes) only the teacher-forced documents; deeper levels keep the beam's
    assert coarse.train_info["layer1_active_pairs"] == tfn.train_info["layer1_active_pairs"]
    assert coarse.train_info["layer1_active_pairs"] < every.train_info["layer1_active_pairs"]
    deepest = f"layer{len(sizes) - 1}_active_pairs"
    assert coarse.train_info[deepest] > tfn.train_info[deepest]
    # above every level's size it is teacher forcing throughout: the very same model
    assert np.array_equal(none.predict_topk(X[300:], 5)[0], tfn.predict_topk(X[300:], 5)[0])
    top, _ = coarse.predict_topk(X[300:], 1)
    assert float(np.asarray(Y[300:][np.arange(300), top[:, 0]]).mean()) > 0.6  # random: about 2 / 40
    with pytest.raises(ValueError, match="man_min_parents"):
        XRConfig(man_min_parents=-1)


def test_a_small_layer_is_trained_in_process_with_the_same_result(problem, monkeypatch) -> None:
    from learner.xmc import solver

    X, Y = problem
    forks: list[int] = []
    real = solver.fork_map
    monkeypatch.setattr(
        solver, "fork_map", lambda f, items, n_jobs, *a, **k: forks.append(n_jobs) or real(f, items, n_jobs, *a, **k)
    )
    config = XRConfig.from_dict({**FAST.to_dict(), "n_jobs": 2})
    small = XRLinear.train(X[:300], Y[:300], config)  # far below MIN_FORK_WORK
    assert forks and set(forks) == {1}
    forks.clear()
    monkeypatch.setattr(solver, "MIN_FORK_WORK", 0)
    forked = XRLinear.train(X[:300], Y[:300], config)
    assert set(forks) == {2}
    for a, b in zip(small.layers, forked.layers, strict=True):
        assert (a.weights != b.weights).nnz == 0 and np.array_equal(a.bias, b.bias)
