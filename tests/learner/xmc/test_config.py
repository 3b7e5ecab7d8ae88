from __future__ import annotations

import json

import pytest

from learner.xmc import TreeConfig, XRConfig

# ------------------------------------------------------------------------------------------------ configs


def test_configs_round_trip_through_json_with_the_nested_tree() -> None:
    config = XRConfig(
        tree=TreeConfig(branching=8, leaf_size=50, kmeans_iterations=7, seed=3),
        beam=4,
        negatives="tfn",
        loss="logistic",
        C=2.0,
        positive_weight=3.0,
        bias=0.0,
        tol=0.01,
        max_iter=50,
        weight_threshold=0.0,
        transform="sigmoid",
        n_jobs=2,
    )

    restored = XRConfig.from_dict(json.loads(json.dumps(config.to_dict())))

    assert restored == config and isinstance(restored.tree, TreeConfig)
    assert XRConfig.from_dict(XRConfig().to_dict()) == XRConfig()
    assert TreeConfig.from_dict(TreeConfig().to_dict()) == TreeConfig()


@pytest.mark.parametrize(
    ("cls", "changes", "field"),
    [
        (TreeConfig, {"branching": 12}, "branching"),
        (TreeConfig, {"branching": 1}, "branching"),
        (TreeConfig, {"leaf_size": 1}, "leaf_size"),
        (TreeConfig, {"kmeans_iterations": 0}, "kmeans_iterations"),
        (TreeConfig, {"seed": -1}, "seed"),
        (XRConfig, {"beam": 0}, "beam"),
        (XRConfig, {"negatives": "man"}, "negatives"),
        (XRConfig, {"loss": "squared"}, "loss"),
        (XRConfig, {"C": 0}, "C"),
        (XRConfig, {"positive_weight": -1}, "positive_weight"),
        (XRConfig, {"bias": -1}, "bias"),
        (XRConfig, {"tol": 0}, "tol"),
        (XRConfig, {"max_iter": 0}, "max_iter"),
        (XRConfig, {"weight_threshold": -0.1}, "weight_threshold"),
        (XRConfig, {"transform": "l5-hinge"}, "transform"),
        (XRConfig, {"n_jobs": 0}, "n_jobs"),
        (XRConfig, {"tree": {"branching": 3}}, "branching"),
        (XRConfig, {"tree": {"leaf": 3}}, "leaf"),
    ],
)
def test_configs_reject_bad_values_naming_the_field(cls, changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        cls.from_dict(changes)


def test_configs_without_led_neighbours_still_load_and_led_values_are_checked() -> None:
    old = {key: value for key, value in XRConfig().to_dict().items() if key != "led_neighbours"}  # saved before

    assert XRConfig.from_dict(old) == XRConfig()
    assert XRConfig(negatives="tfn+led").label_embedding and not XRConfig(negatives="tfn+led").matcher_aware
    assert XRConfig().matcher_aware and not XRConfig().label_embedding
    for bad, field in (
        ({"led_neighbours": 0}, "led_neighbours"),
        ({"led_neighbours": 2.5}, "led_neighbours"),
        ({"led_neighbours": True}, "led_neighbours"),
        ({"negatives": "tfn+led+man"}, "negatives"),
        ({"negatives": "led"}, "negatives"),
    ):
        with pytest.raises(ValueError, match=field):
            XRConfig.from_dict(bad)
