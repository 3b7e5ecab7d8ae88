"""Labels saved against random: labels-to-target on curves with known crossings, paired intervals over seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learner import savings


def test_labels_to_reach_interpolates_the_first_crossing_and_says_never() -> None:
    counts = [20, 100, 500, 1000]
    values = [0.2, 0.4, 0.5, 0.45]
    assert savings.labels_to_reach(counts, values, 0.2) == 20.0  # reached at the first round
    assert savings.labels_to_reach(counts, values, 0.3) == pytest.approx(60.0)  # halfway from 20 to 100
    assert savings.labels_to_reach(counts, values, 0.45) == pytest.approx(300.0)  # first crossing, not the last
    assert savings.labels_to_reach(counts, values, 0.51) is None
    with pytest.raises(ValueError, match="same length"):
        savings.labels_to_reach([1, 2], [0.1], 0.1)


def _runs(curves: list[list[float]], counts: list[int]) -> dict[str, list[dict[str, float]]]:
    return {
        str(seed): [{"labelled": c, "m": v} for c, v in zip(counts, curve, strict=True)]
        for seed, curve in enumerate(curves)
    }


def test_a_strategy_twice_as_fast_as_random_needs_half_the_labels_on_every_target() -> None:
    counts = list(range(100, 2100, 100))  # 100 .. 2000

    # random: linear from 0.1 at 100 to 0.5 at 2000; the strategy follows random's curve at twice the labels.
    def random_curve(n: float) -> float:
        return 0.1 + 0.4 * (n - 100) / 1900

    def fast_curve(n: float) -> float:
        return random_curve(min(2 * n - 100, 4000))

    offsets = [-0.01, 0.0, 0.01, 0.0, 0.005]  # the seeds differ by a constant, the same for both strategies
    curves = {
        "random": _runs([[random_curve(c) + o for c in counts] for o in offsets], counts),
        "fast": _runs([[fast_curve(c) + o for c in counts] for o in offsets], counts),
    }
    table = savings.savings(curves, {"m": 0.5}, ["m"], n_boot=400)
    end = table["fast"]["m"]["end"]
    # random reaches its own end value (0.501) at 2000; the fast strategy at (2000 + 100) / 2 = 1050 labels.
    assert end["random_labels"] == pytest.approx(2000.0, abs=1)
    assert end["labels"] == pytest.approx(1050.0, abs=1)
    assert end["ratio"] == pytest.approx(0.525, abs=0.001)
    assert end["low"] <= end["ratio"] <= end["high"] < 0.6
    assert end["never"] == 0.0
    ninety = table["fast"]["m"]["90"]  # 0.45: random at 1862.5, fast at 981.25
    assert ninety["target"] == pytest.approx(0.45)
    assert ninety["ratio"] == pytest.approx(981.25 / 1862.5, abs=0.01)
    at_500 = table["fast"]["m"]["at_500"]  # what random reaches with 500 labels: the fast strategy at (500 + 100) / 2
    assert at_500["random_labels"] == pytest.approx(500.0, abs=1) and at_500["ratio"] == pytest.approx(0.6, abs=0.01)
    assert table["random"]["m"]["end"]["ratio"] == 1.0  # the baseline against itself


def test_a_strategy_that_never_gets_there_has_no_ratio_and_an_open_interval() -> None:
    counts = [100, 200, 300]
    curves = {
        "random": _runs([[0.3, 0.4, 0.5], [0.3, 0.4, 0.5], [0.3, 0.4, 0.52]], counts),
        "slow": _runs([[0.2, 0.25, 0.3], [0.2, 0.25, 0.3], [0.2, 0.25, 0.3]], counts),
    }
    cell = savings.savings(curves, {"m": 0.6}, ["m"], n_boot=200)["slow"]["m"]["end"]
    assert cell["labels"] is None and cell["ratio"] is None
    assert "at_2000" not in savings.savings(curves, {"m": 0.6}, ["m"], n_boot=10)["slow"]["m"]  # no round at 2,000
    assert cell["high"] is None and cell["never"] == 1.0
    # 95 % of full data (0.57): random never gets there either, so no draw gives a ratio.
    beyond = savings.savings(curves, {"m": 0.6}, ["m"], n_boot=200)["slow"]["m"]["95"]
    assert beyond["random_labels"] is None and beyond["draws"] == 0 and beyond["low"] is None


def test_seed_noise_widens_the_interval_around_no_saving() -> None:
    counts = [100, 200, 300, 400]
    rng = np.random.default_rng(3)
    base = np.array([0.3, 0.4, 0.45, 0.5])
    random_runs = [list(base + rng.normal(0, 0.03, 4)) for _ in range(5)]
    same_runs = [list(base + rng.normal(0, 0.03, 4)) for _ in range(5)]
    cell = savings.savings(
        {"random": _runs(random_runs, counts), "same": _runs(same_runs, counts)}, {"m": 0.55}, ["m"], n_boot=500
    )["same"]["m"]["end"]
    assert cell["low"] < 1.0  # an identical strategy is not declared better ...
    assert cell["high"] is None or cell["high"] > 1.0  # ... nor worse


def test_savings_need_random_and_shared_seeds() -> None:
    counts = [10, 20]
    with pytest.raises(ValueError, match="random"):
        savings.savings({"x": _runs([[0.1, 0.2]], counts)}, {"m": 0.3}, ["m"])
    with pytest.raises(ValueError, match="seeds"):
        savings.savings(
            {"random": _runs([[0.1, 0.2], [0.1, 0.2]], counts), "x": _runs([[0.1, 0.2]], counts)}, {"m": 0.3}, ["m"]
        )


def test_band_is_the_seed_mean_with_an_interval_that_contains_it() -> None:
    values = np.array([[0.1, 0.2], [0.3, 0.4], [0.2, 0.3]])
    mean, low, high = savings.band(values, n_boot=300)
    assert mean == pytest.approx([0.2, 0.3])
    assert np.all(low <= mean) and np.all(mean <= high)
    assert np.all(low >= 0.1 - 1e-9) and np.all(high <= 0.4 + 1e-9)  # within the seeds
    assert not math.isnan(float(low[0]))
