from __future__ import annotations

import dataclasses
import json

import pytest

from learner.config import BUNDLED_MODEL_SHA256, EncoderConfig, HeadConfig


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


def test_head_config_round_trips_through_json() -> None:
    config = HeadConfig(
        loss="zlpr",
        hidden_dim=64,
        dropout=0.2,
        epochs=7,
        batch_size=16,
        learning_rate=0.01,
        weight_decay=0.0,
        pos_weight=2.0,
        threshold=0.3,
        seed=5,
        device="cpu",
        val_fraction=0.25,
    )

    restored = HeadConfig.from_dict(json.loads(json.dumps(config.to_dict())))

    assert restored == config


def test_default_configs_round_trip() -> None:
    assert HeadConfig.from_dict(HeadConfig().to_dict()) == HeadConfig()
    assert EncoderConfig.from_dict(EncoderConfig().to_dict()) == EncoderConfig()


def test_whole_numbers_from_json_are_accepted_as_floats() -> None:
    config = HeadConfig.from_dict({"learning_rate": 1, "weight_decay": 0})

    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    assert config == HeadConfig(learning_rate=1.0, weight_decay=0.0)


@pytest.mark.parametrize("cls", [EncoderConfig, HeadConfig])
def test_from_dict_rejects_unknown_keys_and_names_them(cls: type) -> None:
    data = {**cls().to_dict(), "learning_rat": 0.1, "colour": "red"}

    with pytest.raises(ValueError, match="colour, learning_rat"):
        cls.from_dict(data)


def test_from_dict_rejects_a_non_dict() -> None:
    with pytest.raises(ValueError, match="expects a dict"):
        HeadConfig.from_dict(["bce"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("loss", "hinge", "loss must be one of bce, zlpr"),
        ("epochs", -1, "epochs must be >= 1"),
        ("epochs", 0, "epochs must be >= 1"),
        ("epochs", 2.5, "epochs must be an integer"),
        ("epochs", True, "epochs must be an integer"),
        ("threshold", 0.0, r"threshold must be in \(0.0, 1.0\)"),
        ("threshold", 1.0, "threshold must be in"),
        ("threshold", 1.5, "threshold must be in"),
        ("threshold", float("nan"), "threshold must be in"),
        ("dropout", 1.0, "dropout must be in"),
        ("learning_rate", 0.0, "learning_rate must be in"),
        ("weight_decay", -0.1, "weight_decay must be in"),
        ("pos_weight", 0.0, "pos_weight must be in"),
        ("hidden_dim", -1, "hidden_dim must be >= 0"),
        ("batch_size", 0, "batch_size must be >= 1"),
        ("seed", -3, "seed must be >= 0"),
        ("device", "tpu", "device must be one of auto, cpu, cuda"),
        ("val_fraction", 0.0, "val_fraction must be in"),
        ("val_fraction", 1.0, "val_fraction must be in"),
        ("learning_rate", "fast", "learning_rate must be a number"),
    ],
)
def test_head_config_rejects_bad_values(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HeadConfig(**{field: value})  # type: ignore[arg-type]


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
    config = HeadConfig()

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3  # type: ignore[misc]
