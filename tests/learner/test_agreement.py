"""learner.agreement: hand-computed cases and equality with the reference libraries (krippendorff, statsmodels,
scikit-learn, nltk) on random data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from learner.agreement import agreement, masi

krippendorff = pytest.importorskip("krippendorff")
inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
nltk_agreement = pytest.importorskip("nltk.metrics.agreement")
nltk_distance = pytest.importorskip("nltk.metrics.distance")


def row_of(result: dict, label: int) -> dict:
    return next(row for row in result["labels"] if row["label"] == label)


def value(summary: dict | None) -> float | None:
    return None if summary is None else summary["value"]


def masi_distance(a: frozenset, b: frozenset) -> float:
    return 1.0 - masi(a, b)


def random_units(rng: np.random.Generator, *, n_units: int, coders: int, n_labels: int, complete: bool) -> list:
    """Units whose answers tick each label with probability 0.3; without `complete` a coder answers a unit with
    probability 0.7 (at least two answers per unit)."""
    units = []
    while len(units) < n_units:
        unit = {}
        for coder in range(coders):
            if complete or rng.random() < 0.7:
                unit[f"c{coder}"] = set(np.flatnonzero(rng.random(n_labels) < 0.3).tolist())
        if len(unit) >= 2:
            units.append(unit)
    return units


# --- hand-computed cases -------------------------------------------------------------------------------------------


def test_two_coder_binary_table_matches_hand_arithmetic() -> None:
    # Label 7, six documents, coders A and B: A = 1 1 0 0 1 0, B = 1 0 0 0 1 1 (two disagreements: units 2 and 6).
    # alpha: n = 12 values, 6 ticks and 6 non-ticks; sum_u k(m-k)/(m-1) = 1 + 1 = 2;
    #   alpha = 1 - (n - 1) * 2 / (6 * 6) = 1 - 22/36 = 14/36 = 0.3889.
    # Cohen: p_o = 4/6; p_A = p_B = 1/2, p_e = 1/4 + 1/4 = 1/2; kappa = (2/3 - 1/2) / (1/2) = 1/3.
    # Fleiss: pi = 6/12 = 1/2, p_e = 1/2, p_a = 4/6 -> 1/3. AC1: p_e = 2 * 1/2 * 1/2 = 1/2 -> 1/3.
    a = [1, 1, 0, 0, 1, 0]
    b = [1, 0, 0, 0, 1, 1]
    units = [{"A": {7} if x else set(), "B": {7} if y else set()} for x, y in zip(a, b, strict=True)]

    row = row_of(agreement(units, labels=[7, 8], n_boot=200), 7)

    assert value(row["alpha"]) == pytest.approx(14 / 36, abs=1e-4)
    assert value(row["cohen"]) == pytest.approx(1 / 3, abs=1e-4)
    assert value(row["fleiss"]) == pytest.approx(1 / 3, abs=1e-4)
    assert value(row["ac1"]) == pytest.approx(1 / 3, abs=1e-4)
    assert row["positives"] == 6 and row["documents"] == 4 and row["units"] == 6


def test_gwet_2008_high_agreement_paradox() -> None:
    # Gwet (2008), two raters, 125 subjects: (+,+) 118, (+,-) 5, (-,+) 2, (-,-) 0.
    # p_a = 118/125 = 0.944. AC1: pi = (123 + 120) / 250 = 0.972, p_e = 2 * 0.972 * 0.028 = 0.054432,
    #   AC1 = (0.944 - 0.054432) / (1 - 0.054432) = 0.94077.
    # Cohen: p_e = 0.984 * 0.96 + 0.016 * 0.04 = 0.94528, kappa = (0.944 - 0.94528) / 0.05472 = -0.02339.
    units = [{"A": {1}, "B": {1}}] * 118 + [{"A": {1}, "B": set()}] * 5 + [{"A": set(), "B": {1}}] * 2

    row = row_of(agreement(units, labels=[1], n_boot=200), 1)

    assert value(row["ac1"]) == pytest.approx(0.94077, abs=1e-4)
    assert value(row["cohen"]) == pytest.approx(-0.02339, abs=1e-4)


def test_masi_values_match_passonneau() -> None:
    # {1,2} vs {1,2,3}: Jaccard 2/3, one contains the other (M = 2/3) -> 4/9. {1,2} vs {2,3}: 1/3 * 1/3 = 1/9.
    assert masi({1, 2}, {1, 2}) == 1.0
    assert masi({1, 2}, {1, 2, 3}) == pytest.approx(4 / 9)
    assert masi({1, 2}, {2, 3}) == pytest.approx(1 / 9)
    assert masi({1}, {2}) == 0.0
    assert masi(set(), set()) == 1.0
    # nltk rounds M to 0.67 / 0.33; otherwise the same.
    assert 1 - nltk_distance.masi_distance({1, 2}, {1, 2, 3}) == pytest.approx(4 / 9, abs=0.01)


def test_alpha_masi_matches_hand_arithmetic() -> None:
    # Units: {1}|{1}; {1,2}|{1}; {3}|{2}. Distances: d({1},{1,2}) = 1 - 1/2 * 2/3 = 2/3; disjoint sets 1.
    # Observed: sum_u sum_{i!=j} d / (m_u - 1) = 0 + 2 * 2/3 + 2 * 1 = 10/3.
    # Expected: the six values {1} x3, {1,2}, {3}, {2}; unordered pairs: {1}-{1,2} 3 * 2/3 = 2, {1}-{3} 3,
    #   {1}-{2} 3, {1,2}-{3} 1, {1,2}-{2} 2/3, {3}-{2} 1: 32/3, ordered 64/3.
    # alpha = 1 - (6 - 1) * (10/3) / (64/3) = 1 - 50/64 = 0.21875.
    units = [{"a": {1}, "b": {1}}, {"a": {1, 2}, "b": {1}}, {"a": {3}, "b": {2}}]

    result = agreement(units, labels=[1, 2, 3], n_boot=200)

    assert result["overall"]["alpha_masi"]["value"] == pytest.approx(0.21875, abs=1e-4)
    # mean pairwise MASI: (1 + 1/3 + 0) / 3
    assert result["overall"]["masi_mean"]["value"] == pytest.approx(4 / 9, abs=1e-4)


def test_annotators_against_others_and_gold_by_hand() -> None:
    # x vs y: unit 1 equal (1), unit 2 {1,2} vs {1} (1/3): x's mean MASI with the others = 2/3.
    # Gold {1,2} on unit 2 and {5} on a single-answer unit 3 (x answered {5, 6}):
    #   x: tp = 2 + 1 = 3, ticks 2 + 2 = 4, gold ticks 2 + 1 = 3 -> precision 3/4, recall 1, F1 = 6/7.
    units = [{"x": {1}, "y": {1}}, {"x": {1, 2}, "y": {1}}, {"x": {5, 6}}]
    gold = [None, {1, 2}, {5}]

    result = agreement(units, labels=range(10), gold=gold, n_boot=200)

    x = next(entry for entry in result["annotators"] if entry["annotator"] == "x")
    assert x["vs_others"]["masi"]["value"] == pytest.approx(2 / 3, abs=1e-4)
    assert x["vs_gold"]["units"] == 2
    assert x["vs_gold"]["precision"]["value"] == pytest.approx(0.75, abs=1e-4)
    assert x["vs_gold"]["recall"]["value"] == pytest.approx(1.0)
    assert x["vs_gold"]["f1"]["value"] == pytest.approx(6 / 7, abs=1e-4)
    assert result["gold_units"] == 2 and result["units"] == 2


# --- equality with the reference libraries ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_alpha_matches_krippendorff_with_missing_answers(seed: int) -> None:
    rng = np.random.default_rng(seed)
    units = random_units(rng, n_units=40, coders=4, n_labels=6, complete=False)

    result = agreement(units, labels=range(6), n_boot=0)

    assert not result["equal_answers"]
    for row in result["labels"]:
        label = row["label"]
        data = np.array(
            [[(float(label in u[c]) if c in u else np.nan) for u in units] for c in ("c0", "c1", "c2", "c3")]
        )
        assert value(row["alpha"]) == pytest.approx(krippendorff.alpha(data, level_of_measurement="nominal"), abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fleiss_matches_statsmodels_with_equal_answers(seed: int) -> None:
    rng = np.random.default_rng(seed)
    units = random_units(rng, n_units=30, coders=3, n_labels=6, complete=True)

    result = agreement(units, labels=range(6), n_boot=0)

    assert result["equal_answers"]
    for row in result["labels"]:
        label = row["label"]
        table = np.array(
            [[sum(label in s for s in u.values()), sum(label not in s for s in u.values())] for u in units]
        )
        assert value(row["fleiss"]) == pytest.approx(inter_rater.fleiss_kappa(table, method="fleiss"), abs=1e-4)


def test_ac1_matches_the_textbook_formula_on_random_data() -> None:
    # Gwet (2014), eq. 4.9 for q = 2 categories, written out per unit with plain loops.
    rng = np.random.default_rng(3)
    units = random_units(rng, n_units=30, coders=4, n_labels=5, complete=False)

    result = agreement(units, labels=range(5), n_boot=0)

    for row in result["labels"]:
        label = row["label"]
        p_a, pi = 0.0, 0.0
        for unit in units:
            r = len(unit)
            r1 = sum(label in s for s in unit.values())
            p_a += (r1 * (r1 - 1) + (r - r1) * (r - r1 - 1)) / (r * (r - 1))
            pi += r1 / r
        p_a, pi = p_a / len(units), pi / len(units)
        p_e = pi * (1 - pi) + (1 - pi) * pi
        assert value(row["ac1"]) == pytest.approx((p_a - p_e) / (1 - p_e), abs=1e-4)


def test_cohen_matches_scikit_learn_for_two_coders() -> None:
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(4)
    units = random_units(rng, n_units=30, coders=2, n_labels=6, complete=True)

    result = agreement(units, labels=range(6), n_boot=0)

    assert result["cohen_applies"]
    for row in result["labels"]:
        label = row["label"]
        first = [label in u["c0"] for u in units]
        second = [label in u["c1"] for u in units]
        assert value(row["cohen"]) == pytest.approx(cohen_kappa_score(first, second), abs=1e-4)


def test_no_cohen_with_three_coders() -> None:
    rng = np.random.default_rng(5)
    result = agreement(random_units(rng, n_units=10, coders=3, n_labels=4, complete=True), labels=range(4), n_boot=0)

    assert not result["cohen_applies"]
    assert all(row["cohen"] is None for row in result["labels"])


@pytest.mark.parametrize("seed", [0, 1])
def test_alpha_masi_matches_nltk_on_complete_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    units = random_units(rng, n_units=25, coders=3, n_labels=5, complete=True)
    for unit in units:  # nltk's masi divides by the union: no empty answers here
        for coder, chosen in unit.items():
            if not chosen:
                unit[coder] = {0}
    task = nltk_agreement.AnnotationTask(
        data=[(c, i, frozenset(s)) for i, u in enumerate(units) for c, s in u.items()], distance=masi_distance
    )

    result = agreement(units, labels=range(5), n_boot=0)

    assert result["overall"]["alpha_masi"]["value"] == pytest.approx(task.alpha(), abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_alpha_masi_matches_krippendorff_with_missing_answers(seed: int) -> None:
    rng = np.random.default_rng(seed)
    units = random_units(rng, n_units=40, coders=4, n_labels=5, complete=False)
    distinct: dict[frozenset, int] = {}
    data = np.array(
        [
            [float(distinct.setdefault(frozenset(u[c]), len(distinct))) if c in u else np.nan for u in units]
            for c in ("c0", "c1", "c2", "c3")
        ]
    )
    sets = list(distinct)
    table = np.array([[masi_distance(a, b) for b in sets] for a in sets])

    def metric(v1, v2, i1, i2, n_v, dtype=np.float64):
        return table[v1.astype(int), v2.astype(int)]

    result = agreement(units, labels=range(5), n_boot=0)

    reference = krippendorff.alpha(data, value_domain=np.arange(len(sets)), level_of_measurement=metric)
    assert result["overall"]["alpha_masi"]["value"] == pytest.approx(reference, abs=1e-4)


# --- edge cases, intervals, output ------------------------------------------------------------------------------------


def test_perfect_agreement_is_one() -> None:
    units = [{"a": {1, 2}, "b": {1, 2}, "c": {1, 2}}, {"a": {3}, "b": {3}, "c": {3}}, {"a": {2}, "b": {2}, "c": {2}}]

    result = agreement(units, labels=[1, 2, 3], n_boot=200)

    for row in result["labels"]:
        assert value(row["alpha"]) == 1.0 and value(row["ac1"]) == 1.0 and value(row["fleiss"]) == 1.0
    assert result["overall"]["alpha_masi"]["value"] == 1.0
    assert result["overall"]["alpha_macro"]["value"] == 1.0
    assert result["overall"]["ac1_pooled"]["value"] == 1.0


def test_undefined_values_are_none_never_nan() -> None:
    # Label 1 is ticked by every answer (no variance): alpha and kappa undefined, AC1 = 1. One unit only.
    units = [{"a": {1}, "b": {1}}]

    result = agreement(units, labels=[1, 2], gold=[{1}], n_boot=200)

    row = row_of(result, 1)
    assert row["alpha"] == {"value": None, "low": None, "high": None}
    assert row["fleiss"]["value"] is None and row["cohen"]["value"] is None
    assert value(row["ac1"]) == 1.0
    assert result["overall"]["alpha_masi"]["value"] is None
    assert result["overall"]["alpha_macro"]["value"] is None
    text = json.dumps(result, allow_nan=False)  # raises on NaN or infinity
    assert "NaN" not in text


def test_no_unit_with_two_answers_gives_an_empty_report() -> None:
    result = agreement([{"a": {1}}, {"b": {2}}], labels=[1, 2], gold=[{1}, None], n_boot=100)

    assert result["units"] == 0 and result["labels"] == []
    assert result["overall"]["alpha_masi"]["value"] is None
    assert result["annotators"][0]["vs_gold"]["f1"]["value"] == 1.0
    json.dumps(result, allow_nan=False)


def test_intervals_contain_the_estimate_and_are_reproducible() -> None:
    rng = np.random.default_rng(6)
    units = random_units(rng, n_units=60, coders=3, n_labels=8, complete=False)

    first = agreement(units, labels=range(8), n_boot=300, seed=7)
    second = agreement(units, labels=range(8), n_boot=300, seed=7)

    summaries = [s for row in first["labels"] for k, s in row.items() if k in ("alpha", "ac1", "fleiss") and s]
    summaries += list(first["overall"].values())
    summaries += [entry["vs_others"]["masi"] for entry in first["annotators"]]
    for summary in summaries:
        assert summary["low"] is not None
        assert summary["low"] <= summary["value"] <= summary["high"]
    assert any(summary["low"] < summary["high"] for summary in summaries)
    first.pop("seconds"), second.pop("seconds")
    assert first == second


def test_labels_are_ordered_worst_alpha_first() -> None:
    rng = np.random.default_rng(8)
    result = agreement(random_units(rng, n_units=30, coders=3, n_labels=6, complete=True), labels=range(6), n_boot=0)

    alphas = [row["alpha"]["value"] for row in result["labels"] if row["alpha"]["value"] is not None]
    assert alphas == sorted(alphas)


def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown label ids"):
        agreement([{"a": {1}, "b": {9}}], labels=[1, 2])
    with pytest.raises(ValueError, match="gold has 2 entries for 1 units"):
        agreement([{"a": {1}, "b": {1}}], labels=[1], gold=[None, None])
    with pytest.raises(ValueError, match="n_boot"):
        agreement([], labels=[1], n_boot=-1)
    with pytest.raises(ValueError, match="mapping"):
        agreement([[1, 2]], labels=[1, 2])  # type: ignore[list-item]


def test_many_labels_stay_fast_and_sparse() -> None:
    # 41,218 labels in the universe, 200 units x 3 annotators: only the labels ticked are expanded.
    rng = np.random.default_rng(9)
    units = [{a: set(rng.choice(41_218, size=4).tolist()) for a in "xyz"} for _ in range(200)]

    result = agreement(units, labels=range(41_218), n_boot=100)

    assert result["label_universe"] == 41_218
    assert result["labels_in_play"] == len({label for u in units for s in u.values() for label in s})
    assert math.isfinite(result["overall"]["alpha_masi"]["value"])


def test_alpha_masi_above_the_unit_cap_is_estimated_on_a_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many overlap documents: alpha-MASI's units x units matrix would not fit, so a seeded uniform sample of units
    stands in for them; the sample's estimate stays close to the full one, and the report says how many were used."""
    import learner.agreement as module

    rng = np.random.default_rng(3)
    units = random_units(rng, n_units=600, coders=3, n_labels=6, complete=False)
    full = agreement(units, labels=range(6), n_boot=50)
    monkeypatch.setattr(module, "MASI_MAX_UNITS", 300)
    sampled = agreement(units, labels=range(6), n_boot=50)
    assert (full["masi_units"], sampled["masi_units"]) == (600, 300)
    assert sampled["overall"]["alpha_masi"]["value"] == pytest.approx(full["overall"]["alpha_masi"]["value"], abs=0.05)
    low, high = sampled["overall"]["alpha_masi"]["low"], sampled["overall"]["alpha_masi"]["high"]
    assert low <= sampled["overall"]["alpha_masi"]["value"] <= high
    assert sampled["labels"] == full["labels"]  # per-label coefficients always use every unit
