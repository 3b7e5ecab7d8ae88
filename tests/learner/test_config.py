from __future__ import annotations

import dataclasses
import json

import pytest

from learner.config import BUNDLED_MODEL_SHA256, EncoderConfig
from learner.fast import FastTierConfig


def test_encoder_config_round_trips_through_json() -> None:
    config = EncoderConfig(
        path="/models/minilm",
        max_length=64,
        batch_size=8,
        normalize=False,
        device="cpu",
        expected_sha256="AB" * 32,
    )

    restored = EncoderConfig.from_dict(json.loads(json.dumps(config.to_dict())))

    assert restored == config
    assert restored.expected_sha256 == "ab" * 32  # stored lower-case


def test_default_configs_round_trip() -> None:
    assert FastTierConfig.from_dict(FastTierConfig().to_dict()) == FastTierConfig()
    assert EncoderConfig.from_dict(EncoderConfig().to_dict()) == EncoderConfig()


def test_whole_numbers_from_json_are_accepted_as_floats() -> None:
    config = FastTierConfig.from_dict({"lexical_weight": 1, "val_fraction": 0.5})

    assert config.lexical_weight == 1.0 and isinstance(config.lexical_weight, float)
    assert config == FastTierConfig(lexical_weight=1.0, val_fraction=0.5)


@pytest.mark.parametrize("cls", [EncoderConfig, FastTierConfig])
def test_from_dict_rejects_unknown_keys_and_names_them(cls: type) -> None:
    data = {**cls().to_dict(), "learning_rat": 0.1, "colour": "red"}

    with pytest.raises(ValueError, match="colour, learning_rat"):
        cls.from_dict(data)


def test_from_dict_rejects_a_non_dict() -> None:
    with pytest.raises(ValueError, match="expects a dict"):
        FastTierConfig.from_dict(["bce"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_length": 0}, "max_length must be >= 2"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"device": "gpu"}, "device must be one of"),
        ({"path": ""}, "path must be None or a non-empty string"),
        ({"expected_sha256": "abc"}, "expected_sha256 must be 64 hex digits"),
        ({"expected_sha256": BUNDLED_MODEL_SHA256, "verify_hash": False}, "verify_hash is False"),
        ({"normalize": "yes"}, "normalize must be a bool"),
    ],
)
def test_encoder_config_rejects_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EncoderConfig(**kwargs)  # type: ignore[arg-type]


def test_configs_are_frozen() -> None:
    config = EncoderConfig()

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 3  # type: ignore[misc]
