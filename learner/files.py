"""Atomic folder publishing: a model, encoder or prior folder is written to a temporary sibling, then renamed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["publish_folder"]


def publish_folder(tmp: Path, target: Path) -> None:
    """Rename a finished temp folder into place, replacing an existing folder (the old one is moved aside first,
    so a reader sees the old folder or the new one, never a half-written mix)."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
