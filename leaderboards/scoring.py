"""Metric code runs in a worker process, never in the server: a submission that makes sacreBLEU or
pycocoevalcap's Java tools fail, run out of memory or hang costs that submission a clear error, and the next
one is scored by a fresh worker.

Why a process: pycocoevalcap's METEOR wrapper keeps its lock when its Java process dies, and its
`__del__` later waits on that lock forever in whichever server thread the garbage collector runs, while the
dead `java` stays a zombie. Here the worker leads its own process group (Java included); on any failure,
timeout or memory overrun the whole group is killed and every member reaped, then a new worker starts.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h: orphaned descendants (the worker's java) are reparented to us
HEADER = struct.Struct("!Q")  # each message: its length, then a pickle


class ScoringFailed(Exception):
    """Scoring of one submission failed; the message says why (the worker has been replaced)."""


class ScoringWorker:
    """One scoring process (`python -m leaderboards.scoring`) at a time, used by one server process's request
    threads in turn. Messages go over the worker's stdin and a private copy of its stdout."""

    def __init__(self, timeout_s: float = 300, memory_mb: int = 4096):
        self.timeout_s, self.memory_mb = timeout_s, memory_mb
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self._lock:
            self._ensure()

    def run(self, fn, *args):
        """`fn(*args)` in the worker (fn must be importable by name); raises ScoringFailed on any failure."""
        with self._lock:
            self._ensure()
            try:
                _send(self._proc.stdin, (fn, args))
            except OSError:  # the worker died while idle
                self._replace()
                _send(self._proc.stdin, (fn, args))
            deadline = time.monotonic() + self.timeout_s
            while not select.select([self._proc.stdout], [], [], 0.25)[0]:
                if self._proc.poll() is not None:
                    self._replace()
                    raise ScoringFailed("the scoring process died (out of memory?)")
                if time.monotonic() > deadline:
                    self._replace()
                    raise ScoringFailed(f"scoring took longer than the server's limit of {self.timeout_s:g} s")
                if _tree_rss_mb(self._proc.pid) > self.memory_mb:
                    self._replace()
                    raise ScoringFailed(f"scoring needed more than the server's limit of {self.memory_mb} MB")
            try:
                ok, value = _receive(self._proc.stdout)
            except (EOFError, OSError, pickle.UnpicklingError):
                self._replace()
                raise ScoringFailed("the scoring process died") from None
            if not ok:
                self._replace()  # a failed metric (METEOR's lock, a dead java) may leave the worker unusable
                raise ScoringFailed(value)
            return value

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _ensure(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._stop()
        _become_subreaper()
        # The worker imports what we import from where we did (leaderboards, and the metric functions' modules).
        path = [str(Path(__file__).resolve().parents[1]), *(p for p in sys.path if p)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(path))}
        self._proc = subprocess.Popen([sys.executable, "-m", "leaderboards.scoring"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env, start_new_session=True)

    def _replace(self) -> None:
        self._stop()
        self._ensure()

    def _stop(self) -> None:
        if self._proc is None:
            return
        members = _group_members(self._proc.pid)
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._proc.wait(timeout=10)
        _reap(members - {self._proc.pid})
        self._proc.stdin.close()
        self._proc.stdout.close()
        self._proc = None


def _send(stream, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream):
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        raise EOFError
    (size,) = HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)  # noqa: S301 - from our own worker process


def main() -> None:
    """The worker (`python -m leaderboards.scoring`, started by ScoringWorker in its own session)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the server's to handle
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever the metric code prints goes to stderr, not into the replies
    requests = sys.stdin.buffer
    for module in ("sacrebleu", "reproductions.tasks", "pycocoevalcap.tokenizer.ptbtokenizer",
                   "pycocoevalcap.meteor.meteor"):
        try:
            __import__(module)  # warm: the first submission is not slower than the rest
        except ImportError:
            pass
    while True:
        try:
            fn, args = _receive(requests)
        except EOFError:  # the server went away
            return
        try:
            reply = (True, fn(*args))
        except BaseException as err:  # noqa: BLE001 - every failure goes back to the server as one message
            reply = (False, f"{type(err).__name__}: {err}"[:500])
        _send(replies, reply)


def _become_subreaper() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: orphans go to init, which reaps them
        pass


def _group_members(pgid: int) -> set[int]:
    members = set()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
            members.add(int(entry.name))
    return members


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants (the worker and its Java), from /proc."""
    pages, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            pages += int(Path(f"/proc/{current}/statm").read_text().split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):  # ended meanwhile
            continue
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reap(pids: set[int]) -> None:
    """Wait for killed group members that became our children (we are their subreaper) so none stays a zombie."""
    deadline = time.monotonic() + 5
    pending = set(pids)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not (yet) our child, or reaped by init
                if not Path(f"/proc/{pid}").exists():
                    pending.discard(pid)
                continue
            if done:
                pending.discard(pid)
        if pending:
            time.sleep(0.05)


if __name__ == "__main__":
    main()
