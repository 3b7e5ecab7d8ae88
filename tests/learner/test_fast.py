from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from learner import metrics
from learner.fast import FastTier, FastTierConfig, Inputs

LABELS = ["red", "green", "blue", "rare"]
WORDS = {0: "apple cherry tomato", 1: "leaf grass frog", 2: "sky ocean river"}


def _data(n: int, seed: int, noise: float = 0.0, clusters: int = 3) -> tuple[Inputs, sp.csr_matrix]:
    """Clusters: label 0 for cluster 0, label 1 for cluster 1, label 2 for clusters 1 and 2, label 3 ("rare") for
    cluster 3, which only exists with `clusters=4`. With `noise`, each of labels 0-2 is flipped with that
    probability."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, clusters, size=n)
    centres = np.eye(4, 16) * 4.0
    emb = (centres[cluster] + rng.normal(size=(n, 16))).astype(np.float32)
    texts = [f"{WORDS.get(c, 'stone sand rock')} {' '.join(rng.choice(['the', 'a', 'some'], size=3))}" for c in cluster]
    Y = np.zeros((n, 4))
    Y[cluster == 0, 0] = 1
    Y[cluster == 1, 1] = 1
    Y[np.isin(cluster, [1, 2]), 2] = 1
    Y[cluster == 3, 3] = 1
    flip = rng.random((n, 3)) < noise
    Y[:, :3] = np.where(flip, 1 - Y[:, :3], Y[:, :3])
    return Inputs(texts=texts, embeddings=emb), sp.csr_matrix(Y)


def test_flat_head_on_embeddings_learns_and_round_trips(tmp_path):
    train, y_train = _data(300, 0)
    test, y_test = _data(200, 1)
    config = FastTierConfig(features="embeddings")
    model = FastTier.train(Inputs(embeddings=train.embeddings), y_train, LABELS, config)
    assert model.uses_embeddings and not model.uses_texts
    pred = model.predict(Inputs(embeddings=test.embeddings))
    assert metrics.micro_f1(y_test, pred) > 0.95
    idx, probs = model.predict_topk(Inputs(embeddings=test.embeddings), 2)
    assert idx.shape == (200, 2) and np.all(np.diff(probs, axis=1) <= 0) and probs.min() >= 0 and probs.max() <= 1
    assert set(model.metrics) >= {"micro_f1", "macro_f1", "P@1"}
    model.save(tmp_path / "m")
    again = FastTier.load(tmp_path / "m")
    idx2, probs2 = again.predict_topk(Inputs(embeddings=test.embeddings), 2)
    assert np.array_equal(idx, idx2) and np.allclose(probs, probs2)
    assert again.decision == model.decision


def test_calibrated_scores_track_observed_frequencies():
    train, y_train = _data(1500, 2, noise=0.2)
    model = FastTier.train(Inputs(embeddings=train.embeddings), y_train, LABELS, FastTierConfig(features="embeddings"))
    test, y_test = _data(3000, 3, noise=0.2)
    idx, probs = model.predict_topk(Inputs(embeddings=test.embeddings), 4)
    hits = np.take_along_axis(y_test.toarray(), idx, axis=1)
    checked = 0
    for low in np.arange(0.0, 1.0, 0.2):  # reliability: in every well-populated band, frequency ~ probability
        band = (probs >= low) & (probs < low + 0.2)
        if band.sum() >= 200:
            assert abs(hits[band].mean() - probs[band].mean()) < 0.1, low
            checked += 1
    assert checked >= 2


def test_scoring_out_of_gpu_memory_halves_the_chunk_and_keeps_the_size(monkeypatch):
    import torch

    train, y_train = _data(300, 0)
    test, _ = _data(40, 1)
    model = FastTier.train(Inputs(embeddings=train.embeddings), y_train, LABELS, FastTierConfig(features="embeddings"))
    expected_idx, expected_probs = model.predict_topk(Inputs(embeddings=test.embeddings), 2, chunk_size=32)
    assert model.flat is not None
    forward = model.flat.forward
    rows: list[int] = []

    def small_gpu_forward(xs_t, xd_t):  # a GPU too small for more than 4 documents' scores
        rows.append(int(xd_t.shape[0]))
        if rows[-1] > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return forward(xs_t, xd_t)

    monkeypatch.setattr(model.flat, "forward", small_gpu_forward)

    idx, probs = model.predict_topk(Inputs(embeddings=test.embeddings), 2, chunk_size=32)

    assert np.array_equal(idx, expected_idx) and np.allclose(probs, expected_probs, atol=1e-6)
    assert rows[:4] == [32, 16, 8, 4] and set(rows[4:]) == {4} and model.chunk_cap == 4
    rows.clear()
    model.predict_topk(Inputs(embeddings=test.embeddings[:6]), 2)
    assert rows == [4, 2]  # the next call starts from the size that fit


def test_external_validation_is_used_for_early_stopping_and_rules():
    train, y_train = _data(200, 4)
    val, y_val = _data(100, 5)
    model = FastTier.train(
        Inputs(embeddings=train.embeddings),
        y_train,
        LABELS,
        FastTierConfig(features="embeddings", C_grid=[0.01, 1.0, 100.0]),
        validation=(Inputs(embeddings=val.embeddings), y_val),
    )
    scores = model.train_info["validation_f1_by_C"]
    assert set(scores) == {"0.01", "1", "100"}
    assert float(max(scores, key=scores.get)) == model.config.C  # the best C on validation is kept
    assert model.metrics["n_val"] == 100
    assert set(model.rules) == {"micro_f1", "macro_f1", "per_label"}


def test_tiny_training_sets_skip_tuning():
    train, y_train = _data(12, 6)
    model = FastTier.train(Inputs(embeddings=train.embeddings), y_train, LABELS, FastTierConfig(features="embeddings"))
    assert model.rules["micro_f1"].threshold == 0.5 and model.metrics == {}


def test_resolve_picks_flat_or_tree_by_label_count():
    config = FastTierConfig(flat_max_labels=100)
    assert (config.resolve(28).head, config.resolve(28).features) == ("flat", "both")
    assert (config.resolve(41_218).head, config.resolve(41_218).features) == ("tree", "tfidf")
    assert FastTierConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"features": "words"}, "features must be one of"),
        ({"head": "tree", "features": "both"}, "tree head works on TF-IDF"),
        ({"loss": "hinge"}, "loss must be one of"),
        ({"max_iter": 0}, "max_iter"),
        ({"C_grid": []}, "C_grid"),
        ({"C": -1.0}, "C must be"),
    ],
)
def test_bad_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FastTierConfig(**kwargs)


def test_bad_inputs_are_refused():
    train, y_train = _data(20, 7)
    with pytest.raises(ValueError, match="need the documents' embeddings"):
        FastTier.train(Inputs(texts=train.texts), y_train, LABELS, FastTierConfig(features="embeddings"))
    with pytest.raises(ValueError, match="shape"):
        FastTier.train(train, y_train[:5], LABELS, FastTierConfig(features="embeddings"))
    with pytest.raises(ValueError, match="texts but"):
        Inputs(texts=["a"], embeddings=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="duplicates"):
        FastTier.train(train, y_train, ["a", "a", "b", "c"], FastTierConfig(features="embeddings"))


def test_incremental_update_learns_a_new_label_and_keeps_the_old_ones():
    train, y_train = _data(300, 8)  # clusters 0-2: "rare" does not exist yet
    model = FastTier.train(
        Inputs(embeddings=train.embeddings), y_train[:, :3], LABELS[:3], FastTierConfig(features="embeddings")
    )
    new, y_new = _data(120, 9, clusters=4)  # experts meet a new kind of document and a new label
    replay = (Inputs(embeddings=train.embeddings[:60]), y_train[:60])
    updated = model.update(Inputs(embeddings=new.embeddings), y_new, LABELS, replay=replay)
    assert updated.labels == LABELS and model.labels == LABELS[:3]  # the old model is unchanged
    test, y_test = _data(400, 10, clusters=4)
    pred = updated.predict(Inputs(embeddings=test.embeddings)).toarray()
    truth = y_test.toarray()
    assert metrics.micro_f1(truth[:, 3:], pred[:, 3:]) > 0.9  # the new label is learned
    assert metrics.micro_f1(truth[:, :3], pred[:, :3]) > 0.9  # the old ones are kept
    assert updated.train_info["incremental"] is True


def test_update_keeps_tuned_rules_by_label_name_and_retunes_only_on_validation():
    train, y_train = _data(1000, 20, noise=0.1)
    config = FastTierConfig(features="embeddings")
    model = FastTier.train(Inputs(embeddings=train.embeddings), y_train, LABELS, config)
    assert model.rules["macro_f1"].per_label  # enough validation positives for per-label thresholds
    reordered = LABELS[::-1]  # the platform may list labels in another order next time
    y_reordered = y_train[:, ::-1]
    old = (Inputs(embeddings=train.embeddings[100:]), y_reordered[100:])
    updated = model.update(Inputs(embeddings=train.embeddings[:100]), y_reordered[:100], reordered, replay=old)
    assert updated.rules["micro_f1"].threshold == model.rules["micro_f1"].threshold
    for label, threshold in model.rules["macro_f1"].per_label.items():
        assert updated.rules["macro_f1"].per_label[reordered.index(LABELS[label])] == threshold
    test, y_test = _data(300, 21, noise=0.1)
    pred = updated.predict(Inputs(embeddings=test.embeddings)).toarray()[:, ::-1]  # back to LABELS order
    assert metrics.micro_f1(y_test.toarray(), pred) > 0.8
    validation = (Inputs(embeddings=test.embeddings), y_test[:, ::-1])
    retuned = model.update(
        Inputs(embeddings=train.embeddings[:100]), y_reordered[:100], reordered, validation=validation
    )
    assert retuned.metrics["n_val"] == 300.0


def test_update_refuses_to_drop_labels():
    train, y_train = _data(40, 11)
    model = FastTier.train(Inputs(embeddings=train.embeddings), y_train, LABELS, FastTierConfig(features="embeddings"))
    with pytest.raises(ValueError, match="drop 1 label"):
        model.update(Inputs(embeddings=train.embeddings), y_train[:, :3], LABELS[:3])


def test_tfidf_and_embeddings_together_round_trip(tmp_path):
    train, y_train = _data(300, 12, noise=0.05)
    test, y_test = _data(200, 13)
    config = FastTierConfig(features="both", tfidf={"min_df": 1})
    model = FastTier.train(train, y_train, LABELS, config)
    assert model.uses_texts and model.uses_embeddings
    assert metrics.micro_f1(y_test, model.predict(test)) > 0.9
    with pytest.raises(ValueError, match="reads texts"):
        model.predict_topk(Inputs(embeddings=test.embeddings), 2)
    model.save(tmp_path / "both")
    again = FastTier.load(tmp_path / "both")
    first, second = model.predict_topk(test, 3), again.predict_topk(test, 3)
    assert np.array_equal(first[0], second[0]) and np.allclose(first[1], second[1])


def test_text_only_model_learns_from_words():
    train, y_train = _data(300, 14)
    test, y_test = _data(100, 15)
    model = FastTier.train(
        Inputs(texts=train.texts), y_train, LABELS, FastTierConfig(features="tfidf", tfidf={"min_df": 1})
    )
    assert metrics.micro_f1(y_test, model.predict(Inputs(texts=test.texts))) > 0.95


def test_documents_without_known_words_still_get_predictions():
    train, y_train = _data(100, 16)
    model = FastTier.train(
        Inputs(texts=train.texts), y_train, LABELS, FastTierConfig(features="tfidf", tfidf={"min_df": 1})
    )
    idx, probs = model.predict_topk(Inputs(texts=["sky ocean", "unheard words", "xyzzy"]), 2)
    assert idx.shape == (3, 2) and np.isfinite(probs).all()
    assert np.array_equal(idx[1], idx[2])  # two empty feature rows: the priors decide, identically


def _tibkat_sample() -> tuple[Inputs, sp.csr_matrix, Inputs, sp.csr_matrix, list[str]]:
    import gzip
    import json
    from pathlib import Path

    from learner.data import multi_hot

    path = Path(__file__).resolve().parents[1] / "data" / "tibkat-sample.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines]
    labels = sorted({name for record in records for name in record["labels"]})
    train = [r for r in records if r["split"] == "train"]
    dev = [r for r in records if r["split"] == "dev"]
    return (
        Inputs(texts=[r["text"] for r in train]),
        multi_hot([r["labels"] for r in train], labels),
        Inputs(texts=[r["text"] for r in dev]),
        multi_hot([r["labels"] for r in dev], labels),
        labels,
    )


def test_large_label_sets_get_a_tree_with_label_name_matching(tmp_path):
    train, y_train, dev, y_dev, labels = _tibkat_sample()
    assert len(labels) > 1000
    model = FastTier.train(train, y_train, labels, FastTierConfig(flat_max_labels=500, tfidf={"min_df": 1}))
    assert (model.config.head, model.config.features) == ("tree", "tfidf")
    assert model.matcher is not None
    idx, probs = model.predict_topk(dev, 5)
    p_at_5 = metrics.precision_at_k(y_dev, idx, 5)
    random_p_at_5 = float(y_dev.sum()) / (y_dev.shape[0] * y_dev.shape[1])
    assert p_at_5 > 20 * random_p_at_5
    assert np.all(np.diff(probs, axis=1) <= 1e-6) and probs.min() >= 0 and probs.max() <= 1
    assert model.predict(dev).shape == (500, len(labels))
    model.save(tmp_path / "tree")
    again = FastTier.load(tmp_path / "tree")
    idx2, probs2 = again.predict_topk(dev, 5)
    assert np.array_equal(idx, idx2) and np.allclose(probs, probs2)


def test_a_tree_trained_on_many_documents_uses_the_large_data_settings_unless_its_config_sets_them(monkeypatch):
    import learner.xmc.config as xmc_config

    train, y_train, _, _, labels = _tibkat_sample()
    train, y_train = train.take(np.arange(600)), y_train[:600]
    config = FastTierConfig(flat_max_labels=500, tree={"n_jobs": 1})
    small = FastTier.train(train, y_train, labels, config)
    monkeypatch.setattr(xmc_config, "LARGE_DATA_DOCUMENTS", 100)  # these 600 documents count as "many"
    large = FastTier.train(train, y_train, labels, config)
    mine = FastTier.train(
        train,
        y_train,
        labels,
        dataclasses.replace(
            config,
            tfidf={"ngram_max": 2},
            tree={"n_jobs": 1, "beam": 4},
            lexical_weight=0.0,
            large_data_neighbour_weight=0.0,
        ),
    )

    assert (small.featurizer.config.ngram_max, small.featurizer.config.min_df) == (2, 2)  # TfidfConfig's defaults
    assert small.tree.config.training_beam == 10 and not small.train_info["large_data_settings"]
    assert (large.featurizer.config.ngram_max, large.featurizer.config.min_df) == (1, 3)  # unigrams, min_df 3
    assert large.featurizer.config.stem and not small.featurizer.config.stem
    assert large.featurizer.title is not None and small.featurizer.title is None  # the title block
    assert large.tree.config.man_min_parents == xmc_config.LARGE_DATA_XR["man_min_parents"] > 0
    assert large.tree.config.training_beam == 5 and large.train_info["large_data_settings"]
    assert large.featurizer.n_features < small.featurizer.n_features
    assert (mine.featurizer.config.ngram_max, mine.featurizer.config.min_df) == (2, 3)  # the config's own wins
    assert mine.tree.config.beam == 4 and mine.tree.config.training_beam == 5
    # inference: the large-data path exponent, PIFA weight and label-name blend; a blend of 0 stays off
    assert (small.tree.config.path_exponent, small.tree.config.pifa_weight, small.config.lexical_weight) == (
        0.4,
        0.05,
        0.1,
    )
    defaults = FastTierConfig()
    assert (large.tree.config.path_exponent, large.tree.config.pifa_weight) == (
        xmc_config.LARGE_DATA_XR["path_exponent"],
        xmc_config.LARGE_DATA_XR["pifa_weight"],
    )
    assert large.config.lexical_weight == defaults.large_data_lexical_weight != defaults.lexical_weight
    assert mine.config.lexical_weight == 0.0 and mine.matcher is None
    # the neighbour vote: only for large trees, and a weight of 0 switches it off
    assert small.voter is None and small.config.neighbour_weight == 0.0
    assert large.voter is not None and large.config.neighbour_weight == defaults.large_data_neighbour_weight > 0
    assert mine.voter is None and mine.config.neighbour_weight == 0.0


def test_the_neighbour_vote_of_a_large_tree_is_saved_and_learns_from_updates(monkeypatch, tmp_path):
    import learner.xmc.config as xmc_config

    train, y_train, dev, _, labels = _tibkat_sample()
    monkeypatch.setattr(xmc_config, "LARGE_DATA_DOCUMENTS", 100)
    half = len(train) // 2
    first = train.take(np.arange(half))
    config = FastTierConfig(flat_max_labels=500, tfidf={"min_df": 1}, tree={"n_jobs": 1})
    model = FastTier.train(first, y_train[:half], labels, config)
    without = FastTier.train(first, y_train[:half], labels, dataclasses.replace(config, large_data_neighbour_weight=0))

    assert model.voter is not None and without.voter is None
    idx, _ = model.predict_topk(dev, 5)
    idx_without, _ = without.predict_topk(dev, 5)
    assert not np.array_equal(idx, idx_without)  # the vote changes the ranking (its gain: bench_xmc_honest.py)
    again = FastTier.load(model.save(tmp_path / "model"))
    assert again.voter is not None and np.array_equal(again.predict_topk(dev, 5)[0], idx)

    rest = train.take(np.arange(half, len(train)))
    updated = model.update(rest, y_train[half:], labels, replay=(first, y_train[:half]))
    assert updated.voter.n_documents == model.voter.n_documents + len(rest)  # replayed documents are not added twice
    # an update document asking for itself is its own nearest neighbour: its labels come first
    column = {name: j for j, name in enumerate(labels)}
    own = updated.voter.score(updated.featurizer.transform(list(rest.texts[:3])), k=1).toarray()
    truth = y_train[half : half + 3][:, [column[name] for name in updated.labels]].toarray()
    assert np.array_equal(own > 0, truth > 0)


def test_tree_models_update_incrementally_with_labels_never_seen_before(tmp_path):
    train, y_train, dev, y_dev, labels = _tibkat_sample()
    half = len(train) // 2
    first = train.take(np.arange(half))
    seen = np.flatnonzero(np.asarray(y_train[:half].sum(axis=0)).ravel() > 0)
    old_labels = [labels[j] for j in seen]
    config = FastTierConfig(flat_max_labels=500, tfidf={"min_df": 1})
    model = FastTier.train(first, y_train[:half][:, seen], old_labels, config)
    rest = train.take(np.arange(half, len(train)))

    updated = model.update(rest, y_train[half:], labels, replay=(first, y_train[:half]))

    assert updated.labels[: len(old_labels)] == old_labels and sorted(updated.labels) == sorted(labels)
    assert updated.train_info["incremental"] is True and model.labels == old_labels
    column = {name: j for j, name in enumerate(labels)}
    y_dev_updated = y_dev[:, [column[name] for name in updated.labels]]  # dev truth in the model's order
    idx, _ = updated.predict_topk(dev, 5)
    new_hits = (idx >= len(old_labels)) & (np.take_along_axis(y_dev_updated.toarray(), idx, axis=1) > 0)
    assert new_hits.sum() >= 50  # labels the old model could not know are found in dev
    old_idx, _ = model.predict_topk(dev, 5)
    y_dev_old = y_dev[:, seen]
    old_p5 = float(np.take_along_axis(y_dev_old.toarray(), old_idx, axis=1).sum()) / (5 * len(dev))
    assert metrics.precision_at_k(y_dev_updated, idx, 5) > old_p5 + 0.02
    again = FastTier.load(updated.save(tmp_path / "updated"))
    assert np.array_equal(again.predict_topk(dev, 5)[0], idx)


def test_small_training_sets_are_tuned_by_cross_validation_on_every_document():
    train, y_train = _data(60, 21, noise=0.15)
    test, y_test = _data(2000, 22, noise=0.15)
    config = FastTierConfig(features="embeddings")

    model = FastTier.train(Inputs(embeddings=train.embeddings), y_train, LABELS, config)
    untuned = FastTier.train(
        Inputs(embeddings=train.embeddings),
        y_train,
        LABELS,
        FastTierConfig(features="embeddings", min_tune_documents=61),
    )
    holdout = FastTier.train(
        Inputs(embeddings=train.embeddings), y_train, LABELS, FastTierConfig(features="embeddings", cv_max_documents=0)
    )

    assert model.train_info["tuning"] == "5-fold cross-validation"
    assert model.metrics["n_val"] == 60.0 and holdout.metrics["n_val"] == 6.0  # every document vs a tenth
    assert set(model.train_info["validation_f1_by_C"]) == {"1", "4", "16"}
    assert untuned.rules["micro_f1"].threshold == 0.5 and untuned.platt == (1.0, 0.0)
    test_inputs = Inputs(embeddings=test.embeddings)
    f1 = {name: metrics.micro_f1(y_test, m.predict(test_inputs)) for name, m in [("cv", model), ("untuned", untuned)]}
    assert f1["cv"] > f1["untuned"] + 0.01  # here the tuned rule adds the at-least-one-label fallback
    again = FastTier.train(Inputs(embeddings=train.embeddings), y_train, LABELS, config)
    assert again.rules["micro_f1"] == model.rules["micro_f1"]  # seeded folds: reproducible


@pytest.mark.parametrize("head", ["flat", "tree"])
def test_pre_tick_evidence_comes_only_from_the_documents_marked_as_evidence(head: str) -> None:
    # An adapted encoder saw most training documents: the tick curve must count only those it did not (flat heads
    # tune by cross-validation, trees on a held-out part; both must honour the mask).
    rng = np.random.default_rng(5)
    n, n_labels, dim = 120, 6, 8
    rows = rng.integers(0, n_labels, n)
    Y = sp.csr_matrix((np.ones(n), (np.arange(n), rows)), shape=(n, n_labels))
    X = (np.eye(n_labels, dim)[rows] * 2 + rng.normal(scale=0.5, size=(n, dim))).astype(np.float32)
    texts = [f"w{label} filler{i % 5}" for i, label in enumerate(rows)]
    labels = [f"l{j}" for j in range(n_labels)]
    config = FastTierConfig(head=head, features="tfidf" if head == "tree" else "both", lexical_weight=0.0)
    evidence = np.zeros(n, dtype=bool)
    evidence[:30] = True
    inputs = Inputs(texts=texts, embeddings=X)

    everything = FastTier.train(inputs, Y, labels, config)
    marked = FastTier.train(inputs, Y, labels, config, evidence=evidence)
    nothing = FastTier.train(inputs, Y, labels, config, evidence=np.zeros(n, dtype=bool))

    held = everything.tick_curve["documents"]
    assert held == (n if head == "flat" else round(config.resolve(n_labels).val_fraction * n))
    assert 0 < marked.tick_curve["documents"] <= 30 and marked.tick_curve["documents"] < held
    assert marked.tick_curve["positives"] == marked.tick_curve["documents"]  # one label per document here
    assert nothing.tick_curve["documents"] == 0 and nothing.tick_curve["ticked"][1] == 0
    assert marked.rules == everything.rules  # calibration and rules still use every document
    with pytest.raises(ValueError, match="evidence must be"):
        FastTier.train(inputs, Y, labels, config, evidence=evidence[:10])
