from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import learner
import learner.model as model_module
from learner import metrics
from learner.config import HeadConfig
from learner.model import MultiLabelModel, train_and_evaluate
from tests.learner.conftest import make_clustered

CPU = HeadConfig(device="cpu")
FAST = HeadConfig(device="cpu", epochs=20)  # where the quality of the fit does not matter
Data = tuple[np.ndarray, np.ndarray, list[str]]


@pytest.mark.parametrize(
    "config",
    [CPU, HeadConfig(device="cpu", loss="zlpr"), HeadConfig(device="cpu", hidden_dim=16)],
    ids=["linear-bce", "linear-zlpr", "mlp-bce"],
)
def test_training_on_separable_data_reaches_high_f1(config: HeadConfig) -> None:
    X, Y, labels = make_clustered(400, seed=1)

    model = MultiLabelModel.train(X[:300], Y[:300], labels, config)
    decisions = model.predict(X[300:])  # held-out documents

    assert metrics.micro_f1(Y[300:], decisions) > 0.95
    assert metrics.macro_f1(Y[300:], decisions) > 0.95


def test_predict_proba_gives_probabilities_per_label(clustered: Data) -> None:
    X, Y, labels = clustered
    model = MultiLabelModel.train(X, Y, labels, CPU)

    probs = model.predict_proba(X)

    assert probs.shape == (300, 4)
    assert probs.dtype == np.float32
    assert probs.min() >= 0.0 and probs.max() <= 1.0
    assert model.predict_proba(X[:0]).shape == (0, 4)


def test_save_and_load_round_trip_gives_identical_predictions(clustered: Data, tmp_path: Path) -> None:
    X, Y, labels = clustered
    model = MultiLabelModel.train(
        X, Y, labels, HeadConfig(device="cpu", hidden_dim=8, epochs=20), encoder_fingerprint="abc123"
    )
    model.metrics = {"micro_f1": 0.5}

    folder = model.save(tmp_path / "models" / "v1")
    loaded = MultiLabelModel.load(folder, device="cpu")

    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.labels == labels
    assert loaded.config == model.config
    assert loaded.input_dim == 16
    assert loaded.encoder_fingerprint == "abc123"
    assert loaded.metrics == {"micro_f1": 0.5}
    assert loaded.train_info == model.train_info
    saved = json.loads((folder / "config.json").read_text())
    assert saved["versions"]["learner"] == learner.__version__
    assert set(saved["versions"]) == {"learner", "torch", "numpy", "python"}
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "head.safetensors"]
    assert [p.name for p in folder.parent.iterdir()] == ["v1"]  # no temporary folder left behind


def test_save_replaces_an_existing_model(clustered: Data, tmp_path: Path) -> None:
    X, Y, labels = clustered
    first = MultiLabelModel.train(X, Y, labels, HeadConfig(device="cpu", epochs=20, seed=1))
    second = MultiLabelModel.train(X, Y, labels, HeadConfig(device="cpu", epochs=20, seed=2))
    first.save(tmp_path / "model")

    second.save(tmp_path / "model")

    np.testing.assert_array_equal(MultiLabelModel.load(tmp_path / "model").predict_proba(X), second.predict_proba(X))
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_failed_save_leaves_the_previous_model_and_no_debris(
    clustered: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, Y, labels = clustered
    model = MultiLabelModel.train(X, Y, labels, FAST)
    model.save(tmp_path / "model")
    before = (tmp_path / "model" / "head.safetensors").read_bytes()

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model_module, "save_file", crash)
    with pytest.raises(OSError, match="No space left"):
        model.save(tmp_path / "model")

    assert (tmp_path / "model" / "head.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_load_rejects_missing_or_corrupt_folders(clustered: Data, tmp_path: Path) -> None:
    X, Y, labels = clustered
    folder = MultiLabelModel.train(X, Y, labels, FAST).save(tmp_path / "model")

    with pytest.raises(ValueError, match=str(tmp_path / "absent")):
        MultiLabelModel.load(tmp_path / "absent")

    (folder / "head.safetensors").write_bytes((folder / "head.safetensors").read_bytes()[:50])
    with pytest.raises(ValueError, match=r"corrupt model weights .*head\.safetensors"):
        MultiLabelModel.load(folder)

    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"corrupt model config .*config\.json"):
        MultiLabelModel.load(folder)


