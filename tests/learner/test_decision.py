from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from learner import metrics
from learner.decision import DecisionRule, apply_platt, fit_platt, top_k_rule, tune_rule


def _brute_force(idx, scores, truth, objective, fallback):
    """Reference: evaluate every grid threshold by building the prediction matrix."""
    best = (-1.0, None)
    for j in range(1, 101):
        rule = DecisionRule(threshold=j / 100, at_least_one=fallback)
        pred = rule.apply(idx, scores, truth.shape[1])
        value = metrics.micro_f1(truth, pred) if objective == "micro_f1" else metrics.macro_f1(truth, pred)
        if value >= best[0] - 1e-12:
            best = (value, j / 100)
    return best


def test_apply_thresholds_fallback_and_per_label():
    idx = np.array([[2, 0, 1], [1, 2, 0]])
    scores = np.array([[0.9, 0.4, 0.1], [0.3, 0.2, 0.1]])
    rule = DecisionRule(threshold=0.35)
    assert rule.apply(idx, scores, 3).toarray().tolist() == [[1, 0, 1], [0, 0, 0]]
    fallback = DecisionRule(threshold=0.35, at_least_one=True)
    assert fallback.apply(idx, scores, 3).toarray().tolist() == [[1, 0, 1], [0, 1, 0]]
    per_label = DecisionRule(threshold=0.35, per_label={0: 0.5, 2: 0.15})
    assert per_label.apply(idx, scores, 3).toarray().tolist() == [[0, 0, 1], [0, 0, 1]]
    assert top_k_rule(2).apply(idx, scores, 3).toarray().tolist() == [[1, 0, 1], [0, 1, 1]]


def test_padding_is_never_predicted():
    idx = np.array([[1, -1]])
    scores = np.array([[0.2, 0.0]])
    rule = DecisionRule(threshold=0.1, at_least_one=True)
    assert rule.apply(idx, scores, 2).toarray().tolist() == [[0, 1]]


def test_tuned_threshold_is_the_best_on_a_hand_built_case():
    # Doc 0 has labels {0, 1}, doc 1 has {2}. Scores: doc 0: l0 .8, l1 .3, l2 .2; doc 1: l2 .6, l0 .5, l1 .1
    idx = np.array([[0, 1, 2], [2, 0, 1]])
    scores = np.array([[0.8, 0.3, 0.2], [0.6, 0.5, 0.1]])
    truth = sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 1]]))
    # t in (0.2, 0.3]: predicts l0, l1 | l2, l0 -> TP 3, FP 1, FN 0 -> micro-F1 6/7; any t > 0.3 loses l1.
    rule = tune_rule(idx, scores, truth, objective="micro_f1")
    assert rule.threshold == pytest.approx(0.3)
    assert rule.validation_score == pytest.approx(6 / 7)
    assert rule.apply(idx, scores, 3).toarray().tolist() == [[1, 1, 0], [1, 0, 1]]


@pytest.mark.parametrize("objective", ["micro_f1", "macro_f1"])
def test_tuning_agrees_with_brute_force_on_random_data(objective):
    rng = np.random.default_rng(0)
    n_docs, n_labels = 60, 7
    truth = sp.csr_matrix((rng.random((n_docs, n_labels)) < 0.25).astype(float))
    raw = np.clip(truth.toarray() * 0.35 + rng.random((n_docs, n_labels)) * 0.65, 0, 1)
    idx = np.argsort(-raw, axis=1)
    scores = np.take_along_axis(raw, idx, axis=1)
    rule = tune_rule(idx, scores, truth, objective=objective)
    expected_value, _ = max(_brute_force(idx, scores, truth, objective, fb) for fb in (False, True))
    assert rule.validation_score == pytest.approx(expected_value)
    pred = rule.apply(idx, scores, n_labels)
    achieved = metrics.micro_f1(truth, pred) if objective == "micro_f1" else metrics.macro_f1(truth, pred)
    assert achieved == pytest.approx(expected_value)


