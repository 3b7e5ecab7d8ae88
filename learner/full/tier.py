"""The full tier's model, ``FullTier``: train, update, score, embed, save and load (see ``learner.full``)."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from learner.artifacts import write_folder, write_json
from learner.config import check_int, check_positive_int
from learner.decision import DecisionRule, RuleBasedPredictions, apply_platt, calibrated_tick_curve
from learner.device import retry_on_oom, run_batches
from learner.full.aplc import AplcHead
from learner.full.config import FullTierConfig
from learner.full.heads import TreeHead, batch_loss, targets_per_layer, tree_parents
from learner.full.ranker import FinalRanker
from learner.tier import (
    Inputs,
    label_names,
    model_header,
    old_label_columns,
    prior_logits,
    read_model_header,
    split_rows,
    target_matrix,
    tuned_decision,
)

__all__ = ["FullTier"]

logger = logging.getLogger(__name__)

FORMAT = "learner.FullTier"
FORMAT_VERSION = 1
CONFIG_FILE = "full_tier.json"
HEAD_FILE = "head.safetensors"
ENCODER_DIR = "encoder"
RANKER_DIR = "ranker"  # the final ranker's folder (learner.full.ranker), when the model has one
WEIGHTS_FILE = "model.safetensors"


# --- the model ------------------------------------------------------------------------------------------------------
class FullTier(RuleBasedPredictions):
    """A fine-tuned encoder, its multi-label head, calibration and decision rules, the label vocabulary.

    A CUDA out-of-memory error halves the batch and retries it (``learner.device.retry_on_oom``). The sizes that
    fit are kept on the model (runtime state, not saved), so later calls start from them: ``train_batch_cap``
    caps the training micro-batch (``_optimise``), ``inference_batch_cap`` the documents per forward pass of
    ``embed`` and scoring; both are None until an out-of-memory error happened.
    """

    def __init__(
        self,
        *,
        labels: list[str],
        config: FullTierConfig,
        tokenizer: Any,
        encoder: Any,
        head: TreeHead | AplcHead,
        device: str,
        max_length: int,
        platt: tuple[float, float],
        rules: dict[str, DecisionRule],
        metrics: dict[str, float],
        train_info: dict[str, Any],
        ranker: FinalRanker | None = None,
        tick_curve: dict[str, Any] | None = None,
    ) -> None:
        self.labels = labels
        self.config = config
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.head = head
        self.device = device
        self.max_length = max_length
        self.platt = platt
        self.rules = rules
        self.metrics = metrics
        self.train_info = train_info
        self.ranker = ranker  # the XR-Transformer final ranker (config.ranker "xr"), else None
        self.tick_curve = tick_curve  # pre-tick precision per threshold on the validation shortlists, when tuned
        self.train_batch_cap: int | None = None
        self.inference_batch_cap: int | None = None
        self._fingerprint: str | None = None

    def __repr__(self) -> str:
        return (
            f"FullTier(head={self.config.head!r}, labels={len(self.labels)}, levels={self.head.sizes}, "
            f"device={self.device!r})"
        )

    @property
    def uses_texts(self) -> bool:
        return True

    @property
    def uses_embeddings(self) -> bool:
        return False

    @property
    def dim(self) -> int:
        """Size H of the encoder's embeddings."""
        return self.head.dim

    @property
    def scale(self) -> float:
        """The head reads the L2-normalised embeddings times sqrt(H), so its inputs have unit-size entries."""
        return math.sqrt(self.dim)

    # ----------------------------------------------------------------- encoding
    def _use_bf16(self) -> bool:
        return _bf16(self.config, self.device)

    @contextmanager
    def _autocast(self) -> Iterator[None]:
        import torch

        with torch.autocast(device_type=self.device, dtype=torch.bfloat16, enabled=self._use_bf16()):
            yield

    def _embed_batch(self, texts: Sequence[str]) -> Any:
        """L2-normalised mean-pooled embeddings (B, H) float32 of a batch, with gradients when the encoder trains."""
        import torch.nn.functional as F

        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        batch = {name: value.to(self.device) for name, value in batch.items()}
        with self._autocast():
            hidden = self.encoder(**batch).last_hidden_state  # (B, T, H)
        mask = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
        pooled = (hidden.float() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, H)
        return F.normalize(pooled, p=2.0, dim=1)  # (B, H)

    @staticmethod
    def _longest_first(texts: Sequence[str]) -> np.ndarray:
        """(N,) row indices of the texts, longest first (batches of similar lengths need less padding)."""
        lengths = np.fromiter((len(text) for text in texts), dtype=np.int64, count=len(texts))
        return np.argsort(-lengths, kind="stable")

    def _inference_batches(self, rows: np.ndarray, size: int, work: Callable[[np.ndarray], None], *, what: str) -> None:
        """``work(part)`` on consecutive parts of `rows` of at most `size` rows (and at most
        ``inference_batch_cap``). A part that runs out of GPU memory is retried with half as many rows; the
        smaller size is kept for the rest of the call and, in ``inference_batch_cap``, for later calls. `work`
        must write its results only once they are computed."""
        if self.inference_batch_cap is not None:
            size = min(size, self.inference_batch_cap)
        used = run_batches(len(rows), size, lambda start, stop: work(rows[start:stop]), what=what)
        if used < size:
            self.inference_batch_cap = used

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """The fine-tuned encoder's embeddings: (N, H) float32, mean-pooled and L2-normalised, row i for
        ``texts[i]``: what the fast tier reads (re-embed the pool with it after fine-tuning).

        `batch_size` texts per forward pass (default `config.predict_batch_size`), halved after a CUDA
        out-of-memory error (see ``FullTier``)."""
        import torch

        texts = _texts(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)  # (N, H)
        self.encoder.eval()
        with (
            torch.inference_mode(),
            tqdm(total=len(texts), disable=not progress, desc="embed", unit="text") as bar,
        ):

            def embed_rows(rows: np.ndarray) -> None:
                out[rows] = self._embed_batch([texts[i] for i in rows]).cpu().numpy()
                bar.update(len(rows))

            size = batch_size or self.config.predict_batch_size
            self._inference_batches(self._longest_first(texts), size, embed_rows, what="embedding batch")
        return out

    @property
    def fingerprint(self) -> str:
        """16 hex digits naming the fine-tuned encoder's weights, max_length and pooling: embeddings from
        models with different fingerprints must not be mixed (computed once, from the weights)."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for name, tensor in sorted(self.encoder.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().float().cpu().numpy().tobytes())
            digest.update(json.dumps({"max_length": self.max_length, "pooling": "mean", "normalize": True}).encode())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    # ----------------------------------------------------------------- training
    @classmethod
    def train(
        cls,
        inputs: Inputs,
        Y: Any,
        labels: Sequence[str],
        config: FullTierConfig | None = None,
        *,
        validation: tuple[Inputs, Any] | None = None,
        on_progress: Callable[[float], None] | None = None,
        progress: bool = False,
    ) -> FullTier:
        """Fine-tunes the encoder with a multi-label head on `inputs` (N texts) with targets `Y` (N, L) 0/1 over
        `labels`.

        With `validation` = (inputs, Y), calibration and decision rules are tuned on it. Without, when there are
        at least `config.min_tune_documents` documents, `config.val_fraction` of them is held out for that (and
        not trained on); with fewer, the threshold is 0.5 and scores are not calibrated. `on_progress(fraction)`
        reports progress in [0, 1]; `progress` shows a progress bar. Raises ValueError on bad input.
        """
        names = label_names(labels)
        config = (config or FullTierConfig()).resolve(len(names))
        if config.ranker != "none" and config.head != "tree":
            raise ValueError(f"ranker {config.ranker!r} needs the tree head; this model's head is {config.head!r}")
        tree: Any = None
        featurizer: Any = None
        texts = _input_texts(inputs)
        if not texts:
            raise ValueError("no training documents")
        targets = target_matrix(Y, len(texts), len(names))
        texts, targets, val_texts, val_targets = _held_out(texts, targets, validation, len(names), config, config.seed)
        report = on_progress or (lambda fraction: None)
        started = time.monotonic()

        from learner.config import EncoderConfig
        from learner.encoder import Encoder

        base = Encoder.load(EncoderConfig(path=config.encoder, max_length=config.max_length, device=config.device))
        head: TreeHead | AplcHead
        if config.head == "aplc":
            head = AplcHead.build(targets, config, base.dim, base.device)
            logger.info("full tier APLC clusters: %s labels, widths %s", head.sizes, head.widths)
        else:
            if config.head == "tree":
                parents, tree, featurizer = cls._build_tree(texts, targets, config, base, progress)
            else:
                parents = [np.zeros(len(names), dtype=np.int64)]
            head = cls._new_head(parents, targets, config, base.dim, base.device)
        model = cls(
            labels=names,
            config=config,
            tokenizer=base.tokenizer,
            encoder=base.model,
            head=head,
            device=base.device,
            max_length=base.max_length,
            platt=(1.0, 0.0),
            rules={"micro_f1": DecisionRule(threshold=0.5, objective="micro_f1")},
            metrics={},
            train_info={
                "head": config.head,
                "levels": head.sizes,
                "device": base.device,
                "precision": "bf16" if _bf16(config, base.device) else "fp32",
                "base_encoder": base.path,
                "base_encoder_fingerprint": base.fingerprint,
                **({"cluster_widths": head.widths} if isinstance(head, AplcHead) else {}),
            },
        )
        layers = head.n_layers
        stages = [(layer, config.coarse_epochs) for layer in range(layers - 1)] + [(layers - 1, config.epochs)]
        info = model._optimise(
            texts, targets, stages, bootstrap=True, report=lambda f: report(0.9 * f), progress=progress
        )
        model.train_info.update(info)
        report(0.85)
        if config.ranker == "xr":
            ranker_started = time.monotonic()
            model.ranker = FinalRanker.train(
                texts,
                model.embed(texts, progress=progress),
                targets,
                tree=tree,
                featurizer=featurizer,
                xr=config.ranker_xr_config(),
                embedding_weight=config.ranker_embedding_weight,
                progress=progress,
            )
            model.train_info["ranker_seconds"] = round(time.monotonic() - ranker_started, 3)
        report(0.9)
        if val_texts is not None and val_targets is not None and len(val_texts) >= 2:
            model._tune(val_texts, val_targets)
        model.train_info.update(
            {
                "n_documents": len(texts),
                "n_validation": len(val_texts) if val_texts is not None else 0,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
        report(1.0)
        return model

    @staticmethod
    def _build_tree(
        texts: list[str], targets: sp.csr_matrix, config: FullTierConfig, base: Any, progress: bool
    ) -> tuple[list[np.ndarray], Any, Any]:
        """(the label tree's parent arrays, the ``LabelTree``, the TF-IDF featurizer fitted on `texts` or None), the
        tree from PIFA label features of TF-IDF or frozen-encoder embeddings."""
        from learner.xmc.tree import LabelTree, pifa

        featurizer: Any = None
        if config.tree_features == "tfidf":
            from learner.features import TfidfConfig, TfidfFeaturizer

            featurizer = TfidfFeaturizer.fit(texts, TfidfConfig(min_df=1), progress=progress)
            features: Any = featurizer.transform(texts)
        else:
            features = base.encode(texts, progress=progress)  # (N, H)
        tree = LabelTree.build(pifa(features, targets), config.tree_config(), progress=progress)
        logger.info("full tier label tree: %s", tree)
        return tree_parents(tree), tree, featurizer

    @staticmethod
    def _new_head(
        parents: list[np.ndarray], targets: sp.csr_matrix, config: FullTierConfig, dim: int, device: str
    ) -> TreeHead:
        """Zero weights; biases at the prior log-odds of each node (deeper levels are bootstrapped later)."""
        import torch

        layer_targets = targets_per_layer(targets, parents)
        weights = [torch.zeros(len(parent), dim, device=device, requires_grad=True) for parent in parents]
        biases = [
            torch.from_numpy(prior_logits(layer, config.loss)).to(device).requires_grad_(True)
            for layer in layer_targets
        ]
        return TreeHead(weights, biases, parents, config.loss)

    def _optimise(
        self,
        texts: list[str],
        targets: sp.csr_matrix,
        stages: list[tuple[int, int]],
        *,
        bootstrap: bool,
        report: Callable[[float], None],
        progress: bool,
        shuffle_key: int = 0,
    ) -> dict[str, Any]:
        """Trains the encoder and the head on (texts, targets) in stages: (last layer trained, epochs). Stage t
        trains layers 0..t jointly; with `bootstrap`, layer t > 0 first copies its parents' rows. Returns what
        happened (steps, losses, whether the time budget stopped it).

        An optimizer step reads `batch_size` * `grad_accumulation` documents in micro-batches of `batch_size`.
        When a step runs out of GPU memory, its gradients are dropped, the micro-batch is halved (the number of
        backward passes per step doubles: each batch is split into pieces whose losses are weighted by their
        share of its documents) and the step is redone: the effective batch, the number of steps and the learning
        rate schedule stay the same. The micro-batch that fit is kept in ``train_batch_cap`` (for the rest of the
        training and later updates) and reported as ``micro_batch_size``."""
        import torch
        from transformers import get_linear_schedule_with_warmup

        config = self.config
        head = self.head
        layer_targets = [targets] if isinstance(head, AplcHead) else targets_per_layer(targets, head.parents)
        batch = config.batch_size
        micro = min(batch, self.train_batch_cap or batch)  # documents per forward pass (smaller after an OOM)
        step_rows = batch * config.grad_accumulation  # documents per optimizer step
        per_epoch = math.ceil(len(texts) / batch)
        steps_per_epoch = math.ceil(per_epoch / config.grad_accumulation)
        total_steps = sum(epochs * steps_per_epoch for _, epochs in stages)
        deadline = None if config.max_train_seconds is None else time.monotonic() + config.max_train_seconds
        train_encoder = config.lr_encoder > 0
        losses: list[float] = []
        done_steps = 0
        stopped = False
        devices = [torch.device(self.device).index or 0] if self.device == "cuda" else []
        with (
            torch.random.fork_rng(devices=devices),
            tqdm(total=total_steps, disable=not progress, desc="fine-tune", unit="step") as bar,
        ):
            torch.manual_seed(config.seed)
            for stage, (upto, epochs) in enumerate(stages):
                if bootstrap and upto > 0:
                    self._bootstrap(upto)
                if stopped:
                    continue
                groups = self._parameter_groups(upto, train_encoder)
                optimizer = torch.optim.AdamW(groups, lr=config.lr_head)
                stage_steps = epochs * steps_per_epoch
                scheduler = get_linear_schedule_with_warmup(
                    optimizer, round(config.warmup_fraction * stage_steps), stage_steps
                )
                params = [p for group in groups for p in group["params"]]
                self.encoder.train(train_encoder)
                for epoch in range(epochs):
                    rng = np.random.default_rng([config.seed, shuffle_key, stage, epoch])
                    order = rng.permutation(len(texts))
                    running = torch.zeros((), device=self.device)  # summed batch losses, kept on the device
                    count = 0
                    optimizer.zero_grad(set_to_none=True)
                    for start in range(0, len(texts), step_rows):
                        rows = order[start : start + step_rows]  # one optimizer step's documents
                        backward = functools.partial(
                            self._step_backward,
                            texts=texts,
                            layer_targets=layer_targets,
                            rows=rows,
                            upto=upto,
                            params=params,
                        )
                        values, micro = retry_on_oom(backward, micro, what="training micro-batch")
                        if micro < batch:
                            self.train_batch_cap = micro
                        for value in values:
                            running += value
                        count += math.ceil(len(rows) / batch)
                        if config.max_grad_norm > 0:
                            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                        done_steps += 1
                        bar.update(1)
                        report(done_steps / max(total_steps, 1))
                        if deadline is not None and time.monotonic() > deadline:
                            stopped = True
                            break
                    losses.append(round(float(running) / max(count, 1), 5))
                    logger.info("stage %d epoch %d: mean loss %.4f", stage, epoch, losses[-1])
                    if stopped:
                        logger.warning("max_train_seconds reached after %d optimizer steps", done_steps)
                        break
        self.encoder.eval()
        for tensor in head.tensors():
            tensor.grad = None
        self._fingerprint = None
        return {
            "steps": done_steps,
            "planned_steps": total_steps,
            "epoch_losses": losses,
            "stopped_early": stopped,
            "stages": [list(stage) for stage in stages],
            **({"micro_batch_size": micro} if micro < batch else {}),
        }

    def _step_backward(
        self,
        micro: int,
        *,
        texts: list[str],
        layer_targets: list[sp.csr_matrix],
        rows: np.ndarray,
        upto: int,
        params: list[Any],
    ) -> list[Any]:
        """The backward passes of one optimizer step over the documents `rows`: batches of ``config.batch_size``,
        each split into pieces of at most `micro` documents whose losses are weighted by their share of the batch
        (with ``micro == batch_size`` this is plain gradient accumulation). Returns each pass's loss times its
        share (0-d tensors); clears the gradients of `params` before raising, so the step can be redone."""
        config = self.config
        batch = config.batch_size
        values: list[Any] = []
        try:
            for first in range(0, len(rows), batch):
                part = rows[first : first + batch]  # (B,) one batch of the configured size
                for piece_start in range(0, len(part), micro):
                    piece = part[piece_start : piece_start + micro]
                    share = len(piece) / len(part)  # 1.0 unless an out-of-memory error split the batch
                    loss = self._step_loss([texts[i] for i in piece], [y[piece] for y in layer_targets], upto)
                    (loss * share / config.grad_accumulation).backward()
                    values.append(loss.detach().float() * share)
        except RuntimeError:
            for param in params:
                param.grad = None
            raise
        return values

    def _parameter_groups(self, upto: int, train_encoder: bool) -> list[dict[str, Any]]:
        """AdamW groups: encoder matrices (decayed) and vectors (not), head weights (decayed) and biases (not)."""
        config = self.config
        decayed, plain = self.head.parameter_groups(upto)
        groups: list[dict[str, Any]] = []
        for param in self.encoder.parameters():
            param.requires_grad_(train_encoder)
        if train_encoder:
            matrices = [p for p in self.encoder.parameters() if p.ndim >= 2]
            vectors = [p for p in self.encoder.parameters() if p.ndim < 2]
            groups += [
                {"params": matrices, "lr": config.lr_encoder, "weight_decay": config.weight_decay},
                {"params": vectors, "lr": config.lr_encoder, "weight_decay": 0.0},
            ]
        groups += [
            {"params": decayed, "lr": config.lr_head, "weight_decay": config.weight_decay},
            {"params": plain, "lr": config.lr_head, "weight_decay": 0.0},
        ]
        return groups

    def _bootstrap(self, layer: int) -> None:
        """Layer `layer` starts from its parents: each node copies its parent's weights and bias."""
        import torch

        head = self._tree_head()
        parent = torch.from_numpy(head.parents[layer]).to(self.device)  # (n_t,)
        with torch.no_grad():
            head.weights[layer].copy_(head.weights[layer - 1][parent])
            head.biases[layer].copy_(head.biases[layer - 1][parent])

    def _tree_head(self) -> TreeHead:
        """The head, when it is a flat or tree one (TypeError for an APLC head)."""
        if not isinstance(self.head, TreeHead):
            raise TypeError(f"this operation needs a flat or tree head; this model's head is {self.config.head!r}")
        return self.head

    def _step_loss(self, texts: list[str], layer_targets: list[sp.csr_matrix], upto: int) -> Any:
        """The summed loss of layers 0..upto on one batch; layer t > 0 is scored on the children of the document's
        true parents and of the beam of layer t - 1 (teacher forcing + hard negatives). An APLC head's loss is
        ``AplcHead.loss_on``."""
        import torch

        if self.config.lr_encoder > 0:
            feats = self._embed_batch(texts) * self.scale  # (B, H)
        else:
            with torch.no_grad():
                feats = self._embed_batch(texts) * self.scale  # (B, H)
        if isinstance(self.head, AplcHead):
            truth = torch.from_numpy(layer_targets[0].toarray()).to(self.device)  # (B, L)
            with self._autocast():
                return self.head.loss_on(feats, truth)
        head = self.head
        dense = [torch.from_numpy(y.toarray()).to(self.device) for y in layer_targets[: upto + 1]]  # (B, n_t) each
        beams: list[tuple[Any, Any]] = []
        if upto > 0:
            with torch.no_grad(), self._autocast():
                beams = head.search(feats.detach(), self.config.beam, self.config.beam, upto=upto - 1)
        with self._autocast():
            total = batch_loss(head.dense(feats, 0).float(), dense[0], None, self.config.loss)
            for layer in range(1, upto + 1):
                beam_nodes = beams[layer - 1][0]  # (B, K)
                hits = torch.zeros_like(dense[layer - 1], dtype=torch.int64)  # (B, n_{t-1})
                hits.scatter_add_(1, beam_nodes.clamp(min=0), (beam_nodes >= 0).long())
                chosen = (dense[layer - 1] > 0) | (hits > 0)  # (B, n_{t-1}) true parents + beam
                width = int(chosen.sum(dim=1).max())
                flags, parents = chosen.float().topk(width, dim=1)  # (B, P)
                children = head.children[layer][parents]  # (B, P, C)
                mask = ((children >= 0) & (flags > 0).unsqueeze(2)).flatten(1)  # (B, P * C)
                candidates = children.flatten(1)  # (B, P * C)
                truth = dense[layer].gather(1, candidates.clamp(min=0)) * mask  # (B, P * C)
                scores = head.at(feats, layer, candidates).float()  # (B, P * C)
                total = total + batch_loss(scores, truth, mask, self.config.loss)
        return total

    # ----------------------------------------------------------------- tuning
    def _tune(self, texts: list[str], targets: sp.csr_matrix) -> None:
        """Calibration (Platt) and decision rules from validation shortlists; validation metrics."""
        idx, raw = self._raw_topk(texts, min(len(self.labels), self.config.shortlist))
        self.platt, self.rules, self.metrics = tuned_decision(idx, raw, targets, self.config)
        self.tick_curve = calibrated_tick_curve(idx, raw, targets, self.platt)

    # ----------------------------------------------------------------- incremental update
    def update(
        self,
        inputs: Inputs,
        Y: Any,
        labels: Sequence[str],
        *,
        replay: tuple[Inputs, Any] | None = None,
        validation: tuple[Inputs, Any] | None = None,
        epochs: int | None = None,
        on_progress: Callable[[float], None] | None = None,
        progress: bool = False,
    ) -> FullTier:
        """Continues fine-tuning this model on new documents plus a replay sample of old ones.

        `labels` must contain every label of this model (in any order; they are matched by name) and may add new
        ones. A new label of a flat head gets a new output row with zero weights and its prior as bias; in a tree
        it joins the leaf cluster whose path scores its positive documents reach best and starts from that leaf's
        row; in an APLC head it joins the last (rarest) tail cluster - a label new to the model has few positives
        yet - with zero weights and its prior given that cluster as bias (the head cluster when there is no tail
        cluster); the clusters are not re-cut (training from scratch re-sorts the labels by frequency). Then every
        layer trains jointly with the encoder for `epochs` (default `config.update_epochs`) on new + replay
        documents, from the current weights (fresh optimizer and warmup). Calibration and decision rules are
        re-tuned on `validation`, or on a held-out `val_fraction` of the update documents when there are at
        least `min_tune_documents`; otherwise the previous ones are kept. Returns a new model; this one is
        unchanged. Raises ValueError on bad input.
        """
        names, old_to_new = old_label_columns(self.labels, labels)
        if epochs is not None:
            check_int("epochs", epochs, 1)
        texts = _input_texts(inputs)
        targets = target_matrix(Y, len(texts), len(names))
        n_new = len(texts)
        if replay is not None:
            replay_inputs, replay_y = replay
            replay_texts = _input_texts(replay_inputs)
            targets = sp.vstack([targets, target_matrix(replay_y, len(replay_texts), len(names))]).tocsr()
            texts = texts + replay_texts
        if not texts:
            raise ValueError("no documents to update on")
        n_rows = len(texts)
        texts, targets, val_texts, val_targets = _held_out(
            texts, targets, validation, len(names), self.config, self.config.seed + 1
        )
        if len(texts) < n_rows:  # a held-out share left: the fit rows are sorted, so the new documents come first
            fit_rows, _ = split_rows(n_rows, self.config.val_fraction, self.config.seed + 1)
            n_new = int((fit_rows < n_new).sum())
        report = on_progress or (lambda fraction: None)
        started = time.monotonic()

        model = FullTier(
            labels=names,
            config=self.config,
            tokenizer=self.tokenizer,
            encoder=copy.deepcopy(self.encoder),
            head=(
                self.head.grown(old_to_new, len(names), targets)
                if isinstance(self.head, AplcHead)
                else self._grown_head(names, old_to_new, texts, targets)
            ),
            device=self.device,
            max_length=self.max_length,
            platt=self.platt,
            rules={name: rule.remapped(old_to_new) for name, rule in self.rules.items()},
            metrics=dict(self.metrics),
            train_info=dict(self.train_info),
        )
        model.train_batch_cap, model.inference_batch_cap = self.train_batch_cap, self.inference_batch_cap
        updates = int(self.train_info.get("updates", 0)) + 1
        info = model._optimise(
            texts,
            targets,
            [(model.head.n_layers - 1, epochs or self.config.update_epochs)],
            bootstrap=False,
            report=lambda f: report(0.9 * f),
            progress=progress,
            shuffle_key=updates,  # another shuffle than the training's and the earlier updates'
        )
        report(0.85)
        if self.ranker is not None:  # the ranker continues on the updated encoder's embeddings
            model.ranker = self.ranker.update(
                texts, model.embed(texts, progress=progress), targets, old_to_new, n_new_rows=n_new
            )
        report(0.9)
        if val_texts is not None and val_targets is not None and len(val_texts) >= 2:
            model._tune(val_texts, val_targets)
        model.train_info.update(
            {
                "incremental": True,
                "updates": updates,
                "update": info,
                "new_labels": [name for name in names if name not in set(self.labels)],
                "n_documents": int(self.train_info.get("n_documents", 0)) + n_new,
                "n_update_documents": len(texts),
                "seconds": round(time.monotonic() - started, 3),
            }
        )
        report(1.0)
        return model

    def _grown_head(
        self, names: list[str], old_to_new: np.ndarray, texts: list[str], targets: sp.csr_matrix
    ) -> TreeHead:
        """A copy of the head over the labels `names`: old label rows moved to their new index, new labels added
        (flat: zero weights and prior bias; tree: placed under the best-scoring leaf, starting from its row)."""
        import torch

        head = self._tree_head()
        n_labels = len(names)
        last = head.n_layers - 1
        added = np.setdiff1d(np.arange(n_labels), old_to_new)  # new label ids
        parents = [p.copy() for p in head.parents]
        label_parent = np.zeros(n_labels, dtype=np.int64)
        label_parent[old_to_new] = head.parents[last]
        if added.size and last > 0:
            label_parent[added] = self._best_leaves(added, texts, targets)
        parents[last] = label_parent
        weights = [w.detach().clone() for w in head.weights]
        biases = [b.detach().clone() for b in head.biases]
        dim = self.dim
        new_w = torch.zeros(n_labels, dim, device=self.device)  # (L, H)
        new_b = torch.from_numpy(prior_logits(targets, self.config.loss)).to(self.device)  # (L,)
        index = torch.from_numpy(old_to_new).to(self.device)
        new_w[index] = weights[last]
        new_b[index] = biases[last]
        if added.size and last > 0:
            fresh = torch.from_numpy(added).to(self.device)
            leaf = torch.from_numpy(label_parent[added]).to(self.device)
            new_w[fresh] = weights[last - 1][leaf]
            new_b[fresh] = biases[last - 1][leaf]
        weights[last], biases[last] = new_w, new_b
        return TreeHead(
            [w.requires_grad_(True) for w in weights], [b.requires_grad_(True) for b in biases], parents, head.loss
        )

    def _best_leaves(self, added: np.ndarray, texts: list[str], targets: sp.csr_matrix) -> np.ndarray:
        """For each new label, the leaf cluster with the highest mean path probability over its positive
        documents (the leaf with the fewest labels when it has none)."""
        import torch

        from learner.losses import probabilities

        head = self._tree_head()
        last = head.n_layers - 1
        n_leaves = head.sizes[last - 1]
        columns = targets[:, added].tocsc()
        rows = np.unique(columns.indices)
        sums = np.zeros((len(added), n_leaves))
        if rows.size:
            self.encoder.eval()

            def add_paths(part: np.ndarray) -> None:
                nonlocal sums
                with self._autocast():
                    feats = self._embed_batch([texts[i] for i in part]) * self.scale  # (B, H)
                    path = probabilities(head.dense(feats, 0).float(), head.loss)  # (B, n_0)
                    for layer in range(1, last):
                        parent = torch.from_numpy(head.parents[layer]).to(self.device)
                        own = probabilities(head.dense(feats, layer).float(), head.loss)  # (B, n_t)
                        path = path[:, parent] * own  # (B, n_t)
                sums += columns[part].T @ path.cpu().numpy().astype(np.float64)  # (A, n_leaves)

            with torch.inference_mode():
                self._inference_batches(rows, self.config.predict_batch_size, add_paths, what="scoring batch")
        sizes = np.bincount(head.parents[last], minlength=n_leaves).astype(np.float64)
        out = np.empty(len(added), dtype=np.int64)
        for j in range(len(added)):
            if columns[:, j].nnz:
                out[j] = int(np.argmax(sums[j]))
            else:
                out[j] = int(np.argmin(sizes))
            sizes[out[j]] += 1
        return out

    # ----------------------------------------------------------------- prediction
    def _raw_topk(
        self,
        texts: list[str],
        k: int,
        *,
        chunk_size: int | None = None,
        beam: int | None = None,
        progress: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N, k) label indices (-1: none) and uncalibrated probabilities (0 for none), best first."""
        if self.ranker is not None:
            return self._ranker_topk(self.ranker, texts, k, beam=beam, progress=progress)
        import torch

        head = self.head
        beam = beam or self.config.beam
        size = max(
            1, min(chunk_size or self.config.predict_batch_size, self.config.max_score_cells // head.cells(beam))
        )
        idx = np.full((len(texts), k), -1, dtype=np.int64)  # (N, k)
        raw = np.zeros((len(texts), k), dtype=np.float32)  # (N, k)
        self.encoder.eval()
        with (
            torch.inference_mode(),
            tqdm(total=len(texts), disable=not progress, desc="score", unit="doc") as bar,
        ):

            def score_rows(rows: np.ndarray) -> None:
                feats = self._embed_batch([texts[i] for i in rows]) * self.scale  # (B, H)
                with self._autocast():
                    nodes, path = head.search(feats, beam, k)[-1]  # (B, K) each
                found = nodes.shape[1]
                idx[rows, :found] = nodes.cpu().numpy()
                raw[rows, :found] = path.clamp(min=0.0).float().cpu().numpy()
                bar.update(len(rows))

            self._inference_batches(self._longest_first(texts), size, score_rows, what="scoring batch")
        return idx, raw

    def _ranker_topk(
        self, ranker: FinalRanker, texts: list[str], k: int, *, beam: int | None, progress: bool, chunk: int = 4096
    ) -> tuple[np.ndarray, np.ndarray]:
        """The final ranker's (N, k) label indices and scores, `chunk` documents at a time (their embeddings and
        features alive at once, never all of them)."""
        idx = np.full((len(texts), k), -1, dtype=np.int64)  # (N, k)
        raw = np.zeros((len(texts), k), dtype=np.float32)  # (N, k)
        for start in range(0, len(texts), chunk):
            part = texts[start : start + chunk]
            found, scores = ranker.predict_topk(part, self.embed(part, progress=progress), k, beam=beam)
            idx[start : start + len(part), : found.shape[1]] = found
            raw[start : start + len(part), : found.shape[1]] = scores
        return idx, raw

    def _calibrated(self, idx: np.ndarray, raw: np.ndarray) -> np.ndarray:
        return np.where(idx >= 0, apply_platt(raw, *self.platt), np.float32(0.0)).astype(np.float32)

    def predict_topk(
        self,
        inputs: Inputs,
        k: int,
        *,
        chunk_size: int | None = None,
        beam: int | None = None,
        progress: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best labels per document: (N, k) int64 indices and (N, k) float32 calibrated probabilities, best
        first (k is capped at the number of labels; a tree whose beam reaches fewer than k labels pads with -1
        and probability 0).

        Streams `chunk_size` documents at a time (default `config.predict_batch_size`), fewer when needed to keep
        at most `config.max_score_cells` floats of scores alive (see ``FullTierConfig``): never a documents x
        labels matrix. `beam` overrides the tree's beam (a beam as wide as the widest cluster level scores every
        label); flat and APLC heads score every label and ignore it. Uses the model's device.
        """
        check_positive_int(k)
        if chunk_size is not None:
            check_int("chunk_size", chunk_size, 1)
        if beam is not None:
            check_int("beam", beam, 1)
        k = min(int(k), len(self.labels))
        idx, raw = self._raw_topk(_input_texts(inputs), k, chunk_size=chunk_size, beam=beam, progress=progress)
        return idx, self._calibrated(idx, raw)

    # ----------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Writes a self-describing folder atomically (temp folder + rename): ``full_tier.json`` (config, labels,
        decision rule, metrics, versions), ``encoder/`` (the fine-tuned model and its tokenizer, Hugging Face
        format) and ``head.safetensors``."""
        from safetensors.torch import save_file

        from learner.encoder import file_sha256

        def write(tmp: Path) -> None:
            self.encoder.save_pretrained(str(tmp / ENCODER_DIR))
            self.tokenizer.save_pretrained(str(tmp / ENCODER_DIR))
            save_file(self.head.state(), str(tmp / HEAD_FILE))
            if self.ranker is not None:
                self.ranker.save(tmp / RANKER_DIR)
            payload = {
                **model_header(self, FORMAT, FORMAT_VERSION, "torch", "transformers"),
                "max_length": self.max_length,
                "ranker": self.ranker is not None,
                "sha256": {
                    "encoder": file_sha256(tmp / ENCODER_DIR / WEIGHTS_FILE),
                    "head": file_sha256(tmp / HEAD_FILE),
                },
            }
            write_json(tmp / CONFIG_FILE, payload, indent=2, sort_keys=True)

        return write_folder(directory, write)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, device: str = "auto") -> FullTier:
        """Loads a folder written by ``save`` onto `device` ("auto": CUDA when present), with no network access;
        the weights' sha256 must match the ones recorded at saving. Raises ValueError on a missing or corrupt
        folder."""
        from learner.device import resolve_device
        from learner.encoder import file_sha256

        folder = Path(directory)
        payload, config, labels, platt, rules = read_model_header(
            folder, CONFIG_FILE, FORMAT, FORMAT_VERSION, FullTierConfig, "full-tier"
        )
        try:
            max_length = int(payload["max_length"])
            hashes = {"encoder": folder / ENCODER_DIR / WEIGHTS_FILE, "head": folder / HEAD_FILE}
            for name, file in hashes.items():
                expected = payload["sha256"][name]
                if not file.is_file() or file_sha256(file) != expected:
                    raise ValueError(f"{file} is missing or its sha256 differs from the one recorded at saving")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"corrupt full-tier model {folder}: {exc}") from exc
        resolved = resolve_device(device)

        import torch
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder / ENCODER_DIR), local_files_only=True)
            encoder = AutoModel.from_pretrained(str(folder / ENCODER_DIR), local_files_only=True, dtype=torch.float32)
            state = load_file(str(folder / HEAD_FILE), device="cpu")
            head_cls = AplcHead if config.head == "aplc" else TreeHead
            head = head_cls.from_state(state, config.loss, resolved)
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
            raise ValueError(f"cannot load the full-tier model from {folder}: {exc}") from exc
        if head.n_labels != len(labels):
            raise ValueError(f"corrupt full-tier model {folder}: {head.n_labels} label rows for {len(labels)} labels")
        ranker = FinalRanker.load(folder / RANKER_DIR) if payload.get("ranker") else None
        encoder.eval()
        encoder.to(resolved)
        return cls(
            labels=labels,
            config=config,
            tokenizer=tokenizer,
            encoder=encoder,
            head=head,
            device=resolved,
            max_length=max_length,
            platt=platt,
            rules=rules,
            metrics=payload.get("metrics") or {},
            train_info=payload.get("train_info") or {},
            ranker=ranker,
            tick_curve=payload["decision"].get("tick_curve"),
        )


# --- helpers --------------------------------------------------------------------------------------------------------
def _bf16(config: FullTierConfig, device: str) -> bool:
    """Whether training and scoring run under bf16 autocast for this config on `device`."""
    return config.precision == "bf16" or (config.precision == "auto" and device == "cuda")


def _texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, not one string")
    out = list(texts)
    if not all(isinstance(text, str) for text in out):
        raise ValueError("every text must be a string")
    return out


def _held_out(
    texts: list[str],
    targets: sp.csr_matrix,
    validation: tuple[Inputs, Any] | None,
    n_labels: int,
    config: Any,
    seed: int,
) -> tuple[list[str], sp.csr_matrix, list[str] | None, sp.csr_matrix | None]:
    """(fit texts, fit targets, validation texts, validation targets): `validation` when given, else a held-out
    ``config.val_fraction`` (split with `seed`) when there are at least ``config.min_tune_documents``, else none."""
    if validation is not None:
        val_texts = _input_texts(validation[0])
        return texts, targets, val_texts, target_matrix(validation[1], len(val_texts), n_labels)
    if len(texts) >= config.min_tune_documents:
        fit_rows, val_rows = split_rows(len(texts), config.val_fraction, seed)
        return [texts[i] for i in fit_rows], targets[fit_rows], [texts[i] for i in val_rows], targets[val_rows]
    return texts, targets, None, None


def _input_texts(inputs: Any) -> list[str]:
    if not isinstance(inputs, Inputs):
        raise ValueError(f"expected learner.tier.Inputs; got {type(inputs).__name__}")
    if inputs.texts is None:
        raise ValueError("the full tier reads the documents' texts: pass Inputs(texts=...)")
    return _texts(inputs.texts)
