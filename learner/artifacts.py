"""Saved folders: atomic publishing, a self-describing JSON header, library versions.

Every saved folder (a tier, a TF-IDF featurizer, an XR-Linear tree, a label prior, an adapted encoder) is written
into a temporary sibling and renamed into place by ``write_folder``, so a reader sees the old folder or the new one,
never a half-written mix. Its JSON file opens with ``header(FORMAT, FORMAT_VERSION)`` (and, where the folder records
them, ``library_versions``); ``read_header`` reads it back and refuses another format or version.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import learner

__all__ = [
    "header",
    "library_versions",
    "publish_folder",
    "read_arrays_folder",
    "read_header",
    "write_arrays_folder",
    "write_folder",
    "write_json",
]


def publish_folder(tmp: Path, target: Path) -> None:
    """Rename a finished temp folder into place, replacing an existing folder (the old one is moved aside first,
    so a reader sees the old folder or the new one, never a half-written mix)."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, old / target.name)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def write_folder(directory: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a fresh temporary folder next to ``directory``, then rename it into place.

    An existing folder at ``directory`` is replaced; on any error the temporary folder is removed and the old
    folder is left as it was. Returns the folder. Raises ``ValueError`` if ``directory`` is a file.
    """
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise ValueError(f"cannot save to {target}: it is a file")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write(tmp)
        publish_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def write_json(path: Path, payload: Any, *, indent: int | None = None, sort_keys: bool = False) -> None:
    """Write ``payload`` as UTF-8 JSON and fsync it."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, ensure_ascii=False, indent=indent, sort_keys=sort_keys)
        handle.flush()
        os.fsync(handle.fileno())


def header(fmt: str, version: int, *libraries: str) -> dict[str, Any]:
    """The keys that open a saved folder's JSON file: ``format`` and ``format_version``; with ``libraries``, also
    ``versions`` (``library_versions(*libraries)``) and ``saved_at`` (UTC, ISO 8601)."""
    out: dict[str, Any] = {"format": fmt, "format_version": version}
    if libraries:
        out["versions"] = library_versions(*libraries)
        out["saved_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return out


def read_header(path: Path, fmt: str, version: int) -> dict[str, Any]:
    """The JSON object in ``path``, checked to open with ``header(fmt, version)``.

    Raises ``ValueError`` naming ``path`` when it cannot be read, is not JSON, or holds another format or version.
    """
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise ValueError(f"{path} is not a {fmt} file")
    if payload.get("format_version") != version:
        found = payload.get("format_version")
        raise ValueError(f"{path}: unsupported {fmt} format_version {found!r} (this code reads v{version})")
    return payload


def write_arrays_folder(
    directory: str | os.PathLike[str], json_name: str, payload: Any, arrays_name: str, arrays: dict[str, np.ndarray]
) -> Path:
    """A folder of one JSON file (``payload``, opening with a ``header``) and one ``.npz`` of named arrays (no
    pickle), written atomically (``write_folder``)."""

    def write(folder: Path) -> None:
        write_json(folder / json_name, payload)
        with open(folder / arrays_name, "wb") as handle:
            np.savez(handle, allow_pickle=False, **arrays)

    return write_folder(directory, write)


def read_arrays_folder(
    directory: str | os.PathLike[str], json_name: str, arrays_name: str, fmt: str, version: int, what: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(the checked JSON header, every array) of a folder written by ``write_arrays_folder``. ``ValueError``
    "no saved {what} in ..." when a file is missing, "corrupt {what} in ..." when one cannot be read."""
    folder = Path(directory)
    if not (folder / json_name).is_file() or not (folder / arrays_name).is_file():
        raise ValueError(f"no saved {what} in {folder}")
    try:
        payload = read_header(folder / json_name, fmt, version)
        with np.load(folder / arrays_name, allow_pickle=False) as arrays:
            return payload, {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"corrupt {what} in {folder}: {exc}") from exc


def library_versions(*extra: str) -> dict[str, str]:
    """Versions of learner, numpy and Python, and of each module named in ``extra`` (e.g. "torch", "scipy",
    "transformers") that is installed (importing it)."""
    out = {"learner": learner.__version__, "numpy": np.__version__, "python": platform.python_version()}
    for name in extra:
        with contextlib.suppress(ImportError):  # every named library is a dependency; an absent one is left out
            out[name] = str(importlib.import_module(name).__version__)
    return out
