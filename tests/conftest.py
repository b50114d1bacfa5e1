"""Shared fixtures. Tests read real data from $ATTNREPRO_DATA (tox and .ci/run point it at ../shared/data)
and never reach a W&B server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path | None:
    for candidate in (os.environ.get("ATTNREPRO_DATA"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "multi30k").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_data()
    if root is None:
        pytest.skip("real data not found: set ATTNREPRO_DATA to the shared data folder")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each session gets its own cache (vocabularies, downloads) so tests never depend on a user's cache."""
    cache = tmp_path_factory.getbasetemp() / "attnrepro-cache"
    monkeypatch.setenv("ATTNREPRO_CACHE", str(cache))
    root = shared_data()
    if root is not None:
        monkeypatch.setenv("ATTNREPRO_DATA", str(root))
