"""learner: the machine-learning side of the annotation platform, as a plain Python library.

Arrays, dataclasses and paths in and out; no Django, no Celery, no settings, no database.
Importing this package (or ``learner.config``, ``learner.data``, ``learner.metrics``,
``learner.strategies``) does not import torch: the modules that need it (``learner.encoder``,
``learner.model``, ``learner.losses``) are imported only by the code paths that train or encode.

The lifecycle is ``Encoder.load(EncoderConfig) -> encode -> EmbeddingStore``, then
``MultiLabelModel.train(X, Y, labels, HeadConfig) -> save(dir) -> load(dir) -> predict_proba``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
