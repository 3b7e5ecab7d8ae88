"""The full tier's flat and tree heads (``TreeHead``: a flat head is a tree of one level) and their loss."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["TreeHead", "batch_loss", "targets_per_layer", "tree_parents"]


# --- the head -------------------------------------------------------------------------------------------------------
def tree_parents(tree: Any) -> list[np.ndarray]:
    """Per layer of a ``learner.xmc.LabelTree``, (n_t,) the parent of each node in layer t - 1 (layer 0: the root,
    0). Nodes of the last layer are label ids."""
    return [matrix.tocsr().indices.astype(np.int64) for matrix in tree.matrices()]  # one parent per row


def _ancestors(parents: list[np.ndarray]) -> list[np.ndarray]:
    """Per layer, (L,) the ancestor node of each label in that layer (the last layer: the label itself)."""
    out = [np.arange(len(parents[-1]), dtype=np.int64)]
    for layer in range(len(parents) - 1, 0, -1):
        out.insert(0, parents[layer][out[0]])
    return out


def _children_table(parent: np.ndarray, n_parents: int) -> np.ndarray:
    """(n_parents, C) the children of each parent, padded with -1 (C = the largest number of children)."""
    counts = np.bincount(parent, minlength=n_parents)  # (P,)
    table = np.full((n_parents, max(1, int(counts.max(initial=0)))), -1, dtype=np.int64)
    ordered = np.argsort(parent, kind="stable")  # children grouped by parent
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])  # (P,)
    slots = np.arange(len(parent)) - starts[parent[ordered]]
    table[parent[ordered], slots] = ordered
    return table


class TreeHead:
    """One linear layer per level: weights[t] (n_t, H), biases[t] (n_t,), on one device.

    A flat head has one layer over the labels. A tree head's layers are its levels, top first; the last one scores
    the labels (rows indexed by label id), and ``parents[t]`` (n_t,) links each node of layer t to its parent in
    layer t - 1. Scores of layer t are ``features @ weights[t].T + biases[t]``.
    """

    def __init__(self, weights: list[Any], biases: list[Any], parents: list[np.ndarray], loss: str) -> None:
        import torch

        if not weights or len(weights) != len(biases) or len(weights) != len(parents):
            raise ValueError("a head needs as many weight matrices, bias vectors and parent arrays as layers")
        self.weights = weights
        self.biases = biases
        self.parents = [np.asarray(parent, dtype=np.int64) for parent in parents]
        self.loss = loss
        device = weights[0].device
        self.children: list[Any] = [None]  # layer t >= 1: (n_{t-1}, C_t) long tensor, -1 padded
        for layer in range(1, len(weights)):
            table = _children_table(self.parents[layer], int(weights[layer - 1].shape[0]))
            self.children.append(torch.from_numpy(table).to(device))
        for layer, weight in enumerate(weights):
            if weight.shape[0] != len(self.parents[layer]) or biases[layer].shape != (weight.shape[0],):
                raise ValueError(f"head layer {layer}: weights {tuple(weight.shape)} do not match its nodes")

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    @property
    def sizes(self) -> list[int]:
        return [int(weight.shape[0]) for weight in self.weights]

    @property
    def dim(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def n_labels(self) -> int:
        return self.sizes[-1]

    def tensors(self) -> list[Any]:
        """Every trainable tensor of the head."""
        return [*self.weights, *self.biases]

    def parameter_groups(self, upto: int) -> tuple[list[Any], list[Any]]:
        """The tensors of layers 0..upto: (weight matrices, which take weight decay; biases, which do not)."""
        return self.weights[: upto + 1], self.biases[: upto + 1]

    def ancestors(self) -> list[np.ndarray]:
        """Per layer, (L,) the ancestor node of each label in that layer (the last layer: the label itself)."""
        return _ancestors(self.parents)

    def cells(self, beam: int) -> int:
        """Floats alive per document while scoring: the scores of all of layer 0, or in a deeper layer the scores
        of a beam's children and their gathered weight rows (H floats each)."""
        dim = int(self.weights[0].shape[1])
        widths = [self.sizes[0]] + [beam * int(table.shape[1]) * (dim + 1) for table in self.children[1:]]
        return max(widths)

    def state(self) -> dict[str, Any]:
        import torch

        out: dict[str, Any] = {}
        for layer in range(self.n_layers):
            out[f"weight_{layer}"] = self.weights[layer].detach().cpu().contiguous()
            out[f"bias_{layer}"] = self.biases[layer].detach().cpu().contiguous()
            out[f"parent_{layer}"] = torch.from_numpy(self.parents[layer].copy())
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any], loss: str, device: str) -> TreeHead:
        layers = sum(1 for name in state if name.startswith("weight_"))
        weights, biases, parents = [], [], []
        for layer in range(layers):
            weights.append(state[f"weight_{layer}"].float().to(device).requires_grad_(True))
            biases.append(state[f"bias_{layer}"].float().to(device).requires_grad_(True))
            parents.append(state[f"parent_{layer}"].cpu().numpy().astype(np.int64))
        return cls(weights, biases, parents, loss)

    # ----------------------------------------------------------------- scoring
    def dense(self, feats: Any, layer: int) -> Any:
        """Scores (B, n_t) of every node of `layer` for features (B, H)."""
        return feats @ self.weights[layer].T + self.biases[layer]  # (B, n_t)

    def at(self, feats: Any, layer: int, nodes: Any) -> Any:
        """Scores (B, S) of the nodes (B, S) of `layer` (-1 padding gets an arbitrary score: mask it)."""
        import torch

        safe = nodes.clamp(min=0)  # (B, S)
        rows = self.weights[layer][safe]  # (B, S, H)
        return torch.bmm(rows, feats.unsqueeze(2).to(rows.dtype)).squeeze(2) + self.biases[layer][safe]  # (B, S)

    def search(self, feats: Any, beam: int, k: int, upto: int | None = None) -> list[tuple[Any, Any]]:
        """Beam search from the top: per layer 0..upto, (B, K_t) node ids (-1: no node) and path probabilities
        (-1 for no node), best first. Layers above the last keep `beam` nodes, the last layer keeps `k`.

        A node's path probability is its parent's times its own (sigmoid(s), or sigmoid(2s) for ZLPR).
        """
        import torch

        from learner.losses import probabilities

        last = self.n_layers - 1 if upto is None else upto
        width = k if self.n_layers == 1 else beam
        probs = probabilities(self.dense(feats, 0).float(), self.loss)  # (B, n_0)
        path, nodes = probs.topk(min(width, probs.shape[1]), dim=1)  # (B, K)
        out = [(nodes, path)]
        for layer in range(1, last + 1):
            children = self.children[layer][nodes.clamp(min=0)]  # (B, K, C)
            valid = (children >= 0) & (nodes >= 0).unsqueeze(2)  # (B, K, C)
            candidates = children.flatten(1)  # (B, K * C)
            valid = valid.flatten(1)
            own = probabilities(self.at(feats, layer, candidates).float(), self.loss)  # (B, K * C)
            parent = path.unsqueeze(2).expand(-1, -1, children.shape[2]).flatten(1)  # (B, K * C)
            scores = torch.where(valid, parent * own, torch.full_like(own, -1.0))  # (B, K * C)
            width = k if layer == self.n_layers - 1 else beam
            path, position = scores.topk(min(width, scores.shape[1]), dim=1)  # (B, K')
            nodes = torch.where(path >= 0, candidates.gather(1, position), torch.full_like(position, -1))
            out.append((nodes, path))
        return out


