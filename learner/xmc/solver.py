"""Training one ranker layer: per parent node, binary liblinear classifiers for its children.

Every child of a parent node gets a linear classifier trained on the documents routed to the parent
(its rows of X, sliced once per parent and restricted to the columns they use); weights below the
threshold are dropped. The binary problems are solved with the liblinear build that scikit-learn
ships, called through ``sklearn.svm._liblinear.train_wrap`` (the function ``LinearSVC.fit`` ends in),
because the public estimators re-validate and copy the data for every label, which costs more than
the solve itself here. ``tests/learner/xmc/test_solver.py`` checks this call against ``LinearSVC`` and
``LogisticRegression`` so that a scikit-learn upgrade that changes it fails loudly.

Parallelism: liblinear draws its random coordinate order from one process-wide generator, so
threads would race on it; the parents are instead split over worker processes forked for the layer
(``n_jobs``), which share X copy-on-write; a layer with less work than ``MIN_FORK_WORK`` is trained
in-process. Each binary problem is seeded from (layer, child), so the
result does not depend on ``n_jobs`` or on scheduling. Where fork is not available (or this is a
daemonic process, e.g. a Celery prefork child) the layer is trained in-process.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from learner.xmc.config import XRConfig

__all__ = ["LayerTask", "LayerWeights", "fork_map", "liblinear_binary", "resolve_jobs", "train_layer"]

logger = logging.getLogger(__name__)

# liblinear solver ids (linear.h): dual solvers for L2-regularised losses.
_SOLVER = {"squared_hinge": 1, "hinge": 3, "logistic": 7}
_NO_POSITIVE_BIAS = (
    -10.0
)  # a child without any positive document: w = 0 and a score of ~0, so it never takes a beam slot from a trained child
_STATE: dict[str, Any] = {}  # the layer's data, inherited by forked workers
# A layer whose work (stored feature values of its routed documents x children) is below this is trained in-process:
# forking the workers costs more than it saves there (a big parent process, e.g. a Celery worker or a test session,
# takes up to a second per pool, and small trees, e.g. a few hundred labelled documents, train in milliseconds).
MIN_FORK_WORK = 2_000_000


def resolve_jobs(n_jobs: int) -> int:
    """-1 -> the number of CPU cores this process may run on; otherwise ``n_jobs``."""
    if n_jobs != -1:
        return n_jobs
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def liblinear_binary(
    X: sp.csr_matrix,
    y: np.ndarray,
    *,
    loss: str,
    C: float,
    positive_weight: float,
    bias: float,
    tol: float,
    max_iter: int,
    seed: int,
) -> np.ndarray:
    """Solve one L2-regularised binary problem in the dual with liblinear.

    X (n, F) float32 or float64 CSR with int32 indices; y (n,) 0/1 with both classes present. Returns
    w (F + 1,) float64: the weights, then the bias weight (0 when ``bias`` is 0). The decision value is
    x . w[:F] + bias * w[F].
    """
    from sklearn.svm import _liblinear  # scikit-learn is only needed for training

    _liblinear.set_verbosity_wrap(0)
    targets = np.ascontiguousarray(y, dtype=np.float64)  # (n,) classes 0 (negative) and 1 (positive)
    class_weight = np.array([1.0, positive_weight], dtype=np.float64)  # order of the sorted classes
    sample_weight = np.ones(X.shape[0], dtype=np.float64)
    raw, _ = _liblinear.train_wrap(
        X,
        targets,
        True,
        _SOLVER[loss],
        tol,
        bias if bias > 0 else -1.0,
        C,
        class_weight,
        max_iter,
        seed,
        0.1,
        sample_weight,
    )
    w = np.asarray(raw, dtype=np.float64).ravel()
    return w if bias > 0 else np.append(w, 0.0)


@dataclass
class LayerTask:
    """One parent node: the training documents routed to it and the range of its children."""

    parent: int
    rows: np.ndarray  # (n_p,) int64 sorted document indices
    start: int  # first child position
    stop: int  # one past the last child position
    only: np.ndarray | None = None  # (m,) train just these child positions in [start, stop) (an update)

    def positions(self) -> np.ndarray:
        """The child positions this task trains, in order."""
        return np.arange(self.start, self.stop) if self.only is None else np.asarray(self.only, dtype=np.int64)


@dataclass
class LayerWeights:
    """A trained layer: W (n_nodes, F) float32 CSR in tree order and bias (n_nodes,) float32 (b * bias)."""

    weights: sp.csr_matrix
    bias: np.ndarray


def train_parent(task: LayerTask) -> tuple[int, list[tuple[np.ndarray, np.ndarray, float]]]:
    """Train the children of one parent; returns per child (``task.positions()``) (columns, weights, bias term)."""
    X: sp.csr_matrix = _STATE["X"]
    Y: sp.csc_matrix = _STATE["Y"]
    config: XRConfig = _STATE["config"]
    layer: int = _STATE["layer"]
    positions = task.positions()
    n_children = len(positions)
    out: list[tuple[np.ndarray, np.ndarray, float]] = []
    empty = (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32))
    if len(task.rows) == 0:
        return task.start, [(*empty, _NO_POSITIVE_BIAS)] * n_children
    rows = X[task.rows]  # (n_p, F)
    seen = np.zeros(X.shape[1], dtype=bool)
    seen[rows.indices] = True
    used = np.flatnonzero(seen)  # (F_p,) the columns the parent's documents use
    remap = np.zeros(X.shape[1], dtype=np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    local = sp.csr_matrix(
        (rows.data, remap[rows.indices], rows.indptr.astype(np.int32)), shape=(rows.shape[0], len(used))
    )  # (n_p, F_p)
    targets = Y[:, positions][task.rows].toarray()  # (n_p, m) 0/1
    threshold = config.weight_threshold
    for j, position in enumerate(positions):
        y = targets[:, j]
        positives = int(y.sum())
        if positives == 0:
            out.append((*empty, _NO_POSITIVE_BIAS))
            continue
        if positives == len(y):
            out.append((*empty, 1.0))
            continue
        w = liblinear_binary(
            local,
            y,
            loss=config.loss,
            C=config.C,
            positive_weight=config.positive_weight,
            bias=config.bias,
            tol=config.tol,
            max_iter=config.max_iter,
            seed=(layer * 1_000_003 + int(position)) % (2**31 - 1),
        )
        coef = w[:-1]
        keep = np.flatnonzero(np.abs(coef) >= threshold) if threshold > 0 else np.flatnonzero(coef)
        out.append((used[keep].astype(np.int32), coef[keep].astype(np.float32), float(w[-1] * config.bias)))
    return task.start, out


def _can_fork() -> bool:
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    return not multiprocessing.current_process().daemon


def _worker_signals() -> None:
    """A forked worker ends on SIGTERM, as Pool.terminate (run by the pool's ``with`` block) expects: a handler the
    parent installed (e.g. one that only raises SystemExit for its clean-up) left workers waiting on the task queue's
    lock forever, and the parent with them."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops the pool


def fork_map(
    function: Callable[[Any], Any],
    items: Sequence[Any],
    n_jobs: int,
    state: dict[str, Any],
    on_result: Callable[[Any], None] | None = None,
) -> list[Any]:
    """``[function(item) for item in items]`` over ``n_jobs`` forked worker processes, in any order.

    ``state`` is put in the module-level ``_STATE`` before forking, so the workers read it (large
    arrays included) copy-on-write instead of receiving it pickled. ``function`` must be a module-level
    function; its results come back pickled. Runs in-process with one job, without fork, or in a
    daemonic process (which may not have children).
    """
    jobs = min(resolve_jobs(n_jobs), max(1, len(items)))
    _STATE.clear()
    _STATE.update(state)
    results: list[Any] = []
    try:
        if jobs > 1 and _can_fork():
            with multiprocessing.get_context("fork").Pool(jobs, initializer=_worker_signals) as pool:
                for result in pool.imap_unordered(function, items, chunksize=1):
                    results.append(result)
                    if on_result is not None:
                        on_result(result)
        else:
            for item in items:
                result = function(item)
                results.append(result)
                if on_result is not None:
                    on_result(result)
    finally:
        _STATE.clear()
    return results


class ForkedCall:
    """``function(*args)`` running in one forked process while the caller goes on (``result()`` waits for it).

    The arguments reach the child copy-on-write (set before the fork, never pickled); the result comes back
    pickled. Where forking is not possible (no fork, or a daemonic process) or not wanted (``fork=False``: too little
    work to pay for forking a big process) the call runs at ``result()``.
    Used to overlap independent single-threaded work, e.g. the label-name matcher's fit with TF-IDF's.
    """

    def __init__(self, function: Callable[..., Any], *args: Any, fork: bool = True) -> None:
        self._call: tuple[Callable[..., Any], tuple[Any, ...]] | None = (function, args)
        self._pool: Any = None
        self._pending: Any = None
        if fork and _can_fork():
            _CALL["call"] = self._call
            try:
                self._pool = multiprocessing.get_context("fork").Pool(1, initializer=_worker_signals)
            finally:
                _CALL.clear()
            self._pending = self._pool.apply_async(_run_forked_call)
            self._call = None

    def result(self) -> Any:
        """The call's return value (its exception re-raised); waits for the child."""
        if self._call is not None:
            function, args = self._call
            self._call = None
            return function(*args)
        if self._pool is None:
            raise RuntimeError("the forked call's result was already taken or the call was stopped")
        try:
            return self._pending.get()
        finally:
            self.stop()

    def stop(self) -> None:
        """End the child if it still runs (nothing to do after ``result()``)."""
        self._call = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.terminate()
            pool.join()

    def __enter__(self) -> ForkedCall:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_CALL: dict[str, Any] = {}


def _run_forked_call() -> Any:
    function, args = _CALL["call"]
    return function(*args)


def _split_tasks(tasks: list[LayerTask], jobs: int) -> list[LayerTask]:
    """Split parents whose work (documents x children) exceeds a quarter of a worker's share by children,
    so that the root (one parent) or a top level of few parents still keeps every worker busy."""
    cost = [len(t.rows) * (t.stop - t.start) for t in tasks]
    budget = max(1.0, sum(cost) / (4.0 * jobs))
    out = []
    for task, work in zip(tasks, cost, strict=True):
        pieces = min(task.stop - task.start, max(1, int(np.ceil(work / budget))))
        bounds = np.linspace(task.start, task.stop, pieces + 1).round().astype(int)
        out += [LayerTask(task.parent, task.rows, int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]
    return out


def train_layer(
    X: sp.csr_matrix,
    Y: sp.csc_matrix,
    tasks: list[LayerTask],
    n_nodes: int,
    config: XRConfig,
    layer: int,
    *,
    on_task: Callable[[int], None] | None = None,
) -> LayerWeights:
    """Train every child of every task's parent; Y (N, n_nodes) are the layer's 0/1 targets (tree order).

    ``on_task(n_children)`` is called as each group of children finishes. Every position in
    [0, n_nodes) must be covered by exactly one task.
    """
    jobs = resolve_jobs(config.n_jobs)
    row_nnz = np.diff(X.indptr)  # (N,) stored values per document
    work = sum(int(row_nnz[t.rows].sum()) * (t.stop - t.start) for t in tasks)
    if work < MIN_FORK_WORK:
        jobs = 1  # in-process: the same result (each problem is seeded by its child), without forking
    # Most expensive first so that the workers finish together.
    pieces = sorted(_split_tasks(tasks, jobs), key=lambda t: -(len(t.rows) * (t.stop - t.start)))
    results = fork_map(
        train_parent,
        pieces,
        jobs,
        {"X": X, "Y": Y, "config": config, "layer": layer},
        on_result=(lambda result: on_task(len(result[1]))) if on_task is not None else None,
    )
    results.sort(key=lambda r: r[0])
    indptr = np.zeros(n_nodes + 1, dtype=np.int64)
    bias = np.zeros(n_nodes, dtype=np.float32)
    columns, values = [], []
    position = 0
    for start, children in results:
        if start != position:
            raise ValueError(f"layer {layer}: tasks do not cover the nodes contiguously (gap at {position})")
        for cols, vals, b in children:
            columns.append(cols)
            values.append(vals)
            bias[position] = b
            indptr[position + 1] = indptr[position] + len(cols)
            position += 1
    if position != n_nodes:
        raise ValueError(f"layer {layer}: tasks cover {position} of {n_nodes} nodes")
    weights = sp.csr_matrix(
        (
            np.concatenate(values) if values else np.zeros(0, np.float32),
            np.concatenate(columns) if columns else np.zeros(0, np.int32),
            indptr,
        ),
        shape=(n_nodes, X.shape[1]),
    )
    return LayerWeights(weights=weights, bias=bias)
