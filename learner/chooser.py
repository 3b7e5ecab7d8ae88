"""Which query strategy to run next (SCIENCE.md §8): the low-budget phase rule and an adaptive chooser.

``phase(n_labelled, n_labels)`` says whether a project is still in the low-budget phase, where coverage picks
(``learner.coverage``: TypiClust, ProbCover) beat uncertainty, or past the "phase transition" (Hacohen et al.
2022) where uncertainty wins: it switches once ``n_labelled >= switch_at(n_labels)``, that is
max(``SWITCH_MINIMUM``, ``SWITCH_PER_LABEL`` x n_labels).

The adaptive chooser picks among named strategies (arms) in the spirit of TAILOR (Zhang et al., NeurIPS 2023),
with a reward observable without test labels: TAILOR's class-diversity reward (``reward``), the mean over a
batch's documents of sum_l y_l / max(1, positives of label l before the batch) -- a batch that brings positives
of rare labels scores high. The policy is discounted Gaussian Thompson sampling: every arm never tried is tried
first (in the order given); then each arm's mean reward gets a normal posterior N(mean, s^2 / pulls) with one
noise scale s pooled over the arms, a draw per arm, and the highest draw wins. Each update first multiplies
every arm's evidence by ``DISCOUNT``, so about the last 1 / (1 - DISCOUNT) batches count: rewards shrink as
labels fill up and the best arm changes at the phase transition, and an arm left alone regains uncertainty and
is tried again.

The lifecycle is ``state = ChooserState()``, ``arm = choose(state, arms, seed)``, label the arm's batch,
``state = update(state, arm, reward(Y_batch, counts_before))``; ``state.to_dict()`` is plain JSON for a database
column and ``ChooserState.from_dict`` reads it back. Everything is deterministic for a seed. numpy only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np

__all__ = [
    "COVERAGE",
    "DISCOUNT",
    "PHASES",
    "PRIOR_WEIGHT",
    "SWITCH_MINIMUM",
    "SWITCH_PER_LABEL",
    "UNCERTAINTY",
    "ChooserState",
    "choose",
    "phase",
    "reward",
    "switch_at",
    "update",
]

COVERAGE = "coverage"
UNCERTAINTY = "uncertainty"
PHASES: tuple[str, ...] = (COVERAGE, UNCERTAINTY)
# Provisional constants, to be chosen by measurement (the simulator's labels-to-target on GoEmotions and
# tibkat-gnd). Hacohen et al. see the transition at a few labelled examples per class; for multi-label text a
# label needs a few positives, and a project needs some documents whatever its label count.
SWITCH_PER_LABEL = 5.0  # labelled documents per label before uncertainty takes over
SWITCH_MINIMUM = 50  # labelled documents before uncertainty takes over, however few labels

DISCOUNT = 0.9  # evidence kept per update: about the last 10 batches count
# Pseudo-observations of the noise prior, whose spread is the mean reward itself (scale-free: rewards shrink as
# labels fill up). One keeps the sampler exploring while the observed spread is still small.
PRIOR_WEIGHT = 1.0
_VARIANCE_FLOOR = 1e-12


# -------------------------------------------------------------------------------------------------------- phase
def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer; got {value!r}")
    return int(value)


def switch_at(n_labels: int, *, per_label: float = SWITCH_PER_LABEL, minimum: int = SWITCH_MINIMUM) -> int:
    """The labelled-document count at which a project with ``n_labels`` labels leaves the coverage phase:
    max(``minimum``, ceil(``per_label`` x n_labels))."""
    labels = _check_count("n_labels", n_labels)
    minimum = _check_count("minimum", minimum)
    if isinstance(per_label, bool) or not isinstance(per_label, int | float) or not 0.0 <= per_label < math.inf:
        raise ValueError(f"per_label must be a finite number >= 0; got {per_label!r}")
    return max(minimum, math.ceil(per_label * labels))


def phase(n_labelled: int, n_labels: int, *, per_label: float = SWITCH_PER_LABEL, minimum: int = SWITCH_MINIMUM) -> str:
    """``COVERAGE`` while ``n_labelled < switch_at(n_labels)``, then ``UNCERTAINTY``.

    n_labelled: documents labelled so far; n_labels: the size of the project's label set.
    """
    labelled = _check_count("n_labelled", n_labelled)
    return COVERAGE if labelled < switch_at(n_labels, per_label=per_label, minimum=minimum) else UNCERTAINTY


# ------------------------------------------------------------------------------------------------------- reward
def reward(Y_batch: Any, counts_before: Any) -> float:
    """TAILOR's class-diversity reward of a labelled batch: mean over its documents of
    sum_l Y[i, l] / max(1, counts_before[l]).

    Y_batch (B, L) 0/1 labels of the batch's documents (a numpy array or a scipy sparse matrix; B >= 1);
    counts_before (L,) the labelled positives per label before the batch. A positive of a label nobody has
    labelled yet is worth 1, of a label with 10 positives 0.1. >= 0, 0 for a batch without positives.
    """
    from scipy import sparse

    counts = np.asarray(counts_before, dtype=np.float64)
    if counts.ndim != 1 or not np.isfinite(counts).all() or (counts < 0).any():
        raise ValueError("counts_before must be a 1-D array of finite, non-negative counts")
    if sparse.issparse(Y_batch):
        labels = sparse.csr_matrix(Y_batch, dtype=np.float64)
        values = labels.data
    else:
        labels = np.asarray(Y_batch, dtype=np.float64)
        values = labels
    if labels.ndim != 2 or labels.shape[1] != len(counts):
        raise ValueError(f"Y_batch must be (B, {len(counts)}) like counts_before; got shape {labels.shape}")
    if labels.shape[0] == 0:
        raise ValueError("Y_batch has no documents: an empty batch has no reward")
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError("Y_batch must hold 0/1 labels")
    weights = 1.0 / np.maximum(1.0, counts)  # (L,)
    per_document = np.asarray(labels @ weights).ravel()  # (B,)
    return float(per_document.mean())


# -------------------------------------------------------------------------------------------------------- state
@dataclass(frozen=True)
class ChooserState:
    """The chooser's evidence, one entry per arm tried so far (parallel tuples), and the number of updates.

    ``pulls`` are discounted counts of rewards, ``totals`` and ``squares`` discounted sums of rewards and of
    squared rewards. ``to_dict()`` gives plain JSON values; ``from_dict()`` rejects unknown keys.
    """

    names: tuple[str, ...] = ()
    pulls: tuple[float, ...] = ()
    totals: tuple[float, ...] = ()
    squares: tuple[float, ...] = ()
    rounds: int = 0

    def __post_init__(self) -> None:
        names = tuple(self.names)
        if not all(isinstance(name, str) and name for name in names):
            raise ValueError(f"names must be non-empty strings; got {names!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"names must be unique; got {names!r}")
        object.__setattr__(self, "names", names)
        for field in ("pulls", "totals", "squares"):
            raw = tuple(getattr(self, field))
            if len(raw) != len(names):
                raise ValueError(f"{field} must have one value per name ({len(names)}); got {len(raw)}")
            if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in raw):
                raise ValueError(f"{field} must hold finite numbers; got {raw!r}")
            object.__setattr__(self, field, tuple(float(v) for v in raw))
        if any(v < 0 for v in self.pulls) or any(v < 0 for v in self.squares):
            raise ValueError("pulls and squares must be >= 0")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 0:
            raise ValueError(f"rounds must be a non-negative integer; got {self.rounds!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (lists, floats, an int)."""
        return {
            "names": list(self.names),
            "pulls": list(self.pulls),
            "totals": list(self.totals),
            "squares": list(self.squares),
            "rounds": self.rounds,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """The state ``to_dict()`` wrote; unknown keys raise ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"ChooserState.from_dict expects a dict; got {type(data).__name__}")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            valid = ", ".join(sorted(known))
            raise ValueError(f"unknown ChooserState key(s): {', '.join(unknown)}; valid keys: {valid}")
        return cls(**data)

    def mean(self, arm: str) -> float | None:
        """The arm's discounted mean reward; ``None`` for an arm never tried."""
        if arm not in self.names:
            return None
        i = self.names.index(arm)
        return self.totals[i] / self.pulls[i] if self.pulls[i] > 0 else None


def _check_arms(arms: Sequence[str]) -> list[str]:
    names = [arms] if isinstance(arms, str) else list(arms)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"arms must be a non-empty sequence of non-empty strings; got {arms!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"arms must be unique; got {names!r}")
    return names


def choose(state: ChooserState, arms: Sequence[str], seed: int = 0) -> str:
    """The arm to run next, one of ``arms`` (names; those in the state but not here are ignored).

    An arm without evidence (new, or never rewarded) is chosen first, in the order of ``arms``. Otherwise
    Thompson sampling: a draw from each arm's N(mean, s^2 / pulls) and the highest wins, where s^2 pools the
    arms' discounted within-arm variance with ``PRIOR_WEIGHT`` pseudo-observations of the squared mean reward.
    The draws are seeded by (``seed``, ``state.rounds``): the same state and seed give the same arm, and a
    constant seed still gives fresh draws each round.
    """
    names = _check_arms(arms)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    index = {name: i for i, name in enumerate(state.names)}
    for name in names:
        if name not in index or state.pulls[index[name]] <= 0:
            return name

    pulls = np.asarray(state.pulls)  # (A,) every arm in the state
    totals = np.asarray(state.totals)  # (A,)
    squares = np.asarray(state.squares)  # (A,)
    tried = pulls > 0
    within = np.maximum(squares[tried] - totals[tried] ** 2 / pulls[tried], 0.0).sum()
    pooled_mean = totals[tried].sum() / pulls[tried].sum()
    variance = (within + PRIOR_WEIGHT * pooled_mean**2) / (pulls[tried].sum() + PRIOR_WEIGHT)
    variance = max(float(variance), _VARIANCE_FLOOR)

    rows = np.array([index[name] for name in names])  # (a,) the offered arms in the state
    means = totals[rows] / pulls[rows]  # (a,)
    rng = np.random.default_rng([int(seed), state.rounds])
    draws = rng.normal(means, np.sqrt(variance / pulls[rows]))  # (a,)
    return names[int(np.argmax(draws))]


def update(state: ChooserState, arm: str, value: float, *, discount: float = DISCOUNT) -> ChooserState:
    """The state after ``arm``'s batch earned reward ``value`` (a finite number, e.g. ``reward(...)``).

    Every arm's evidence is first multiplied by ``discount`` (in (0, 1]; 1 keeps everything), then the arm gets
    one pull of ``value``. An arm not in the state is added. Returns a new state; ``state`` is unchanged.
    """
    (name,) = _check_arms([arm])
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating) or not math.isfinite(value):
        raise ValueError(f"reward must be a finite number; got {value!r}")
    if isinstance(discount, bool) or not isinstance(discount, int | float) or not 0.0 < discount <= 1.0:
        raise ValueError(f"discount must be in (0, 1]; got {discount!r}")
    names = list(state.names)
    pulls = [p * discount for p in state.pulls]
    totals = [t * discount for t in state.totals]
    squares = [s * discount for s in state.squares]
    if name not in names:
        names.append(name)
        pulls.append(0.0)
        totals.append(0.0)
        squares.append(0.0)
    i = names.index(name)
    r = float(value)
    pulls[i] += 1.0
    totals[i] += r
    squares[i] += r * r
    return ChooserState(
        names=tuple(names), pulls=tuple(pulls), totals=tuple(totals), squares=tuple(squares), rounds=state.rounds + 1
    )
