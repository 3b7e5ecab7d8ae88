"""learner.curves: the inverse power law fit, its forecasts with intervals, and the stopping signals."""

from __future__ import annotations

import numpy as np
import pytest

from learner.curves import agreement, fit, stabilised

N = np.array([20, 40, 80, 160, 320, 640, 1280], dtype=float)


def _truth(n):
    return 0.6 - 0.9 * np.power(n, -0.5)


def test_fit_recovers_a_known_curve_and_forecasts_it():
    rng = np.random.default_rng(0)
    y = _truth(N) + rng.normal(0, 0.004, size=N.size)
    curve = fit(N, y, n_boot=200)
    assert curve is not None
    assert curve.a == pytest.approx(0.6, abs=0.03) and curve.c == pytest.approx(0.5, abs=0.15)
    at = curve.predict(5000)
    assert at.low <= at.value <= at.high
    assert at.value == pytest.approx(_truth(5000), abs=0.02)
    reach = curve.labels_to_reach(0.57)
    true_n = (0.9 / 0.03) ** 2  # 900
    assert reach is not None and reach.low <= true_n * 1.6 and reach.high >= true_n / 1.6
    assert curve.labels_to_reach(0.7) is None  # above the level the curve approaches
    gain = curve.gain(1280, 1780)
    assert gain.value == pytest.approx(_truth(1780) - _truth(1280), abs=0.005) and gain.value > 0


def test_noisier_points_give_wider_intervals():
    rng = np.random.default_rng(1)
    widths = []
    for noise in (0.002, 0.03):
        y = _truth(N) + rng.normal(0, noise, size=N.size)
        forecast = fit(N, y, n_boot=200).predict(3000)
        widths.append(forecast.high - forecast.low)
    assert widths[1] > 3 * widths[0]


def test_too_few_points_give_no_curve_and_bad_input_is_refused():
    assert fit([20, 20, 40], [0.1, 0.12, 0.2]) is None
    with pytest.raises(ValueError, match="positive"):
        fit([0, 20, 40], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="same length"):
        fit([10, 20, 40], [0.1, 0.2])


def test_agreement_is_kappa_over_the_labels_in_play():
    a = np.zeros((4, 1000), dtype=bool)
    b = np.zeros((4, 1000), dtype=bool)
    a[0, 1] = a[1, 2] = b[0, 1] = b[1, 2] = True
    assert agreement(a, b) == 1.0
    b[2, 3] = True  # one disagreement among 4 documents x 3 labels in play
    # observed 11/12; p_a = 2/12, p_b = 3/12; expected = 2/12*3/12 + 10/12*9/12 = 96/144
    assert agreement(a, b) == pytest.approx((11 / 12 - 96 / 144) / (1 - 96 / 144))
    assert agreement(np.zeros((2, 5)), np.zeros((2, 5))) == 1.0


def test_stabilised_needs_three_successive_agreements_above_the_threshold():
    assert not stabilised([0.999, 0.995])
    assert not stabilised([0.999, 0.98, 0.995, 0.999])
    assert stabilised([0.9, 0.995, 0.993, 0.999])


# --- never misleading: forecasts in [0, 1], every point inside its own interval, on tiny and pathological inputs ---
def _noisy(n, seed=3):
    return np.clip(0.5 - 0.6 * np.power(n, -0.5) + np.random.default_rng(seed).normal(0, 0.08, n.size), 0, 1)


FIVE = np.array([10, 20, 40, 80, 160], dtype=float)
FOURTEEN = np.arange(1, 15, dtype=float) * 25
SMALL_INPUTS = {
    "0 points": (np.array([], dtype=float), np.array([], dtype=float)),
    "1 point": (np.array([20.0]), np.array([0.3])),
    "5 flat": (FIVE, np.full(5, 0.42)),
    "5 noisy": (FIVE, _noisy(FIVE)),
    "5 decreasing": (FIVE, np.array([0.6, 0.5, 0.45, 0.3, 0.2])),
    "5 perfect": (FIVE, np.ones(5)),
    "5 zero": (FIVE, np.zeros(5)),
    # Rising so steeply that an unbounded power law levels off far above 1.
    "5 steep": (FIVE, np.array([0.2, 0.45, 0.7, 0.9, 0.99])),
    "14 flat": (FOURTEEN, np.full(14, 0.7)),
    "14 noisy": (FOURTEEN, _noisy(FOURTEEN)),
    "14 decreasing": (FOURTEEN, np.linspace(0.8, 0.3, 14)),
    "14 perfect": (FOURTEEN, np.ones(14)),
    "14 steep": (FOURTEEN, np.minimum(1.0, 0.05 * np.sqrt(FOURTEEN))),
}


def _inside(forecast, low=0.0, high=1.0):
    assert forecast.low <= forecast.value <= forecast.high, forecast
    assert low <= forecast.low and forecast.high <= high, forecast


@pytest.mark.parametrize("with_sigma", [False, True], ids=["residual bootstrap", "parametric bootstrap"])
@pytest.mark.parametrize("name", list(SMALL_INPUTS))
def test_forecasts_stay_in_0_1_with_the_point_inside_its_interval(name, with_sigma):
    n, y = SMALL_INPUTS[name]
    sigma = np.full(n.size, 0.06) if with_sigma else None
    curve = fit(n, y, sigma=sigma, n_boot=60)
    if np.unique(n).size < 3:
        assert curve is None  # no forecast rather than a made-up one
        return
    assert curve is not None
    assert 0.0 <= curve.a <= 1.0 and np.all(curve.refits[:, 0] <= 1.0)
    last = float(n.max())
    for at in (1.0, float(n.min()), last, 2 * last, last + 500, 1e12):
        _inside(curve.predict(at))
    for start, end in ((last, last + 100), (last, last + 500), (1.0, 1e12)):
        _inside(curve.gain(start, end))
    best = float(y.max())
    for target in (best + 0.02, best + 0.05, 0.5, 0.99, 1.0, 1.2):
        reach = curve.labels_to_reach(target)
        if reach is not None:
            assert target <= 1.0
            assert reach.value > 0 and reach.low <= reach.value <= reach.high, (target, reach)


def test_scores_outside_0_1_are_refused():
    with pytest.raises(ValueError, match=r"in \[0, 1"):
        fit([10, 20, 40], [0.2, 0.5, 1.3])
