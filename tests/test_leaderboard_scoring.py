"""The scoring worker (`leaderboards.scoring`): metric code in a process of its own, with a time and a memory
limit; any failure costs one call, kills the worker's whole process group and reaps it, and the next call is
served by a fresh worker."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from leaderboards.scoring import ScoringFailed, ScoringWorker


def add(a, b):
    return a + b


def spawn_then_fail(marker):
    """A metric that leaves a child running (like METEOR's java) and then fails."""
    child = subprocess.Popen(["sleep", "600"])
    Path(marker).write_text(str(child.pid))
    raise RuntimeError("the metric broke")


def sleep(seconds):
    time.sleep(seconds)


def hog(megabytes):
    blocks = [bytearray(2**20) for _ in range(megabytes)]  # touched pages: resident memory
    time.sleep(30)
    return len(blocks)


def pid():
    return os.getpid()


@pytest.fixture
def worker():
    w = ScoringWorker(timeout_s=3, memory_mb=400)
    yield w
    w.close()


def gone(process_id: int) -> bool:
    """No such process, not even a zombie."""
    return not Path(f"/proc/{process_id}").exists()


def test_a_failing_metric_costs_one_call_and_its_children_are_reaped(worker, tmp_path):
    assert worker.run(add, 2, 3) == 5
    first = worker.run(pid)
    with pytest.raises(ScoringFailed, match="RuntimeError: the metric broke"):
        worker.run(spawn_then_fail, tmp_path / "child")
    child = int((tmp_path / "child").read_text())
    deadline = time.time() + 5
    while not gone(child) and time.time() < deadline:
        time.sleep(0.05)
    assert gone(child) and gone(first)
    assert worker.run(add, "a", "b") == "ab" and worker.run(pid) != first


@pytest.mark.slow
def test_time_and_memory_limits(worker):
    started = time.monotonic()
    with pytest.raises(ScoringFailed, match="longer than the server's limit of 3 s"):
        worker.run(sleep, 60)
    assert time.monotonic() - started < 10
    with pytest.raises(ScoringFailed, match="more than the server's limit of 400 MB"):
        worker.run(hog, 800)
    assert worker.run(add, 1, 1) == 2
