from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from learner import metrics
from learner.decision import (
    PRETICK_CONFIDENCE,
    DecisionRule,
    apply_platt,
    curve_add,
    fit_platt,
    precision_lower_bound,
    pretick_threshold,
    tick_curve,
    tick_stats,
    top_k_rule,
    tune_rule,
)


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


# --- pre-ticks under a precision floor ----------------------------------------------------------------------------
def _curve(pairs, *, positives=0, documents=0):
    """A tick curve from (probability, right) pairs, built by hand (no library code)."""
    ticked = [sum(1 for p, _ in pairs if p >= j / 100 - 1e-9) for j in range(101)]
    correct = [sum(1 for p, right in pairs if right and p >= j / 100 - 1e-9) for j in range(101)]
    return {"grid": 100, "ticked": ticked, "correct": correct, "positives": positives, "documents": documents}


# 10 entries at 0.9 (9 right), 10 at 0.7 (5 right), 10 at 0.59 (none right): ticks at >= 0.60 are right 14 / 20.
FLOOR_CASE = [(0.9, i < 9) for i in range(10)] + [(0.7, i < 5) for i in range(10)] + [(0.59, False)] * 10


def test_tick_curve_counts_ticks_and_right_ticks_per_threshold():
    # Doc 0 (gold {0, 2}): l0 .8, l1 .3, l2 .295 (float32), slot empty; doc 1 (gold {1}): l1 .5, l0 .05, l2 0.
    idx = np.array([[0, 1, 2, -1], [1, 0, 2, -1]])
    probs = np.array([[0.8, 0.3, 0.295, 0.0], [0.5, 0.05, 0.0, 0.0]], dtype=np.float32)
    truth = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0]]))
    curve = tick_curve(idx, probs, truth)
    assert set(curve) == {"grid", "ticked", "correct", "positives", "documents"}
    assert (curve["grid"], curve["positives"], curve["documents"]) == (100, 3, 2)
    assert len(curve["ticked"]) == len(curve["correct"]) == 101
    assert curve["ticked"][0] == 6 and curve["correct"][0] == 3  # every filled slot; padding never counts
    assert (curve["ticked"][1], curve["correct"][1]) == (5, 3)  # the filled 0.0 drops out
    assert (curve["ticked"][5], curve["correct"][5]) == (5, 3)  # float32 0.05 is ticked at 0.05 (just below it)
    assert (curve["ticked"][6], curve["correct"][6]) == (4, 3)
    assert (curve["ticked"][29], curve["correct"][29]) == (4, 3)
    assert (curve["ticked"][30], curve["correct"][30]) == (3, 2)  # 0.295 < 0.30
    assert (curve["ticked"][31], curve["correct"][31]) == (2, 2)
    assert (curve["ticked"][50], curve["correct"][50]) == (2, 2)
    assert (curve["ticked"][51], curve["correct"][51]) == (1, 1)
    assert (curve["ticked"][80], curve["correct"][80]) == (1, 1)
    assert (curve["ticked"][81], curve["correct"][81]) == (0, 0)
    assert json.loads(json.dumps(curve)) == curve


def test_pretick_threshold_is_the_lowest_threshold_above_the_floor_everywhere_higher():
    # confidence=0: the point estimate of each threshold's precision decides (the default asks for a lower bound).
    curve = _curve(FLOOR_CASE)
    assert pretick_threshold(curve, 0.7, confidence=0) == 0.6  # >= 0.60: 14/20; >= 0.59: 14/30
    assert pretick_threshold(curve, 0.8, confidence=0) == 0.71  # >= 0.71: 9/10; >= 0.70: 14/20
    assert pretick_threshold(curve, 0.95, confidence=0) is None  # 9/10 at best
    assert pretick_threshold(curve, 0.45, confidence=0) == 0.01  # >= 0.01: 14/30 = 0.467
    # A dip above the candidate rules it out: 5 wrong ticks at 0.95 make >= 0.91 right 0 of 5 and >= 0.9 9 of 15.
    dipped = _curve(FLOOR_CASE + [(0.95, False)] * 5)
    assert pretick_threshold(dipped, 0.6, confidence=0) is None
    # ... unless they are too few to judge (min_ticks=6): >= 0.91 is then ignored, >= 0.71 is right 9/15 = 0.6
    # and >= 0.70 14/25 = 0.56.
    assert pretick_threshold(dipped, 0.6, min_ticks=6, confidence=0) == 0.71
    assert pretick_threshold(_curve([(0.9, True)] * 4), 0.7, confidence=0) is None  # 4 ticks: too few to say anything


def test_pretick_threshold_needs_enough_ticks_at_the_threshold_itself():
    # 3 right ticks at 0.99 and 6 at 0.5 (3 right): only thresholds <= 0.50 have 5+ ticks, right 6/9 = 0.667;
    # above, 3 ticks are too few to pre-tick on, however right they are.
    curve = _curve([(0.99, True)] * 3 + [(0.5, i < 3) for i in range(6)])
    assert pretick_threshold(curve, 0.6, confidence=0) == 0.01
    assert pretick_threshold(curve, 0.7, confidence=0) is None