def targets_per_layer(targets: sp.csr_matrix, parents: list[np.ndarray]) -> list[sp.csr_matrix]:
    """Per layer of a head with these parent arrays, (N, n_t) 0/1: whether the document has a label under each
    node."""
    out = []
    n_labels = targets.shape[1]
    for ancestor, parent in zip(_ancestors(parents), parents, strict=True):
        n_nodes = len(parent)
        if n_nodes == n_labels and np.array_equal(ancestor, np.arange(n_labels)):
            out.append(targets)
            continue
        assign = sp.csr_matrix(
            (np.ones(n_labels, dtype=np.float32), (np.arange(n_labels), ancestor)), shape=(n_labels, n_nodes)
        )  # (L, n_t)
        layer = (targets @ assign).tocsr()  # (N, n_t)
        layer.data[:] = 1.0
        out.append(layer)
    return out


def batch_loss(scores: Any, targets: Any, mask: Any | None, loss: str) -> Any:
    """Mean over documents of the per-document loss on the scored entries: the summed binary cross-entropies, or
    ZLPR. scores, targets (B, S) float32; mask (B, S) bool (None: every entry counts)."""
    import torch
    import torch.nn.functional as F

    from learner.losses import zlpr_loss

    if loss == "zlpr":
        return zlpr_loss(scores, targets, mask, reduction="none").mean()
    entries = F.binary_cross_entropy_with_logits(scores, targets, reduction="none")  # (B, S)
    if mask is not None:
        entries = torch.where(mask, entries, torch.zeros_like(entries))
    return entries.sum(dim=1).mean()
