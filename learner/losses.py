"""Multi-label losses (BCE and ZLPR, SCIENCE.md §3) and the matching calibrated probabilities.

This module imports torch at the top; the tiers (``learner.fast``, ``learner.full``) import it inside the functions
that train or score, never at package import time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from learner.config import LOSSES

__all__ = ["bce_loss", "probabilities", "zlpr_loss"]


def _check(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None) -> None:
    if scores.dim() != 2:
        raise ValueError(f"scores must be 2-D (B, L); got shape {tuple(scores.shape)}")
    if targets.shape != scores.shape:
        raise ValueError(f"targets shape {tuple(targets.shape)} != scores shape {tuple(scores.shape)}")
    if mask is not None and mask.shape != scores.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} != scores shape {tuple(scores.shape)}")


def bce_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    pos_weight: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """One-vs-all binary cross-entropy, averaged over (documents x labels).

    logits (B, L) scores; targets (B, L) in {0, 1}; mask (B, L) bool, True = the entry counts (the mean
    is then over the included entries). ``pos_weight`` (scalar or (L,)) multiplies the positive terms.
    Returns a scalar tensor.
    """
    _check(logits, targets, mask)
    weight = None
    if pos_weight is not None:
        weight = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    per_entry = F.binary_cross_entropy_with_logits(
        logits, targets.to(logits.dtype), reduction="none", pos_weight=weight
    )  # (B, L)
    if mask is None:
        return per_entry.mean()
    included = mask.to(torch.bool)  # (B, L)
    count = included.sum().clamp(min=1)
    return torch.where(included, per_entry, torch.zeros_like(per_entry)).sum() / count


def zlpr_loss(
    scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None, *, reduction: str = "mean"
) -> torch.Tensor:
    """ZLPR loss: log(1 + sum_{neg} e^{s}) + log(1 + sum_{pos} e^{-s}), averaged over documents.

    scores (B, L); targets (B, L) in {0, 1}; mask (B, L) bool, True = the label is in the document's
    shortlist (excluded labels are neither positive nor negative). Computed as logsumexp over the scores
    with an appended zero column; excluded entries are set to the dtype's minimum, so the loss is exact
    in bfloat16 and float16 too. Returns a scalar tensor, or the (B,) per-document losses with
    ``reduction="none"``.
    """
    _check(scores, targets, mask)
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none'; got {reduction!r}")
    positive = targets.to(torch.bool)  # (B, L)
    included = torch.ones_like(positive) if mask is None else mask.to(torch.bool)  # (B, L)
    floor = torch.finfo(scores.dtype).min
    neg_scores = torch.where(~positive & included, scores, floor)  # (B, L)
    pos_scores = torch.where(positive & included, -scores, floor)  # (B, L)
    zero = scores.new_zeros(scores.shape[0], 1)  # (B, 1)
    neg_term = torch.logsumexp(torch.cat([zero, neg_scores], dim=1), dim=1)  # (B,)
    pos_term = torch.logsumexp(torch.cat([zero, pos_scores], dim=1), dim=1)  # (B,)
    per_document = neg_term + pos_term  # (B,)
    return per_document if reduction == "none" else per_document.mean()


def probabilities(scores: torch.Tensor, loss: str) -> torch.Tensor:
    """Calibrated probabilities (B, L) from scores (B, L): sigmoid(s) for BCE, sigmoid(2s) for ZLPR."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    if loss == "zlpr":
        return torch.sigmoid(2.0 * scores)
    return torch.sigmoid(scores)
