from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learner.losses import bce_loss, probabilities, zlpr_loss

SCORES = np.array([[2.0, -1.0, 0.5, -3.0], [-0.5, 4.0, -2.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
TARGETS = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
MASK = np.array([[True, True, False, True], [True, True, True, False], [False, True, True, True]])


def bce_reference(s: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None, w: float = 1.0) -> float:
    terms = []
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            if mask is not None and not mask[i, j]:
                continue
            p = 1.0 / (1.0 + math.exp(-s[i, j]))
            terms.append(-(w * y[i, j] * math.log(p) + (1 - y[i, j]) * math.log(1 - p)))
    return sum(terms) / len(terms)


def zlpr_reference(s: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> float:
    """SCIENCE.md §3 written out: log(1 + sum_neg e^s) + log(1 + sum_pos e^-s), mean over documents."""
    total = 0.0
    for i in range(s.shape[0]):
        keep = [j for j in range(s.shape[1]) if mask is None or mask[i, j]]
        neg = sum(math.exp(s[i, j]) for j in keep if y[i, j] == 0)
        pos = sum(math.exp(-s[i, j]) for j in keep if y[i, j] == 1)
        total += math.log1p(neg) + math.log1p(pos)
    return total / s.shape[0]


def t(array: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(array, dtype=dtype)


def test_bce_matches_the_float64_reference() -> None:
    loss = bce_loss(t(SCORES), t(TARGETS))

    assert loss.item() == pytest.approx(bce_reference(SCORES, TARGETS), rel=1e-12)


def test_bce_with_mask_averages_over_included_entries_only() -> None:
    loss = bce_loss(t(SCORES), t(TARGETS), torch.tensor(MASK))

    assert loss.item() == pytest.approx(bce_reference(SCORES, TARGETS, MASK), rel=1e-12)


def test_bce_pos_weight_scales_the_positive_terms() -> None:
    loss = bce_loss(t(SCORES), t(TARGETS), pos_weight=5.0)

    assert loss.item() == pytest.approx(bce_reference(SCORES, TARGETS, w=5.0), rel=1e-12)


def test_zlpr_matches_the_float64_reference() -> None:
    loss = zlpr_loss(t(SCORES), t(TARGETS))

    assert loss.item() == pytest.approx(zlpr_reference(SCORES, TARGETS), rel=1e-12)


def test_zlpr_with_mask_ignores_excluded_labels() -> None:
    loss = zlpr_loss(t(SCORES), t(TARGETS), torch.tensor(MASK))

    assert loss.item() == pytest.approx(zlpr_reference(SCORES, TARGETS, MASK), rel=1e-12)
    assert loss.item() != pytest.approx(zlpr_reference(SCORES, TARGETS), rel=1e-3)


def test_zlpr_with_every_label_masked_is_zero() -> None:
    loss = zlpr_loss(t(SCORES), t(TARGETS), torch.zeros(SCORES.shape, dtype=torch.bool))

    assert loss.item() == 0.0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_zlpr_masking_in_low_precision_matches_the_reference_without_inf_or_nan(dtype: torch.dtype) -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(scale=3.0, size=(8, 12))
    scores[:, -2:] = 60_000.0 if dtype == torch.float16 else 1e30  # huge values, all masked out
    targets = (rng.random((8, 12)) < 0.3).astype(np.float64)
    mask = np.ones((8, 12), dtype=bool)
    mask[:, -2:] = False
    mask[0, :5] = False
    low = t(scores, dtype).requires_grad_(True)
    rounded = t(scores, dtype).double().numpy()  # the reference sees the same rounded inputs

    loss = zlpr_loss(low, t(targets, dtype), torch.tensor(mask))
    loss.backward()

    assert loss.dtype == dtype
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(zlpr_reference(rounded, targets, mask), rel=2e-2)
    assert low.grad is not None and torch.isfinite(low.grad).all()
    assert torch.all(low.grad[torch.tensor(~mask)] == 0)


def test_zlpr_gradient_matches_float64() -> None:
    scores64 = t(SCORES).requires_grad_(True)
    zlpr_loss(scores64, t(TARGETS), torch.tensor(MASK)).backward()
    scores32 = t(SCORES, torch.float32).requires_grad_(True)
    zlpr_loss(scores32, t(TARGETS, torch.float32), torch.tensor(MASK)).backward()

    assert scores64.grad is not None and scores32.grad is not None
    np.testing.assert_allclose(scores32.grad.numpy(), scores64.grad.numpy(), atol=1e-6)


def test_probabilities_are_sigmoid_of_s_for_bce_and_of_2s_for_zlpr() -> None:
    scores = t(SCORES)

    np.testing.assert_allclose(probabilities(scores, "bce").numpy(), 1 / (1 + np.exp(-SCORES)))
    np.testing.assert_allclose(probabilities(scores, "zlpr").numpy(), 1 / (1 + np.exp(-2 * SCORES)))
    assert probabilities(torch.zeros(1, 1), "zlpr").item() == 0.5


def test_unknown_loss_name_raises() -> None:
    with pytest.raises(ValueError, match="loss must be one of bce, zlpr"):
        probabilities(t(SCORES), "hinge")


@pytest.mark.parametrize("loss", [bce_loss, zlpr_loss])
def test_shape_mismatch_raises(loss) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="targets shape"):
        loss(t(SCORES), t(TARGETS[:2]))
    with pytest.raises(ValueError, match="mask shape"):
        loss(t(SCORES), t(TARGETS), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="must be 2-D"):
        loss(t(SCORES[0]), t(TARGETS[0]))
