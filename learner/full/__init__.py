"""The full tier: fine-tunes the transformer encoder together with a multi-label head (GPU, CPU fallback).

Same interface as the fast tier (``learner.fast``)::

    model = FullTier.train(Inputs(texts=...), Y, labels, FullTierConfig(), validation=None)
    model.save(folder); model = FullTier.load(folder)
    idx, probs = model.predict_topk(Inputs(texts=...), k)        # (N, k) label indices, calibrated probabilities
    Y_hat = model.predict(Inputs(texts=...), objective="micro_f1")  # (N, L) 0/1 by the tuned decision rule
    vectors = model.embed(texts)                                 # (N, H) the fine-tuned encoder's embeddings
    model = model.update(Inputs(texts=...), Y_new, labels, replay=(old_inputs, Y_old))

- Encoder: a local Hugging Face model (default: the bundled all-MiniLM-L6-v2, sha256-checked by
  ``learner.encoder``); a document's features are its mean-pooled last hidden states, L2-normalised and scaled by
  sqrt(H) (``embed`` returns them without that scale: the vectors the fast tier reads).
- Head ``flat`` (up to ``flat_max_labels`` labels): one linear layer over all labels, bias started at each label's
  prior. Head ``tree`` (XR-Transformer, SCIENCE.md §2): a label tree of balanced spherical 2-means on PIFA label
  features (``learner.xmc.tree``); one linear layer per tree level, trained coarse to fine: stage t adds level t,
  whose rows start as copies of their parent's (bootstrapping), and trains levels 0..t jointly with the encoder.
  Level 0 is scored whole; below it only the children of the document's true parents and of the beam of the
  level above (teacher forcing + matcher-aware hard negatives). Inference is beam search; a label's score is the
  product of the probabilities down its path, so prediction costs O(depth * beam * branching) per document.
- Head ``aplc`` (APLC-XLNet, SCIENCE.md §2; only when asked for): the labels sorted by training frequency are cut
  into a head cluster and tail clusters at ``aplc_cutoffs`` (fractions of the labels, or of the training
  positives with ``aplc_cutoff_by="frequency"``). The head layer scores the head labels plus one gate per tail
  cluster; tail cluster i reads relu(LayerNorm(P_i x)), P_i projecting the H features to H // aplc_dim_factor**i
  dims (as in the public APLC-XLNet code), and scores its labels. p(tail label) = sigmoid(gate_i) * sigmoid(s):
  p(cluster) * p(label | cluster). The loss is that factorisation's likelihood: BCE (or ZLPR) on every head-layer
  output, gates included (target: the document has a label in the cluster), plus the loss of a tail cluster's
  labels on the documents whose gate target is 1 only - tail clusters are not evaluated for the others, which is
  where APLC saves compute. (The public code instead puts BCE on the product for those documents and the gate's
  BCE only on the others.) Prediction scores every label; the probabilities feed calibration like any head's.
- Training: AdamW (separate learning rates for encoder and head; no decay on biases and LayerNorm), linear warmup
  and decay, gradient accumulation and clipping, bf16 autocast on CUDA (``precision``), deterministic on CPU for a
  seed, an optional wall-time budget. BCE (summed over the scored labels) or ZLPR (``learner.losses``).
- Decision rule and calibration as in the fast tier (``learner.decision``): Platt scaling fitted on validation
  shortlists, global thresholds tuned for micro-F1 and macro-F1 (with or without an at-least-one fallback) and
  per-label thresholds where validation has enough positives. Without a validation set, ``val_fraction`` of the
  documents is held out for this and not trained on (fine-tuning twice would double the GPU cost).
- Scoring streams documents in chunks (longest texts together), with at most ``max_score_cells`` floats of scores
  (document x candidate, plus a tree's gathered weight rows) alive at once, so no dense documents x labels matrix
  is built for a pool.

The parts: ``config`` (``FullTierConfig``), ``heads`` (flat and tree heads), ``aplc`` (the APLC head) and ``tier``
(``FullTier``). torch and transformers are imported inside functions: importing this package is cheap.
"""

from learner.full.config import FullTierConfig
from learner.full.tier import FullTier
from learner.tier import Inputs

__all__ = ["FullTier", "FullTierConfig", "Inputs"]
