"""Helpers for tests: a tiny BERT encoder folder built offline in about a second.

Used by ``tests/learner`` and available to any test suite that needs an ``Encoder`` without the
pretrained weights: ``EncoderConfig(path=build_tiny_encoder(tmp_dir))``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["TINY_ENCODER_SENTENCES", "build_tiny_encoder"]

_SUBJECTS = (
    "the cat",
    "a dog",
    "my friend",
    "the teacher",
    "our team",
    "this movie",
    "the weather",
)
_VERBS = ("loves", "hates", "sees", "finds", "makes", "breaks", "wins", "loses")
_OBJECTS = (
    "the game",
    "a sunny day",
    "bad news",
    "the red ball",
    "great music",
    "a long night",
    "fresh bread",
)
TINY_ENCODER_SENTENCES: tuple[str, ...] = tuple(
    f"{subject} {verb} {obj}." for subject in _SUBJECTS for verb in _VERBS for obj in _OBJECTS
)
_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_UNK = _SPECIAL[1]


def build_tiny_encoder(
    directory: str | os.PathLike[str],
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    vocab_size: int = 300,
    max_positions: int = 128,
    seed: int = 0,
) -> str:
    """Write a randomly initialised BERT (safetensors) and a WordPiece tokenizer to ``directory``.

    The tokenizer is trained on ``TINY_ENCODER_SENTENCES``; ``AutoTokenizer.from_pretrained`` and
    ``AutoModel.from_pretrained`` load the folder offline. Returns the folder as a string.
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)

    wordpiece = Tokenizer(models.WordPiece(unk_token=_UNK))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(_SPECIAL), show_progress=False)
    wordpiece.train_from_iterator(TINY_ENCODER_SENTENCES, trainer)
    cls_id = wordpiece.token_to_id("[CLS]")
    sep_id = wordpiece.token_to_id("[SEP]")
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    names = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")
    special_tokens = dict(zip(names, _SPECIAL, strict=True))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=wordpiece, model_max_length=max_positions, **special_tokens)
    tokenizer.save_pretrained(str(folder))

    config = BertConfig(
        vocab_size=wordpiece.get_vocab_size(),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=max_positions,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    model.save_pretrained(str(folder), safe_serialization=True)
    return str(folder)