def test_predict_topk_matches_argsort_of_predict_proba_in_any_chunking(clustered: Data) -> None:
    X, Y, labels = clustered
    model = MultiLabelModel.train(X, Y, labels, HeadConfig(device="cpu", loss="zlpr"))
    probs = model.predict_proba(X)

    indices, values = model.predict_topk(X, 3)
    small_indices, small_values = model.predict_topk(X, 3, chunk_size=7)

    np.testing.assert_array_equal(indices, np.argsort(-probs, axis=1, kind="stable")[:, :3])
    np.testing.assert_allclose(values, np.take_along_axis(probs, indices, axis=1), rtol=1e-6)
    assert indices.dtype == np.int64 and values.dtype == np.float32
    np.testing.assert_array_equal(small_indices, indices)
    np.testing.assert_allclose(small_values, values, rtol=1e-6)  # another matmul blocking: 1 ulp apart
    assert np.all(np.diff(values, axis=1) <= 0)


def test_predict_topk_clips_k_and_rejects_bad_k(clustered: Data) -> None:
    X, Y, labels = clustered
    model = MultiLabelModel.train(X, Y, labels, FAST)

    indices, values = model.predict_topk(X[:5], 10)

    assert indices.shape == values.shape == (5, 4)
    assert sorted(indices[0]) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="k must be a positive integer"):
        model.predict_topk(X, 0)
    assert model.predict_topk(X[:0], 2)[0].shape == (0, 2)


