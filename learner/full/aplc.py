"""The full tier's APLC head (APLC-XLNet, SCIENCE.md §2): a head cluster and tail clusters of rarer labels."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from learner.full.config import FullTierConfig
from learner.full.heads import batch_loss
from learner.tier import prior_logits

__all__ = ["AplcHead", "aplc_clusters"]


# --- the APLC head --------------------------------------------------------------------------------------------------
def aplc_clusters(targets: sp.csr_matrix, cutoffs: Sequence[float], by: str) -> list[np.ndarray]:
    """The label ids of each APLC cluster, [head, tail 1, tail 2, ...], from the labels sorted by their number of
    positives in `targets` (N, L) (most frequent first, ties by label id).

    A cutoff c ends a cluster after the first ceil(c * L) labels (`by` = "labels") or after the fewest labels that
    hold at least a share c of the positives ("frequency"). Cutoffs that would leave a cluster empty are dropped,
    so a small label set can get fewer clusters than cutoffs + 1 (one label: only the head cluster)."""
    counts = np.asarray(targets.sum(axis=0)).ravel()  # (L,)
    n_labels = len(counts)
    order = np.argsort(-counts, kind="stable")  # (L,) most frequent first
    if by == "labels":
        bounds = [math.ceil(cutoff * n_labels - 1e-9) for cutoff in cutoffs]
    else:
        share = np.cumsum(counts[order]) / max(float(counts.sum()), 1.0)  # (L,)
        bounds = [int(np.searchsorted(share, cutoff - 1e-12, side="left")) + 1 for cutoff in cutoffs]
    edges = sorted({bound for bound in bounds if 1 <= bound <= n_labels - 1})
    return [order[start:stop] for start, stop in zip([0, *edges], [*edges, n_labels], strict=True)]


def _cluster_hits(targets: sp.csr_matrix, members: Sequence[np.ndarray]) -> np.ndarray:
    """(N, C) float32: 1 where the document has a label in cluster c (an APLC gate's target)."""
    out = np.zeros((targets.shape[0], len(members)), dtype=np.float32)
    for column, labels in enumerate(members):
        out[:, column] = targets[:, labels].getnnz(axis=1) > 0
    return out


class AplcHead:
    """APLC-XLNet's adaptive probabilistic label clusters (SCIENCE.md §2), on one device.

    ``members[0]`` are the head cluster's label ids, ``members[i]`` (i >= 1) tail cluster i's, each in the order of
    its output rows. The head layer scores the head labels and one gate per tail cluster: ``head_weight``
    (n_0 + T, H), ``head_bias`` (n_0 + T,). Tail cluster i reads relu(LayerNorm(P_i x)) with the projection P_i
    (d_i, H), no bias, as in the public APLC-XLNet code; its labels' scores are ``out_weight[i-1]`` (n_i, d_i) and
    ``out_bias[i-1]`` (n_i,). A head label's probability is sigmoid(s); a tail label's is sigmoid(gate_i) *
    sigmoid(s): p(cluster) * p(label | cluster) (sigmoid(2s) for ZLPR, as everywhere in this module).
    """

    def __init__(
        self,
        members: list[np.ndarray],
        head_weight: Any,
        head_bias: Any,
        tails: list[tuple[Any, Any, Any, Any, Any]],
        loss: str,
    ) -> None:
        import torch

        self.members = [np.asarray(labels, dtype=np.int64) for labels in members]
        self.head_weight = head_weight
        self.head_bias = head_bias
        self.projections = [tail[0] for tail in tails]  # (d_i, H) each
        self.norm_weights = [tail[1] for tail in tails]  # (d_i,)
        self.norm_biases = [tail[2] for tail in tails]  # (d_i,)
        self.out_weights = [tail[3] for tail in tails]  # (n_i, d_i)
        self.out_biases = [tail[4] for tail in tails]  # (n_i,)
        self.loss = loss
        n_labels = sum(len(labels) for labels in self.members)
        every = np.concatenate(self.members) if self.members else np.empty(0, dtype=np.int64)
        if not self.members or len(self.members[0]) == 0 or not np.array_equal(np.sort(every), np.arange(n_labels)):
            raise ValueError("the APLC clusters must hold every label exactly once, the head cluster at least one")
        if len(tails) != len(self.members) - 1:
            raise ValueError(f"{len(self.members) - 1} APLC tail clusters need as many tail layers; got {len(tails)}")
        if tuple(head_weight.shape) != (len(self.members[0]) + len(tails), head_weight.shape[1]) or tuple(
            head_bias.shape
        ) != (head_weight.shape[0],):
            raise ValueError(f"APLC head layer {tuple(head_weight.shape)} does not match its labels and gates")
        dim = int(head_weight.shape[1])
        for i, (projection, norm_weight, norm_bias, out_weight, out_bias) in enumerate(tails, start=1):
            width = int(projection.shape[0])
            if (
                tuple(projection.shape) != (width, dim)
                or tuple(norm_weight.shape) != (width,)
                or tuple(norm_bias.shape) != (width,)
                or tuple(out_weight.shape) != (len(self.members[i]), width)
                or tuple(out_bias.shape) != (len(self.members[i]),)
            ):
                raise ValueError(f"APLC tail cluster {i}: its tensors do not match its {len(self.members[i])} labels")
        device = head_weight.device
        self.index = [torch.from_numpy(labels).to(device) for labels in self.members]  # (n_c,) long each

    @classmethod
    def build(cls, targets: sp.csr_matrix, config: FullTierConfig, dim: int, device: str) -> AplcHead:
        """Clusters from the label frequencies of `targets` (N, L); zero label weights, biases at the prior
        log-odds (a tail label's: given its cluster), random projections (seeded by ``config.seed``)."""
        import torch

        members = aplc_clusters(targets, config.aplc_cutoffs, config.aplc_cutoff_by)
        gates = _cluster_hits(targets, members[1:])  # (N, T)
        head_targets = sp.hstack([targets[:, members[0]], sp.csr_matrix(gates)]).tocsr()  # (N, n_0 + T)
        head_weight = torch.zeros(head_targets.shape[1], dim, device=device)
        head_bias = torch.from_numpy(prior_logits(head_targets, config.loss)).to(device)
        generator = torch.Generator().manual_seed(config.seed)
        tails = []
        for i, labels in enumerate(members[1:], start=1):
            width = max(1, int(dim // config.aplc_dim_factor**i))
            projection = torch.randn(width, dim, generator=generator) / math.sqrt(dim)  # (d_i, H)
            active = np.flatnonzero(gates[:, i - 1])
            out_bias = prior_logits(targets[active][:, labels], config.loss)  # (n_i,)
            tails.append(
                (
                    projection.to(device),
                    torch.ones(width, device=device),
                    torch.zeros(width, device=device),
                    torch.zeros(len(labels), width, device=device),
                    torch.from_numpy(out_bias).to(device),
                )
            )
        return cls(members, head_weight, head_bias, tails, config.loss)._trainable()

    def _trainable(self) -> AplcHead:
        for tensor in self.tensors():
            tensor.requires_grad_(True)
        return self

    @property
    def n_layers(self) -> int:
        """One: every cluster trains in one stage."""
        return 1

    @property
    def sizes(self) -> list[int]:
        """The number of labels of each cluster, head first."""
        return [len(labels) for labels in self.members]

    @property
    def widths(self) -> list[int]:
        """The width of each cluster's input: H for the head cluster, d_i for tail cluster i."""
        return [self.dim] + [int(projection.shape[0]) for projection in self.projections]

    @property
    def dim(self) -> int:
        return int(self.head_weight.shape[1])

    @property
    def n_labels(self) -> int:
        return sum(self.sizes)

    def tensors(self) -> list[Any]:
        """Every trainable tensor of the head."""
        matrices, vectors = self.parameter_groups(0)
        return [*matrices, *vectors]

    def parameter_groups(self, upto: int) -> tuple[list[Any], list[Any]]:
        """(weight matrices, which take weight decay; biases and LayerNorm vectors, which do not)."""
        return (
            [self.head_weight, *self.projections, *self.out_weights],
            [self.head_bias, *self.norm_weights, *self.norm_biases, *self.out_biases],
        )

    def cells(self, beam: int) -> int:
        """Floats alive per document while scoring: every label's probability (twice: the scatter and the top-k),
        the head layer's outputs and the tail clusters' hidden vectors."""
        return 2 * self.n_labels + int(self.head_weight.shape[0]) + sum(self.widths[1:])

    def state(self) -> dict[str, Any]:
        import torch

        out: dict[str, Any] = {
            "aplc_head_weight": self.head_weight.detach().cpu().contiguous(),
            "aplc_head_bias": self.head_bias.detach().cpu().contiguous(),
        }
        for cluster, labels in enumerate(self.members):
            out[f"aplc_members_{cluster}"] = torch.from_numpy(labels.copy())
        names = ("projection", "norm_weight", "norm_bias", "out_weight", "out_bias")
        for i, tail in enumerate(self._tails(), start=1):
            for name, tensor in zip(names, tail, strict=True):
                out[f"aplc_{name}_{i}"] = tensor.detach().cpu().contiguous()
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any], loss: str, device: str) -> AplcHead:
        clusters = sum(1 for name in state if name.startswith("aplc_members_"))
        members = [state[f"aplc_members_{c}"].cpu().numpy().astype(np.int64) for c in range(clusters)]
        names = ("projection", "norm_weight", "norm_bias", "out_weight", "out_bias")
        tails = [tuple(state[f"aplc_{name}_{i}"].float().to(device) for name in names) for i in range(1, clusters)]
        head_weight = state["aplc_head_weight"].float().to(device)
        head_bias = state["aplc_head_bias"].float().to(device)
        return cls(members, head_weight, head_bias, tails, loss)._trainable()

    def _tails(self) -> list[tuple[Any, Any, Any, Any, Any]]:
        return list(
            zip(self.projections, self.norm_weights, self.norm_biases, self.out_weights, self.out_biases, strict=True)
        )

    # ----------------------------------------------------------------- scoring
    def head_scores(self, feats: Any) -> Any:
        """Scores (B, n_0 + T) of the head labels, then of the gates, for features (B, H)."""
        return feats @ self.head_weight.T + self.head_bias  # (B, n_0 + T)

    def tail_scores(self, feats: Any, cluster: int) -> Any:
        """Scores (B, n_i) of the labels of tail cluster `cluster` (1-based) for features (B, H)."""
        import torch.nn.functional as F

        i = cluster - 1
        hidden = feats @ self.projections[i].T  # (B, d_i)
        hidden = F.relu(F.layer_norm(hidden.float(), (hidden.shape[1],), self.norm_weights[i], self.norm_biases[i]))
        return hidden @ self.out_weights[i].T + self.out_biases[i]  # (B, n_i)

    def probabilities(self, feats: Any) -> Any:
        """(B, L) float32 every label's probability, columns in label-id order, for features (B, H)."""
        import torch

        from learner.losses import probabilities

        head = probabilities(self.head_scores(feats).float(), self.loss)  # (B, n_0 + T)
        n_head = len(self.members[0])
        out = torch.empty(feats.shape[0], self.n_labels, dtype=torch.float32, device=feats.device)  # (B, L)
        out[:, self.index[0]] = head[:, :n_head]
        for cluster in range(1, len(self.members)):
            own = probabilities(self.tail_scores(feats, cluster).float(), self.loss)  # (B, n_i)
            out[:, self.index[cluster]] = head[:, n_head + cluster - 1 : n_head + cluster] * own
        return out

    def search(self, feats: Any, beam: int, k: int, upto: int | None = None) -> list[tuple[Any, Any]]:
        """[(B, k) label ids, (B, k) probabilities], best first: every label is scored (`beam` is not used)."""
        probs = self.probabilities(feats)  # (B, L)
        values, labels = probs.topk(min(k, probs.shape[1]), dim=1)  # (B, k)
        return [(labels, values)]

    def loss_on(self, feats: Any, targets: Any) -> Any:
        """The mean over documents of the summed losses of the head layer's outputs (head labels and gates), plus,
        for each tail cluster, those of its labels on the documents that have a label in it (the gate's target):
        the negative log-likelihood of p(cluster) * p(label | cluster). feats (B, H); targets (B, L) float 0/1."""
        import torch

        batch = feats.shape[0]
        clusters = len(self.members)
        head_targets = targets[:, self.index[0]]  # (B, n_0)
        gates = [targets[:, self.index[cluster]].amax(dim=1) for cluster in range(1, clusters)]  # (B,) each
        truth = torch.cat([head_targets, *(gate.unsqueeze(1) for gate in gates)], dim=1)  # (B, n_0 + T)
        total = batch_loss(self.head_scores(feats).float(), truth, None, self.loss)
        for cluster in range(1, clusters):
            rows = (gates[cluster - 1] > 0).nonzero().squeeze(1)  # (A,)
            if rows.numel() == 0:
                continue
            scores = self.tail_scores(feats[rows], cluster).float()  # (A, n_i)
            tail_truth = targets[rows][:, self.index[cluster]]  # (A, n_i)
            total = total + batch_loss(scores, tail_truth, None, self.loss) * (rows.numel() / batch)
        return total

    # ----------------------------------------------------------------- new labels
    def grown(self, old_to_new: np.ndarray, n_labels: int, targets: sp.csr_matrix) -> AplcHead:
        """A copy over `n_labels` labels: old label ids moved by `old_to_new` (L_old,), new labels appended to the
        last tail cluster (the head cluster when there is none) with zero weights and their prior as bias (in a
        tail cluster: the prior given the cluster, on `targets` (N, L) with the new label ids)."""
        import torch

        added = np.setdiff1d(np.arange(n_labels), old_to_new)  # new label ids
        members = [old_to_new[labels] for labels in self.members]
        last = len(members) - 1
        members[last] = np.concatenate([members[last], added])
        head_weight = self.head_weight.detach().clone()
        head_bias = self.head_bias.detach().clone()
        tails = [tuple(tensor.detach().clone() for tensor in tail) for tail in self._tails()]
        if added.size:
            device = head_weight.device
            if last == 0:  # no tail cluster, hence no gate rows: the new labels' rows go at the end of the head
                prior = torch.from_numpy(prior_logits(targets[:, added], self.loss)).to(device)
                head_weight = torch.cat([head_weight, torch.zeros(len(added), self.dim, device=device)])
                head_bias = torch.cat([head_bias, prior])
            else:
                projection, norm_weight, norm_bias, out_weight, out_bias = tails[-1]
                active = np.flatnonzero(_cluster_hits(targets, [members[last]])[:, 0])
                prior = torch.from_numpy(prior_logits(targets[active][:, added], self.loss)).to(device)
                zeros = torch.zeros(len(added), out_weight.shape[1], device=device)
                tails[-1] = (
                    projection,
                    norm_weight,
                    norm_bias,
                    torch.cat([out_weight, zeros]),
                    torch.cat([out_bias, prior]),
                )
        return AplcHead(members, head_weight, head_bias, tails, self.loss)._trainable()
