"""Fixtures shared by every test package."""

from __future__ import annotations

import os

import pytest

# Playwright runs an event loop in the test thread; the ORM must still be usable there.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_artifacts(request, tmp_path_factory):
    """Model files and embedding caches of each test go to a fresh folder, never to the developer's var/."""
    if not request.config.pluginmanager.has_plugin("django"):
        return  # tests/learner also run without Django (bench/gpu_check.sh on a bare GPU image)
    settings = request.getfixturevalue("settings")
    settings.ARTIFACTS_DIR = tmp_path_factory.mktemp("artifacts")
