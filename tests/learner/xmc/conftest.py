from __future__ import annotations

import pytest
import scipy.sparse as sp

from learner.xmc import XRLinear
from tests.learner.xmc.problems import FAST, make_problem


@pytest.fixture(scope="module")
def problem() -> tuple[sp.csr_matrix, sp.csr_matrix]:
    return make_problem()


@pytest.fixture(scope="module")
def model(problem) -> XRLinear:
    X, Y = problem
    return XRLinear.train(X[:500], Y[:500], FAST)