def test_a_threshold_needs_enough_evidence_to_be_trusted_at_the_default_confidence():
    # 9 of 10 ticks right, all at 0.9: the point estimate (0.9) clears a 0.7 floor at every threshold, but 10 ticks
    # cannot show it with 90 % confidence (Clopper-Pearson lower bound 0.66); 45 of 50 can (0.82).
    few = _curve([(0.9, i < 9) for i in range(10)])
    assert pretick_threshold(few, 0.7, confidence=0) == 0.01
    assert PRETICK_CONFIDENCE == 0.95 and pretick_threshold(few, 0.7) is None
    many = _curve([(0.9, i % 10 != 0) for i in range(50)])
    assert pretick_threshold(many, 0.7) == 0.01
    # exactly at the floor is never shown to clear it, however many ticks
    assert pretick_threshold(_curve([(0.8, i % 10 < 7) for i in range(1000)]), 0.7) is None
    assert precision_lower_bound([45, 9, 0], [50, 10, 0], 0.95) == pytest.approx([0.801, 0.606, 0.0], abs=1e-3)
    assert precision_lower_bound(9, 10, 0) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="confidence must be in"):
        pretick_threshold(many, 0.7, confidence=1.0)


def test_stored_rejections_move_the_threshold_up_or_away():
    curve = _curve(FLOOR_CASE)
    # 6 rejected suggestions shown at 0.65: >= 0.60 .. 0.65 are right 14/26; >= 0.66 still 14/20.
    some = curve_add(curve, [0.65] * 6, [False] * 6)
    assert pretick_threshold(some, 0.7, confidence=0) == 0.66
    assert some["decisions"] == 6 and some["positives"] == 0 and some["ticked"][65] == 26
    # 20 rejected at 0.95: >= 0.91 .. 0.95 are right 0/20 -> nothing qualifies any more.
    many = curve_add(curve, [0.95], [False], counts=[20])
    assert pretick_threshold(many, 0.7, confidence=0) is None
    # Accepted ones help: 30 accepted at 0.59 make every threshold <= 0.59 right 44/60 (0.733) ...
    helped = curve_add(curve, [0.59, 0.59], [True, False], counts=[30, 0])
    assert pretick_threshold(helped, 0.7, confidence=0) == 0.01
    assert helped["positives"] == 30 and helped["decisions"] == 30
    # ... but not across a gap: at 0.55 they leave >= 0.56 .. 0.59 right 14/30.
    assert pretick_threshold(curve_add(curve, [0.55], [True], counts=[30]), 0.7, confidence=0) == 0.6
    assert curve["ticked"][60] == 20 and "decisions" not in curve  # the input is not changed


def test_tick_stats_reads_precision_recall_and_ticks_at_a_threshold():
    curve = _curve(FLOOR_CASE, positives=28, documents=12)
    assert tick_stats(curve, 0.6) == {"precision": pytest.approx(0.7), "recall": pytest.approx(0.5), "ticked": 20}
    assert tick_stats(curve, 0.705) == {"precision": pytest.approx(0.9), "recall": pytest.approx(9 / 28), "ticked": 10}
    assert tick_stats(curve, 0.95) == {"precision": None, "recall": 0.0, "ticked": 0}
    assert tick_stats(_curve([]), 0.5) == {"precision": None, "recall": None, "ticked": 0}


def test_tick_curve_from_shortlists_matches_the_hand_built_curve():
    rng = np.random.default_rng(3)
    n_docs, n_labels = 40, 6
    truth = (rng.random((n_docs, n_labels)) < 0.3).astype(int)
    probs_full = np.round(rng.random((n_docs, n_labels)), 3)
    idx = np.argsort(-probs_full, axis=1)[:, :4]
    probs = np.take_along_axis(probs_full, idx, axis=1)
    pairs = [(float(probs[i, k]), bool(truth[i, idx[i, k]])) for i in range(n_docs) for k in range(4)]
    curve = tick_curve(idx, probs, sp.csr_matrix(truth))
    expected = _curve(pairs, positives=int(truth.sum()), documents=n_docs)
    assert curve == expected


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: tick_curve(np.array([[0, 3]]), np.array([[0.5, 0.4]]), sp.csr_matrix([[1, 0, 0]])), "3 labels"),
        (lambda: tick_curve(np.array([[0]]), np.array([[0.5]]), sp.csr_matrix([[1], [0]])), "rows"),
        (lambda: tick_curve(np.array([[0]]), np.array([[1.5]]), sp.csr_matrix([[1]])), "probabilities"),
        (lambda: pretick_threshold(_curve([]), 0.0), "floor"),
        (lambda: pretick_threshold(_curve([]), 1.5), "floor"),
        (lambda: pretick_threshold(_curve([]), 0.7, min_ticks=0), "min_ticks"),
        (lambda: pretick_threshold({"grid": 100}, 0.7), "lacks ticked, correct, positives, documents"),
        (lambda: pretick_threshold({**_curve([]), "ticked": [0] * 50}, 0.7), "101 counts"),
        (lambda: pretick_threshold({**_curve([]), "grid": 10}, 0.7), "grid"),
        (lambda: pretick_threshold({**_curve([(0.5, False)]), "correct": [1] * 101}, 0.7), "more correct"),
        (lambda: pretick_threshold({**_curve([]), "ticked": list(range(101))}, 0.7), "must not grow"),
        (lambda: pretick_threshold({**_curve([]), "positives": -1}, 0.7), "positives"),
        (lambda: pretick_threshold([1, 2], 0.7), "must be a dict"),
        (lambda: curve_add(_curve([]), [0.5, 0.6], [True]), "same length"),
        (lambda: curve_add(_curve([]), [1.2], [True]), "probabilities"),
        (lambda: curve_add(_curve([]), [0.5], ["yes"]), "booleans"),
        (lambda: curve_add(_curve([]), [0.5], [True], counts=[1.5]), "whole numbers"),
        (lambda: tick_stats(_curve([]), 1.2), "threshold"),
    ],
)
def test_bad_tick_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
