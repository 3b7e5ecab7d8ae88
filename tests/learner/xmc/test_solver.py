from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from learner.xmc.solver import liblinear_binary
from tests.learner.xmc.problems import make_problem

# ----------------------------------------------------------------------------------------------- solver


@pytest.mark.parametrize("loss", ["squared_hinge", "logistic"])
def test_liblinear_call_matches_scikit_learn_estimators(loss: str) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    X, Y = make_problem(n_docs=200, seed=3)
    y = Y[:, 0].toarray().ravel()
    w = liblinear_binary(X, y, loss=loss, C=1.0, positive_weight=1.0, bias=1.0, tol=1e-6, max_iter=10_000, seed=0)
    if loss == "squared_hinge":
        reference = LinearSVC(C=1.0, tol=1e-6, max_iter=10_000).fit(X, y)
    else:
        reference = LogisticRegression(C=1.0, solver="liblinear", dual=True, tol=1e-6, max_iter=10_000).fit(X, y)

    np.testing.assert_allclose(w[:-1], reference.coef_.ravel(), atol=1e-4)
    assert w[-1] == pytest.approx(reference.intercept_[0], abs=1e-4)
    assert ((X @ w[:-1] + w[-1] > 0) == (y > 0)).mean() > 0.9  # the sign convention: positive class is 1


def test_forked_workers_end_even_when_the_parent_handles_sigterm_itself() -> None:
    # A host process (a benchmark, a web server) that turns SIGTERM into SystemExit for its clean-up: the pool's
    # workers inherited that handler, and terminating the pool at the end of fork_map then waited on them for ever.
    import subprocess
    import sys

    code = (
        "import math, signal, sys\n"
        "signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))\n"
        "from learner.xmc.solver import fork_map\n"
        "for _ in range(5):\n"
        "    assert sorted(fork_map(math.sqrt, [1.0, 4.0, 9.0, 16.0] * 4, 2, {})) == sorted([1.0, 2.0, 3.0, 4.0] * 4)\n"
        "print('all pools ended')\n"
    )
    root = Path(__file__).resolve().parents[3]
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("fork_map never returned: its workers kept the parent's SIGTERM handler")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "all pools ended"


def _square_or_fail(value: int) -> tuple[int, int]:
    if value < 0:
        raise ValueError(f"negative: {value}")
    return value * value, os.getpid()


@pytest.mark.parametrize("fork", [True, False])
def test_a_forked_call_returns_what_the_function_returns_and_raises_what_it_raises(fork: bool) -> None:
    from learner.xmc.solver import ForkedCall

    with ForkedCall(_square_or_fail, 7, fork=fork) as call:
        value, pid = call.result()
    assert value == 49 and (pid != os.getpid()) == fork  # forked: another process did the work
    failing = ForkedCall(_square_or_fail, -2, fork=fork)
    with pytest.raises(ValueError, match="negative: -2"):
        failing.result()
    with pytest.raises(RuntimeError, match="already taken"):
        failing.result()
    stopped = ForkedCall(_square_or_fail, 3, fork=False)
    stopped.stop()  # the caller failed before it needed the result: nothing runs
    with pytest.raises(RuntimeError):
        stopped.result()
