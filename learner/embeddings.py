"""A folder cache of document embeddings keyed by integer document id, one subfolder per encoder.

Layout: ``<root>/<fingerprint>/ids.npy`` (int64, (N,)) and ``vectors.npy`` (float32, (M, D), M >= N;
row i belongs to ``ids[i]``). Rows are only appended or overwritten in place, and every write goes to
a temporary file that ``os.replace`` swaps in: ``vectors.npy`` first, then ``ids.npy``. A reader (or a
crash) between the two swaps therefore sees ids that describe a prefix of the vectors, which is
consistent. Writers serialise on ``.lock`` with ``fcntl.flock``, so concurrent ``add`` calls from
several processes all land. Each ``add`` rewrites the files: add in batches of thousands, not one by one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["EmbeddingStore", "MissingEmbeddingsError"]

logger = logging.getLogger(__name__)

_FINGERPRINT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
IDS_FILE = "ids.npy"
VECTORS_FILE = "vectors.npy"
LOCK_FILE = ".lock"


class MissingEmbeddingsError(KeyError):
    """Some requested ids have no cached vector; ``missing`` lists them all."""

    def __init__(self, missing: list[int], message: str) -> None:
        super().__init__(message)
        self.missing = missing
        self.message = message

    def __str__(self) -> str:
        return self.message


def _as_ids(ids: Any) -> np.ndarray:
    array = np.asarray(ids)
    if array.size == 0:
        return np.empty(0, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"ids must be 1-D; got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise ValueError(f"ids must be integers; got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _write_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to a temporary file in ``path``'s folder, fsync it, then ``os.replace`` it in."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


class EmbeddingStore:
    """Embeddings of one encoder (``fingerprint``) under ``root``; see the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike[str], fingerprint: str) -> None:
        if not isinstance(fingerprint, str) or not _FINGERPRINT_RE.match(fingerprint):
            raise ValueError(
                f"fingerprint must be 1-128 letters, digits, '.', '_' or '-' (it names a folder); got {fingerprint!r}"
            )
        self.root = Path(root)
        self.fingerprint = fingerprint
        self.folder = self.root / fingerprint

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.root)!r}, {self.fingerprint!r})"

    @contextmanager
    def _writer_lock(self) -> Iterator[None]:
        """Hold an exclusive ``flock`` on ``.lock``: one writer at a time, across processes."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read(self, mmap: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(ids (N,), vectors (M, D) with M >= N, or None when nothing is stored). ids are read first."""
        ids_path = self.folder / IDS_FILE
        if not ids_path.is_file():
            return np.empty(0, dtype=np.int64), None
        ids = np.load(ids_path, allow_pickle=False)
        vectors = np.load(self.folder / VECTORS_FILE, mmap_mode="r" if mmap else None, allow_pickle=False)
        if vectors.ndim != 2 or vectors.shape[0] < ids.shape[0]:
            raise ValueError(f"corrupt embedding store {self.folder}: {ids.shape[0]} ids, vectors {vectors.shape}")
        return ids, vectors

    @property
    def dim(self) -> int | None:
        """Vector size, or None while the store is empty."""
        _, vectors = self._read(mmap=True)
        return None if vectors is None else int(vectors.shape[1])

    def ids(self) -> np.ndarray:
        """All stored ids (N,) int64, in storage order."""
        ids, _ = self._read(mmap=True)
        return ids.copy()

    def __len__(self) -> int:
        return int(self._read(mmap=True)[0].shape[0])

    def _positions(self, stored: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row of each wanted id in ``stored`` and a mask of the ids found."""
        if stored.size == 0:
            return np.zeros(wanted.shape[0], dtype=np.int64), np.zeros(wanted.shape[0], dtype=bool)
        order = np.argsort(stored, kind="stable")  # (N,)
        sorted_ids = stored[order]
        slot = np.clip(np.searchsorted(sorted_ids, wanted), 0, sorted_ids.size - 1)  # (n,)
        found = sorted_ids[slot] == wanted  # (n,)
        return order[slot], found

    def missing(self, ids: Sequence[int] | np.ndarray) -> list[int]:
        """The ids (in the given order, without repeats) that have no stored vector."""
        wanted = _as_ids(ids)
        stored, _ = self._read(mmap=True)
        _, found = self._positions(stored, wanted)
        return list(dict.fromkeys(int(i) for i in wanted[~found]))

    def get(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Vectors (n, D) float32 for ``ids``, in their order. Raises ``MissingEmbeddingsError`` (a KeyError)
        listing the first missing ids when any is absent. An empty request on an empty store gives (0, 0).
        """
        wanted = _as_ids(ids)
        stored, vectors = self._read(mmap=True)
        if vectors is None:
            if wanted.size == 0:
                return np.empty((0, 0), dtype=np.float32)
            vectors = np.empty((0, 0), dtype=np.float32)
        rows, found = self._positions(stored, wanted)
        if not found.all():
            missing = list(dict.fromkeys(int(i) for i in wanted[~found]))
            raise MissingEmbeddingsError(
                missing,
                f"{len(missing)} of {wanted.size} ids have no embedding in {self.folder}: "
                f"{missing[:10]}{' ...' if len(missing) > 10 else ''}",
            )
        return np.asarray(vectors[rows], dtype=np.float32)

    def add(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Store ``vectors`` (n, D) for ``ids`` (n,); ids already stored get their vectors replaced.

        Raises ``ValueError`` on duplicate ids in one call, a shape or dimension mismatch, or NaN/inf.
        """
        new_ids = _as_ids(ids)
        new_vectors = np.asarray(vectors, dtype=np.float32)
        if new_vectors.ndim != 2 or new_vectors.shape[0] != new_ids.shape[0] or new_vectors.shape[1] == 0:
            raise ValueError(f"vectors must have shape ({new_ids.shape[0]}, D >= 1); got {new_vectors.shape}")
        if np.unique(new_ids).size != new_ids.size:
            raise ValueError("ids contains duplicates")
        if not np.isfinite(new_vectors).all():
            raise ValueError("vectors contains NaN or infinite values")
        if new_ids.size == 0:
            return
        with self._writer_lock():
            stored, old = self._read(mmap=True)
            if old is None:
                merged_ids, merged = new_ids, new_vectors
            else:
                if old.shape[1] != new_vectors.shape[1]:
                    raise ValueError(
                        f"vectors have {new_vectors.shape[1]} dimensions; the store {self.folder} holds {old.shape[1]}"
                    )
                rows, found = self._positions(stored, new_ids)
                merged = np.empty((stored.size + int((~found).sum()), old.shape[1]), dtype=np.float32)
                merged[: stored.size] = old[: stored.size]
                merged[rows[found]] = new_vectors[found]
                merged[stored.size :] = new_vectors[~found]
                merged_ids = np.concatenate([stored, new_ids[~found]])
            _write_npy_atomic(self.folder / VECTORS_FILE, merged)
            _write_npy_atomic(self.folder / IDS_FILE, merged_ids)
        logger.debug("stored %d vectors in %s (%d in all)", new_ids.size, self.folder, merged_ids.size)
