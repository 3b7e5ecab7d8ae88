from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import sparse

from learner.chooser import (
    COVERAGE,
    UNCERTAINTY,
    ChooserState,
    choose,
    phase,
    reward,
    switch_at,
    update,
)


# --------------------------------------------------------------------------------------------------------- phase
@pytest.mark.parametrize(
    ("n_labelled", "n_labels", "expected"),
    [
        (139, 28, COVERAGE),  # 5 x 28 = 140 > the minimum of 50
        (140, 28, UNCERTAINTY),
        (49, 3, COVERAGE),  # 5 x 3 = 15 < the minimum of 50
        (50, 3, UNCERTAINTY),
        (0, 0, COVERAGE),
        (50, 0, UNCERTAINTY),
    ],
)
def test_phase_switches_at_per_label_times_labels_or_the_minimum(n_labelled: int, n_labels: int, expected: str) -> None:
    assert phase(n_labelled, n_labels, per_label=5, minimum=50) == expected


def test_switch_at_rounds_a_fractional_product_up() -> None:
    assert switch_at(4, per_label=2.5, minimum=0) == 10
    assert switch_at(3, per_label=2.5, minimum=0) == 8
    assert phase(7, 3, per_label=2.5, minimum=0) == COVERAGE
    assert phase(8, 3, per_label=2.5, minimum=0) == UNCERTAINTY


def test_phase_with_the_module_defaults_starts_in_coverage_and_ends_in_uncertainty() -> None:
    for n_labels in (1, 28, 41_218):
        assert phase(0, n_labels) == COVERAGE
        assert phase(switch_at(n_labels) - 1, n_labels) == COVERAGE
        assert phase(switch_at(n_labels), n_labels) == UNCERTAINTY
    assert switch_at(41_218) > switch_at(28) >= switch_at(1) > 0


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((-1, 5), {}, "n_labelled"),
        ((3.0, 5), {}, "n_labelled"),
        ((True, 5), {}, "n_labelled"),
        ((3, -5), {}, "n_labels"),
        ((3, 5), {"per_label": -1.0}, "per_label"),
        ((3, 5), {"minimum": -1}, "minimum"),
    ],
)
def test_phase_rejects_bad_counts(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        phase(*args, **kwargs)


# -------------------------------------------------------------------------------------------------------- reward
def test_reward_on_a_tiny_label_matrix() -> None:
    Y = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]])
    counts = np.array([0, 4, 2])

    # doc 0: 1 / max(1, 0) + 1 / 2 = 1.5; doc 1: 1 / 4; doc 2: nothing -> mean 1.75 / 3
    assert reward(Y, counts) == pytest.approx(1.75 / 3)
    assert reward(sparse.csr_matrix(Y), counts) == pytest.approx(1.75 / 3)


def test_reward_is_higher_for_positives_of_rare_labels() -> None:
    counts = np.array([100, 1])

    assert reward(np.array([[0, 1]]), counts) == 1.0
    assert reward(np.array([[1, 0]]), counts) == 0.01
    assert reward(np.array([[0, 0], [0, 0]]), counts) == 0.0


