"""learner: the machine-learning side of the annotation platform, as a plain Python library.

Arrays, dataclasses and paths in and out; no Django, no Celery, no settings, no database.
Importing this package (or ``learner.config``, ``learner.data``, ``learner.metrics``,
``learner.strategies``) does not import torch: the modules that need it (``learner.encoder``,
``learner.losses``) are imported only by the code paths that train or encode.

The lifecycle is ``Encoder.load(EncoderConfig) -> encode -> EmbeddingStore``, then a tier:
``FastTier.train(Inputs(texts, embeddings), Y, labels, FastTierConfig) -> save(dir) -> load(dir) -> predict_topk``
(``learner.fast``; the platform retrains it every round) or the same with ``FullTier`` (``learner.full``, fine-tunes
the encoder). ``python -m learner.benchmark`` measures either on JSONL files.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
