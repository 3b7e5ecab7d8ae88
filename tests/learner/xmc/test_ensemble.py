from __future__ import annotations

import numpy as np
import pytest

from tests.learner.xmc.problems import FAST, recall_at

# ----------------------------------------------------------------------------------------- ensemble


def test_ensemble_averages_members_and_round_trips(problem, tmp_path) -> None:
    from learner.xmc.ensemble import XREnsemble

    X, Y = problem
    ensemble = XREnsemble.train(X[:500], Y[:500], FAST, n_trees=2)
    member_seeds = [m.tree.config.seed for m in ensemble.members]
    indices, scores = ensemble.predict_topk(X[500:], 5)

    assert member_seeds == [0, 1]
    assert not np.array_equal(ensemble.members[0].tree.order, ensemble.members[1].tree.order)
    one, one_scores = ensemble.members[0].predict_topk(X[500:501], 15)
    two, two_scores = ensemble.members[1].predict_topk(X[500:501], 15)
    mean: dict[int, float] = {}
    for label, score in [*zip(one[0], one_scores[0], strict=True), *zip(two[0], two_scores[0], strict=True)]:
        mean[int(label)] = mean.get(int(label), 0.0) + float(score) / 2
    best = max(mean, key=lambda label: mean[label])
    assert indices[0, 0] == best and scores[0, 0] == pytest.approx(mean[best], rel=1e-5)
    assert recall_at(Y[500:], indices) > 0.6
    loaded = XREnsemble.load(ensemble.save(tmp_path / "ensemble"))
    assert np.array_equal(loaded.predict_topk(X[500:], 5)[0], indices)