@pytest.mark.parametrize(
    ("Y", "counts", "message"),
    [
        (np.zeros((0, 2)), [1, 1], "empty batch"),
        (np.ones((2, 3)), [1, 1], r"\(B, 2\)"),
        (np.array([[0.5, 1.0]]), [1, 1], "0/1"),
        (np.ones((1, 2)), [1, -1], "non-negative"),
        (np.ones(2), [1, 1], r"\(B, 2\)"),
    ],
)
def test_reward_rejects_bad_input(Y: np.ndarray, counts: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        reward(Y, counts)


# ------------------------------------------------------------------------------------------------------- chooser
def play(means: dict[str, float], rounds: int, seed: int, *, swap_at: int | None = None) -> list[str]:
    """Run the chooser for ``rounds`` batches whose reward is the chosen arm's mean plus N(0, 0.1) noise
    (non-negative); from round ``swap_at`` on, the two arms' means are swapped. Returns the arms chosen."""
    noise = np.random.default_rng(1000 + seed)
    state = ChooserState()
    arms = list(means)
    chosen = []
    for t in range(rounds):
        current = means if swap_at is None or t < swap_at else dict(zip(arms, reversed(means.values()), strict=True))
        arm = choose(state, arms, seed)
        state = update(state, arm, max(0.0, current[arm] + float(noise.normal(0.0, 0.1))))
        chosen.append(arm)
    return chosen


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("means", [{"coverage": 1.0, "uncertainty": 0.5}, {"coverage": 0.5, "uncertainty": 1.0}])
def test_chooser_converges_to_the_arm_with_the_higher_reward(seed: int, means: dict[str, float]) -> None:
    best = max(means, key=means.__getitem__)

    chosen = play(means, 60, seed)

    assert chosen[30:].count(best) >= 24  # about 1 in 10 stays exploration


@pytest.mark.parametrize("seed", range(3))
def test_chooser_follows_the_better_arm_when_the_rewards_swap(seed: int) -> None:
    chosen = play({"coverage": 1.0, "uncertainty": 0.4}, 100, seed, swap_at=40)

    assert chosen[20:40].count("coverage") >= 15
    assert chosen[70:].count("uncertainty") >= 24


def test_chooser_tries_every_new_arm_first_in_the_order_given() -> None:
    state = ChooserState()
    order = []
    for _ in range(3):
        arm = choose(state, ["b", "a", "c"], seed=0)
        order.append(arm)
        state = update(state, arm, 0.0 if arm == "b" else 10.0)

    assert order == ["b", "a", "c"]
    assert choose(state, ["a", "d"], seed=0) == "d"  # a strategy added later is tried at once


def test_chooser_is_deterministic_for_a_seed() -> None:
    means = {"coverage": 0.8, "uncertainty": 0.7, "random": 0.75}

    assert play(means, 40, seed=3) == play(means, 40, seed=3)
    assert any(play(means, 40, seed=s) != play(means, 40, seed=3) for s in (4, 5, 6))


def test_chooser_depends_on_the_scale_of_rewards_not_their_unit() -> None:
    state = ChooserState()
    scaled = ChooserState()
    for arm, value in [("a", 0.3), ("b", 0.5), ("a", 0.4), ("b", 0.2), ("a", 0.6)]:
        state = update(state, arm, value)
        scaled = update(scaled, arm, 1000.0 * value)

    assert [choose(state, ["a", "b"], s) for s in range(30)] == [choose(scaled, ["a", "b"], s) for s in range(30)]


def test_state_round_trips_through_json() -> None:
    state = ChooserState()
    for arm, value in [("typiclust", 1.2), ("uncertainty", 0.4), ("typiclust", 0.9)]:
        state = update(state, arm, value)

    restored = ChooserState.from_dict(json.loads(json.dumps(state.to_dict())))

    assert restored == state
    assert [choose(restored, ["typiclust", "uncertainty"], s) for s in range(10)] == [
        choose(state, ["typiclust", "uncertainty"], s) for s in range(10)
    ]


def test_update_discounts_every_arm_and_leaves_the_old_state_alone() -> None:
    first = update(ChooserState(), "a", 2.0)

    second = update(first, "b", 1.0, discount=0.5)

    assert first == ChooserState(names=("a",), pulls=(1.0,), totals=(2.0,), squares=(4.0,), rounds=1)
    assert second == ChooserState(names=("a", "b"), pulls=(0.5, 1.0), totals=(1.0, 1.0), squares=(2.0, 1.0), rounds=2)
    assert second.mean("a") == 2.0
    assert second.mean("c") is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"names": ["a"], "pulls": [1.0], "totals": [1.0], "squares": [1.0], "extra": 1}, "unknown ChooserState"),
        ({"names": ["a"], "pulls": [], "totals": [1.0], "squares": [1.0]}, "pulls must have one value per name"),
        ({"names": ["a", "a"], "pulls": [1, 1], "totals": [1, 1], "squares": [1, 1]}, "unique"),
        ({"names": ["a"], "pulls": [-1.0], "totals": [1.0], "squares": [1.0]}, ">= 0"),
        ({"names": ["a"], "pulls": [1.0], "totals": [float("nan")], "squares": [1.0]}, "finite"),
        ([1, 2], "expects a dict"),
    ],
)
def test_state_from_dict_rejects_bad_data(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ChooserState.from_dict(data)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: choose(ChooserState(), [], 0), "arms"),
        (lambda: choose(ChooserState(), ["a", "a"], 0), "unique"),
        (lambda: choose(ChooserState(), ["a"], -1), "seed"),
        (lambda: update(ChooserState(), "a", float("inf")), "finite"),
        (lambda: update(ChooserState(), "a", 1.0, discount=0.0), "discount"),
    ],
)
def test_choose_and_update_reject_bad_input(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