def test_prediction_never_scores_more_than_chunk_size_rows_at_once(
    clustered: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, Y, labels = clustered
    model = MultiLabelModel.train(X, Y, labels, FAST)
    seen: list[int] = []
    forward = model.head.forward

    def spy(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return forward(x)

    monkeypatch.setattr(model.head, "forward", spy)
    model.predict_topk(X, 2, chunk_size=64)
    model.predict_proba(X, chunk_size=64)

    assert seen == [64, 64, 64, 64, 44] * 2


def test_training_is_deterministic_for_a_seed(clustered: Data) -> None:
    X, Y, labels = clustered
    config = HeadConfig(device="cpu", hidden_dim=8, dropout=0.3, epochs=5, seed=3)

    a = MultiLabelModel.train(X, Y, labels, config).predict_proba(X)
    b = MultiLabelModel.train(X, Y, labels, config).predict_proba(X)
    c = MultiLabelModel.train(X, Y, labels, HeadConfig(device="cpu", hidden_dim=8, epochs=5, seed=4)).predict_proba(X)

    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_training_leaves_the_global_torch_rng_alone(clustered: Data) -> None:
    X, Y, labels = clustered
    torch.manual_seed(123)
    expected = torch.rand(3)

    torch.manual_seed(123)
    MultiLabelModel.train(X, Y, labels, HeadConfig(device="cpu", epochs=2))

    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    ("X", "Y", "labels", "message"),
    [
        (np.zeros((3, 4)), np.zeros((2, 2)), ["a", "b"], "X has 3 rows but Y has 2"),
        (np.zeros((3, 4)), np.zeros((3, 3)), ["a", "b"], "Y has 3 columns but 2 labels"),
        (np.zeros((0, 4)), np.zeros((0, 2)), ["a", "b"], "no documents"),
        (np.zeros(4), np.zeros((1, 2)), ["a", "b"], "X must be 2-D"),
        (np.array([[np.nan, 0.0]]), np.zeros((1, 2)), ["a", "b"], "NaN"),
        (np.zeros((1, 2)), np.array([[np.nan, 0.0]]), ["a", "b"], "only 0 and 1"),
        (np.zeros((1, 2)), np.array([[2.0, 0.0]]), ["a", "b"], "only 0 and 1"),
        (np.zeros((1, 2)), np.zeros((1, 2)), ["a", "a"], "duplicate labels"),
        (np.zeros((1, 2)), np.zeros((1, 0)), [], "labels is empty"),
    ],
)
def test_bad_shapes_and_values_raise_value_error(X: np.ndarray, Y: np.ndarray, labels: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MultiLabelModel.train(X, Y, labels, CPU)


def test_predict_rejects_the_wrong_width(clustered: Data) -> None:
    X, Y, labels = clustered
    model = MultiLabelModel.train(X, Y, labels, HeadConfig(device="cpu", epochs=1))

    with pytest.raises(ValueError, match=r"X must have shape \(N, 16\)"):
        model.predict_proba(np.zeros((2, 5), dtype=np.float32))


def test_documents_with_no_labels_and_labels_with_no_positives_are_accepted() -> None:
    X, Y, labels = make_clustered(200)
    Y[:, 3] = 0.0  # a label nobody has used yet
    empty_rows = Y.sum(axis=1) == 0
    assert empty_rows.any()

    model = MultiLabelModel.train(X, Y, labels, CPU)
    probs = model.predict_proba(X)

    assert probs[:, 3].max() < 0.5  # never predicted
    assert (probs[empty_rows] < 0.5).all()  # the "none apply" cluster gets no label
    assert model.train_info["n_documents"] == 200


def test_sparse_and_dense_targets_train_the_same_model(clustered: Data) -> None:
    X, Y, labels = clustered
    config = HeadConfig(device="cpu", epochs=3)

    dense = MultiLabelModel.train(X, Y, labels, config).predict_proba(X)
    sparse = MultiLabelModel.train(X, sp.csr_matrix(Y), labels, config).predict_proba(X)

    np.testing.assert_array_equal(dense, sparse)


def test_train_reports_progress_and_info(clustered: Data) -> None:
    X, Y, labels = clustered
    fractions: list[float] = []

    model = MultiLabelModel.train(X, Y, labels, HeadConfig(device="cpu", epochs=4), on_progress=fractions.append)

    assert fractions == [0.25, 0.5, 0.75, 1.0]
    info = model.train_info
    assert info["n_documents"] == 300 and info["n_labels"] == 4 and info["epochs"] == 4
    assert info["device"] == "cpu" and info["steps"] == 4 * 5
    assert info["seconds"] >= 0 and np.isfinite(info["final_loss"])


def test_train_and_evaluate_stores_validation_metrics(clustered: Data) -> None:
    X, Y, labels = clustered
    fractions: list[float] = []

    model = train_and_evaluate(X, Y, labels, CPU, encoder_fingerprint="fp", on_progress=fractions.append)

    assert set(model.metrics) == {"micro_f1", "macro_f1", "p_at_1", "p_at_3", "n_train", "n_val"}
    assert model.metrics["n_val"] == 60 and model.metrics["n_train"] == 240
    assert model.metrics["micro_f1"] > 0.9
    assert all(0.0 <= model.metrics[key] <= 1.0 for key in ("micro_f1", "macro_f1", "p_at_1", "p_at_3"))
    assert model.train_info["n_documents"] == 300  # the final model saw every document
    assert model.encoder_fingerprint == "fp"
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert len(fractions) == 2 * CPU.epochs


def test_train_and_evaluate_below_ten_documents_trains_on_all_without_metrics() -> None:
    X, Y, labels = make_clustered(9)

    model = train_and_evaluate(X, Y, labels, HeadConfig(device="cpu", epochs=3))

    assert model.metrics == {}
    assert model.train_info["n_documents"] == 9


def test_large_label_sets_densify_targets_batch_by_batch_with_the_same_result(
    clustered: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, Y, labels = clustered
    config = HeadConfig(device="cpu", epochs=3)
    whole = MultiLabelModel.train(X, Y, labels, config).predict_proba(X)

    monkeypatch.setattr(model_module, "DENSE_TARGETS_MAX", 10)
    batched = MultiLabelModel.train(X, sp.csr_matrix(Y), labels, config).predict_proba(X)

    np.testing.assert_array_equal(batched, whole)