def test_fallback_is_chosen_when_every_document_has_a_label():
    # Each doc has exactly one label, always ranked first, but with low scores: the fallback wins.
    idx = np.array([[0, 1], [1, 0], [0, 1]])
    scores = np.array([[0.2, 0.1], [0.15, 0.1], [0.3, 0.25]])
    truth = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 0]]))
    rule = tune_rule(idx, scores, truth, objective="micro_f1")
    assert rule.at_least_one is True
    assert rule.validation_score == pytest.approx(1.0)


def test_per_label_thresholds_only_for_labels_with_enough_positives():
    idx = np.array([[0, 1]] * 6)
    scores = np.array([[0.9, 0.2], [0.8, 0.25], [0.3, 0.22], [0.2, 0.21], [0.1, 0.24], [0.1, 0.1]])
    truth = sp.csr_matrix(np.array([[1, 0], [1, 1], [0, 1], [0, 1], [0, 1], [0, 0]]))
    rule = tune_rule(idx, scores, truth, objective="micro_f1", per_label_min_positives=3)
    assert set(rule.per_label) == {1}  # label 0 has 2 positives, label 1 has 4
    assert rule.per_label[1] == pytest.approx(0.21)


def test_rule_round_trips_through_json():
    rule = DecisionRule(threshold=0.31, at_least_one=True, per_label={3: 0.2}, objective="macro_f1")
    assert DecisionRule.from_dict(rule.to_dict()) == rule
    with pytest.raises(ValueError, match="invalid decision rule"):
        DecisionRule.from_dict({"threshold": "x"})


def test_platt_calibrates_shifted_scores():
    rng = np.random.default_rng(1)
    true_p = rng.random(20_000)
    y = (rng.random(20_000) < true_p).astype(float)
    shifted = 1 / (1 + np.exp(-(2.0 * np.log(true_p / (1 - true_p)) + 1.5)))  # overconfident and biased
    a, b = fit_platt(shifted, y)
    calibrated = apply_platt(shifted, a, b)
    for low in (0.1, 0.5, 0.8):
        band = (calibrated >= low) & (calibrated < low + 0.1)
        assert y[band].mean() == pytest.approx(calibrated[band].mean(), abs=0.03)
    assert np.all(np.diff(calibrated[np.argsort(shifted)]) >= 0)  # ranking kept


def test_platt_identity_when_one_class_and_bad_input():
    assert fit_platt([0.2, 0.7], [1, 1]) == (1.0, 0.0)
    with pytest.raises(ValueError):
        fit_platt([], [])


@pytest.mark.parametrize(
    "idx,scores,message",
    [
        (np.zeros((2, 2), dtype=int), np.zeros((2, 3)), "same shape"),
        (np.zeros((2, 2), dtype=int), np.full((2, 2), 1.5), "probabilities"),
        (np.zeros((2, 2)), np.zeros((2, 2)), "integer"),
    ],
)
def test_bad_shortlists_raise(idx, scores, message):
    with pytest.raises(ValueError, match=message):
        DecisionRule().apply(idx, scores, 3)


def test_a_remapped_rule_moves_per_label_thresholds_to_the_new_indices() -> None:
    rule = DecisionRule(threshold=0.4, per_label={0: 0.2, 2: 0.7}, objective="macro_f1")
    moved = rule.remapped(np.array([2, 0, 1]))  # old label 0 is now 2, old 2 is now 1
    assert moved.per_label == {2: 0.2, 1: 0.7} and moved.threshold == 0.4 and moved.objective == "macro_f1"
    idx = np.array([[1, 2]])
    scores = np.array([[0.65, 0.25]])
    assert moved.apply(idx, scores, 3).toarray().tolist() == [[0, 0, 1]]  # 0.65 < 0.7 for label 1; 0.25 >= 0.2
    assert DecisionRule(threshold=0.3).remapped(np.array([1, 0])) == DecisionRule(threshold=0.3)
