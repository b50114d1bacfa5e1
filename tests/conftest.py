"""Shared fixtures. Tests read real data only from $ATTNREPRO_DATA (.ci/run sets it; the tests that need
the data skip without it) and never reach a W&B server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")


def real_data_root() -> Path | None:
    """$ATTNREPRO_DATA when it holds the real data (a multi30k/ folder among others), else None."""
    value = os.environ.get("ATTNREPRO_DATA")
    if value and (Path(value) / "multi30k").is_dir():
        return Path(value)
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = real_data_root()
    if root is None:
        pytest.skip("real data not found: set ATTNREPRO_DATA to a folder holding it")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each session gets its own cache (vocabularies, downloads) so tests never depend on a user's cache."""
    cache = tmp_path_factory.getbasetemp() / "attnrepro-cache"
    monkeypatch.setenv("ATTNREPRO_CACHE", str(cache))
    root = real_data_root()
    if root is not None:
        monkeypatch.setenv("ATTNREPRO_DATA", str(root))
