"""Helpers for the leaderboard tests: a real uvicorn server in a subprocess, databases (SQLite file, or a
fresh PostgreSQL database where $ATTNREPRO_TEST_POSTGRES_URL names a server: `.ci/postgres` starts one),
and boards over slices of the real data."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from leaderboards.boards import BOARDS_DIR

REPO = Path(__file__).resolve().parents[1]
POSTGRES_ENV = "ATTNREPRO_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]


@contextmanager
def database(backend: str, tmp_path: Path):
    """A database URL for one test: a new SQLite file, or a new PostgreSQL database dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'leaderboard.sqlite3'}"
        return
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        pytest.skip(f"PostgreSQL: set {POSTGRES_ENV} (bash .ci/postgres starts a server and prints it)")
    import psycopg

    name = f"attnrepro_{uuid.uuid4().hex[:12]}"
    dsn = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield dsn.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def slice_boards(tmp_path: Path, data_root: Path) -> tuple[Path, Path]:
    """(boards dir, reference root): the shipped boards, plus small boards over slices of the real data
    (`slice-en-de`: the first 60 lines of test_2017_flickr.de, blind; `slice-captions`: 12 Flickr8k test
    images) and `broken`: a real board whose reference checksum is wrong."""
    boards, refs = tmp_path / "boards", tmp_path / "refs"
    shutil.copytree(BOARDS_DIR, boards)
    refs.mkdir()
    for dataset in ("multi30k", "wmt14", "flickr8k"):
        (refs / dataset).symlink_to(data_root / dataset)
    german = gzip.open(data_root / "multi30k/task1/raw/test_2017_flickr.de.gz", "rt", encoding="utf-8").read()
    (refs / "slice").mkdir()
    (refs / "slice" / "refs.de").write_text("\n".join(german.split("\n")[:60]) + "\n", encoding="utf-8")
    images = (data_root / "flickr8k/Flickr8k_text/Flickr_8k.testImages.txt").read_text().split()[:12]
    (refs / "slice" / "images.txt").write_text("\n".join(images) + "\n")
    sha = {name: hashlib.sha256((refs / "slice" / name).read_bytes()).hexdigest() for name in ("refs.de", "images.txt")}
    real = (boards / "multi30k-2016-en-de.yaml").read_text()
    (boards / "slice-en-de.yaml").write_text(
        real.replace("multi30k/task1/raw/test_2016_flickr.de.gz", "slice/refs.de")
        .replace("9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8", sha["refs.de"])
        .replace("split: test_2016_flickr", "split: test_2017_flickr").replace("hidden_references: false",
                                                                                "hidden_references: true"))
    (boards / "slice-captions.yaml").write_text(
        (boards / "flickr8k-test.yaml").read_text().replace("flickr8k/Flickr8k_text/Flickr_8k.testImages.txt",
                                                            "slice/images.txt")
        .replace("6461ca86cf5d4c810cbbc3a7dd5a4ef0900b7306aba17dfa9b96e93f3afc452d", sha["images.txt"]))
    (boards / "broken.yaml").write_text(real.replace("9204244e", "00000000"))
    return boards, refs


def slice_references(refs: Path) -> list[str]:
    return (refs / "slice" / "refs.de").read_text(encoding="utf-8").split("\n")[:60]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`attnrepro leaderboard serve` in a subprocess, on a free port."""

    def __init__(self, db_url: str, boards: Path, refs: Path, log: Path, daily_limit: int = 50, workers: int = 1,
                 max_upload_mb: float = 1, body_timeout: float = 30, extra: tuple[str, ...] = (),
                 open_files: int | None = None):
        self.args = [sys.executable, "-m", "harness.cli", "leaderboard", "serve", "--db", db_url, "--boards",
                     str(boards), "--references", str(refs), "--daily-limit", str(daily_limit),
                     "--max-upload-mb", str(max_upload_mb), "--workers", str(workers),
                     "--body-timeout", str(body_timeout), *extra]
        self.db_url, self.log, self.proc = db_url, log, None
        self.open_files = open_files  # the server's RLIMIT_NOFILE (as `ulimit -n`), else inherited

    def start(self) -> Server:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([*self.args, "--port", str(port)], cwd=REPO, stdout=out, stderr=out,
                                     preexec_fn=self._limit_open_files if self.open_files else None)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"server did not answer in 60 s:\n{self.log.read_text()[-3000:]}")

    def _limit_open_files(self) -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def descendants(self) -> dict[int, str]:
        """{pid: command line} of every process below the server (its scoring worker, any java)."""
        children: dict[int, list[int]] = {}
        commands = {}
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                stat = (entry / "stat").read_text()
                commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode() or stat
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
        found, todo = {}, [self.proc.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found[child] = commands[child]
                todo.append(child)
        return found

    def alive(self) -> bool:
        return self.proc.poll() is None and httpx.get(self.url + "/healthz", timeout=10).status_code == 200


def add_user(db_url: str, name: str, **kwargs) -> str:
    from leaderboards import db

    factory = db.init_db(db.make_engine(db_url))
    try:
        return db.create_user(factory, name, **kwargs)
    finally:
        factory.kw["bind"].dispose()


def post(url: str, board: str, token: str | None, outputs: bytes, metadata: dict | str, key: str | None = None,
         client: httpx.Client | None = None) -> httpx.Response:
    import json

    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if key is not None:
        headers["Idempotency-Key"] = key
    body = metadata if isinstance(metadata, str) else json.dumps(metadata)
    return (client or httpx).post(f"{url}/api/boards/{board}/submissions", headers=headers, timeout=120,
                                  data={"metadata": body}, files={"outputs": ("hyps.txt", outputs)})


def degraded(refs: list[str], k: int) -> list[str]:
    """The references with every line i where i % 60 < k replaced: a distinct, known quality per k."""
    return [("ein Hund" if i % 60 < k else ref) for i, ref in enumerate(refs)]


def bleu(hyps: list[str], refs: list[str]) -> float:
    from sacrebleu.metrics import BLEU

    return round(BLEU().corpus_score(hyps, [refs]).score, 2)
