"""The leaderboard issue's second probe against real servers (SQLite and PostgreSQL): the daily limit holds
through deletions and is checked before scoring; lone surrogates are refused at input; an export writes only
inside --out whatever the server says; idle sockets cannot starve /healthz; operator faults (a deleted,
read-only or full database, PostgreSQL gone, a bad URL or user name) get one clear line or a 503; tokens stay
out of logs and caches; HEAD works; a reused Idempotency-Key says what it ignored."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from lbsupport import BACKENDS, REPO, Server, add_user, database, degraded, post, slice_boards, slice_references

BOARD = "slice-en-de"


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory, data_root):
    tmp_path = tmp_path_factory.mktemp(f"faults-{request.param}")
    boards, refs = slice_boards(tmp_path, data_root)
    with database(request.param, tmp_path) as url:
        srv = Server(url, boards, refs, tmp_path / "server.log").start()
        srv.refs, srv.refs_root, srv.backend = slice_references(refs), refs, request.param
        yield srv
        srv.stop()


def attnrepro(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=120)


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2 and one line on stderr (no traceback) holding every one of `words`."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.startswith("attnrepro: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for word in words:
        assert word in lines[0], (word, lines[0])


# -- 3, 4: the daily limit ---------------------------------------------------------------------------------


def test_deleting_a_submission_gives_no_place_back_under_the_daily_limit(server):
    token = add_user(server.db_url, "deleter", daily_limit=2)
    auth = {"Authorization": f"Bearer {token}"}
    outputs = [("\n".join(degraded(server.refs, k))).encode() for k in (3, 4, 5)]
    ids = [post(server.url, BOARD, token, outputs[i], {"model": f"m{i}"}).json()["id"] for i in range(2)]
    assert post(server.url, BOARD, token, outputs[2], {"model": "third"}).status_code == 429
    assert httpx.delete(f"{server.url}/api/submissions/{ids[0]}", headers=auth).status_code == 204
    assert httpx.get(f"{server.url}/api/submissions/{ids[0]}").status_code == 404  # gone from every view
    refused = post(server.url, BOARD, token, outputs[2], {"model": "after a deletion"})
    assert refused.status_code == 429, refused.text
    assert "deleted ones count" in refused.json()["detail"]
    me = httpx.get(f"{server.url}/api/me", headers=auth).json()
    assert me["submissions_last_24h"] == 2 and me["daily_limit"] == 2
    rows = httpx.get(f"{server.url}/api/boards/{BOARD}").json()["rows"]
    assert "after a deletion" not in [r["model"] for r in rows] and "m0" not in [r["model"] for r in rows]


def test_an_over_limit_submission_is_refused_before_its_outputs_are_scored(server):
    """newstest2014 (3003 lines, about a second of BLEU + chrF): a 429 must not cost that second."""
    import gzip

    token = add_user(server.db_url, "thrifty", daily_limit=1)
    refs = gzip.open(server.refs_root / "wmt14/2014/en-de/newstest2014.de.gz", "rt", encoding="utf-8").read()
    outputs = refs.rstrip("\n").replace("Die", "Das").encode()
    started = time.monotonic()
    assert post(server.url, "newstest2014-en-de", token, outputs, {"model": "scored"}).status_code == 201
    scored = time.monotonic() - started
    refusals = []
    for i in range(3):
        started = time.monotonic()
        r = post(server.url, "newstest2014-en-de", token, outputs, {"model": f"over {i}"})
        refusals.append(time.monotonic() - started)
        assert r.status_code == 429, r.text
    assert scored > 0.3, scored  # a real scoring run, to compare with
    # scoring would slow every refusal; the median, not the fastest, so one quick answer cannot pass alone
    assert sorted(refusals)[1] < scored / 3, (refusals, scored)


def test_patch_authenticates_and_checks_ownership_before_reading_the_body(server):
    owner, other = add_user(server.db_url, "patch-owner"), add_user(server.db_url, "patch-other")
    sid = post(server.url, BOARD, owner, "\n".join(server.refs).encode(), {"model": "mine"}).json()["id"]
    url = f"{server.url}/api/submissions/{sid}"
    r = httpx.patch(url, content="[ not json")
    assert r.status_code == 401 and "API token" in r.json()["detail"]
    r = httpx.patch(url, content="[ not json", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 403 and "belongs to another user" in r.json()["detail"]
    r = httpx.patch(url, content="[ not json", headers={"Authorization": f"Bearer {owner}"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]


# -- 5: lone surrogates ------------------------------------------------------------------------------------


SURROGATES = [  # (metadata as sent, words of the answer)
    ('{"model": "m", "config": {"optim": {"name": "adam\\ud800"}}}', "metadata.config.optim.name: holds U+D800"),
    ('{"model": "m", "compute": {"devices": ["\\udfff"]}}', "metadata.compute.devices[0]: holds U+DFFF"),
    ('{"model": "m", "compute": {"\\ud83d": 1}}', "holds U+D83D"),
    ('{"model": "m\\ud800"}', "metadata.model: holds U+D800"),
    ('{"model": "m", "notes": "a\\udc80b"}', "metadata.notes: holds U+DC80"),
    ('{"model": "m", "claimed_scores": {"bleu\\ud800": 1.0}}', "holds U+D800"),
]


def test_lone_surrogates_are_refused_at_input_and_every_page_keeps_answering(server):
    token = add_user(server.db_url, "surrogate")
    auth = {"Authorization": f"Bearer {token}"}
    good = "\n".join(server.refs).encode()
    for metadata, words in SURROGATES:
        r = post(server.url, BOARD, token, good, metadata)
        assert r.status_code == 422, (metadata, r.status_code, r.text)
        assert words in r.json()["detail"] and "lone surrogate" in r.json()["detail"], r.json()
    sid = post(server.url, BOARD, token, good, '{"model": "fine \\ud83d\\ude00"}').json()["id"]  # a real pair
    r = httpx.patch(f"{server.url}/api/submissions/{sid}", content='{"notes": "x\\ud800"}', headers=auth)
    assert r.status_code == 422 and "body.notes: holds U+D800" in r.json()["detail"], r.text
    images = (server.refs_root / "slice" / "images.txt").read_text().split()
    captions = json.dumps([{"image": i, "caption": "a dog"} for i in images]).replace('"a dog"', '"a \\ud800"', 1)
    r = post(server.url, "slice-captions", token, captions.encode(), {"model": "m"})
    assert r.status_code == 400 and "segment 1 holds U+D800" in r.json()["detail"], r.text
    for path in (f"/submissions/{sid}", f"/api/submissions/{sid}", f"/boards/{BOARD}", f"/api/boards/{BOARD}"):
        assert httpx.get(server.url + path).status_code == 200, path
    r = httpx.patch(f"{server.url}/api/submissions/{sid}", json={"notes": "still mine"}, headers=auth)
    assert r.status_code == 200 and r.json()["model"] == "fine \U0001f600"


# -- 12: tokens in URLs, caches, HEAD, a reused key --------------------------------------------------------


def test_tokens_stay_out_of_logs_and_caches_head_works_and_a_reused_key_says_what_it_ignored(server):
    token = add_user(server.db_url, "careful")
    r = httpx.get(f"{server.url}/api/me", params={"token": token})
    assert r.status_code == 401 and "never read" in r.json()["detail"]
    me = httpx.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.headers["cache-control"] == "no-store"
    assert r.headers["cache-control"] == "no-store"
    outputs = "\n".join(degraded(server.refs, 7)).encode()
    first = post(server.url, BOARD, token, outputs, {"model": "first", "seed": 1}, key="reused")
    assert first.status_code == 201 and first.headers["cache-control"] == "no-store"
    again = post(server.url, BOARD, token, outputs, {"model": "first", "seed": 1}, key="reused")
    assert again.status_code == 200 and again.json()["ignored_metadata"] == [] and "warning" not in again.json()
    changed = post(server.url, BOARD, token, outputs, {"model": "second", "notes": "n"}, key="reused")
    assert changed.status_code == 200 and changed.json()["id"] == first.json()["id"]
    assert changed.json()["ignored_metadata"] == ["model", "seed", "notes"]
    assert "the new model, seed, notes was ignored" in changed.json()["warning"]
    assert changed.headers["idempotency-replayed"] == "metadata-ignored"
    sid = first.json()["id"]
    for path in ("/", f"/boards/{BOARD}", f"/submissions/{sid}", "/api/boards", f"/api/boards/{BOARD}",
                 f"/api/submissions/{sid}", "/healthz"):
        got, head = httpx.get(server.url + path), httpx.head(server.url + path)
        assert head.status_code == 200 and head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert "cache-control" not in got.headers, path  # public pages stay cacheable
    assert httpx.head(f"{server.url}/api/boards/{BOARD}/submissions").status_code == 405
    time.sleep(0.5)  # the access log line is written after the answer
    log = server.log.read_text()
    assert token not in log and "token=REDACTED" in log


# -- 6: export ---------------------------------------------------------------------------------------------


class HostileBoards(BaseHTTPRequestHandler):
    """A server whose boards are named `names` (one good board first): as a hostile or broken server may."""
    names: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/api/boards":
            body = [{"name": n} for n in self.names]
        else:  # the good board (the hostile one is refused before it is asked for)
            body = {"name": self.path.rsplit("/", 1)[-1], "title": "t", "task": "translation", "dataset": "d",
                    "split": "s", "pair": None, "status": "open", "reason": None, "submissions": 0,
                    "columns": ["bleu"], "rows": [], "sort": "bleu", "order": "desc", "references": [],
                    "metric": {"primary": "bleu", "name": "sacrebleu", "version": "2.6.0", "signature": "sig"}}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("hostile, why", [("../escaped", "leaves the folder"), ("/tmp/absolute", "absolute path"),
                                          ("sub/dir", "a path, not a plain file name"), ("..", "leaves the folder")])
def test_export_writes_only_inside_out_and_nothing_when_a_name_is_refused(tmp_path, hostile, why):
    HostileBoards.names = ["good-board", hostile]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), HostileBoards)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        out = tmp_path / "site" / "out"
        result = attnrepro("leaderboard", "export", "--out", str(out), "--server",
                           f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
    one_line_error(result, f"refused to write '{hostile}'.md", why, "nothing was written")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # not even the good board's files
    assert not os.path.exists("/tmp/absolute.md")


# -- 7: idle sockets ---------------------------------------------------------------------------------------


def test_three_hundred_idle_sockets_do_not_stop_healthz(tmp_path, data_root):
    """`ulimit -n 256` on the server, 300 sockets that send nothing: /healthz still answers, and a socket
    that never sends its headers is closed by the server (10 s)."""
    boards, refs = slice_boards(tmp_path, data_root)
    with database("sqlite", tmp_path) as url:
        srv = Server(url, boards, refs, tmp_path / "server.log", open_files=256).start()
        port = int(srv.url.rsplit(":", 1)[1])
        idle: list[socket.socket] = []
        try:
            for _ in range(300):
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            started = time.monotonic()
            answers = [httpx.get(srv.url + "/healthz", timeout=15).status_code for _ in range(3)]
            assert answers == [200, 200, 200] and time.monotonic() - started < 30
            lonely = idle[-1]
            lonely.settimeout(25)
            started = time.monotonic()
            assert lonely.recv(1) == b""  # closed by the server, without an answer
            assert time.monotonic() - started < 20
            assert srv.alive()
        finally:
            for s in idle:
                s.close()
            srv.stop()
    assert "Too many open files" not in (tmp_path / "server.log").read_text()


# -- 11: operator faults -----------------------------------------------------------------------------------


def test_a_database_file_deleted_while_serving_stops_writes_and_the_restart(tmp_path, data_root):
    boards, refs = slice_boards(tmp_path, data_root)
    with database("sqlite", tmp_path) as url:
        srv = Server(url, boards, refs, tmp_path / "server.log").start()
        try:
            token = add_user(url, "eve")
            good = "\n".join(slice_references(refs)).encode()
            assert post(srv.url, BOARD, token, good, {"model": "kept"}).status_code == 201
            path = tmp_path / "leaderboard.sqlite3"
            path.unlink()
            r = post(srv.url, BOARD, token, good, {"model": "lost"})
            assert r.status_code == 503 and "was deleted while the server ran; nothing was stored" in r.json()["detail"]
            assert str(tmp_path) not in r.text
            health = httpx.get(srv.url + "/healthz")
            assert health.status_code == 503 and "deleted" in health.json()["detail"]
        finally:
            srv.stop()
        with pytest.raises(RuntimeError, match="server exited with 2"):
            srv.start()
        assert "leaderboard.sqlite3 is missing or empty, but leaderboard.sqlite3.created beside it says a database " \
               "was created there before" in (tmp_path / "server.log").read_text()
        one_line_error(attnrepro("leaderboard", "user", "add", "bob", "--db", url), "missing or empty", "backup")


def test_a_read_only_database_answers_503_with_the_reason(tmp_path, data_root):
    boards, refs = slice_boards(tmp_path, data_root)
    with database("sqlite", tmp_path) as url:
        token = add_user(url, "reader")
        read_only = f"sqlite:///file:{tmp_path / 'leaderboard.sqlite3'}?mode=ro&uri=true"
        srv = Server(read_only, boards, refs, tmp_path / "server.log").start()
        try:
            good = "\n".join(slice_references(refs)).encode()
            r = post(srv.url, BOARD, token, good, {"model": "m"})
            assert r.status_code == 503 and "the database is read-only; nothing was stored" in r.json()["detail"]
            assert r.headers["retry-after"] == "30" and r.headers["x-content-type-options"] == "nosniff"
            assert httpx.get(f"{srv.url}/boards/{BOARD}").status_code == 200  # reading still works
        finally:
            srv.stop()


def test_a_full_disk_answers_503_with_the_reason(tmp_path, data_root, monkeypatch):
    """SQLite's max_page_count, held at the database's size, stands in for a full disk."""
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from leaderboards import db
    from leaderboards.app import Settings, create_app

    boards, refs = slice_boards(tmp_path, data_root)
    url = f"sqlite:///{tmp_path / 'full.sqlite3'}"
    token = add_user(url, "filler")
    real = db.make_engine

    def full(url=None):
        engine = real(url)

        @event.listens_for(engine, "connect")
        def _no_room(dbapi_conn, _record):
            pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
            dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

        return engine

    monkeypatch.setattr(db, "make_engine", full)
    app = create_app(Settings(database_url=url, boards_dir=boards, references_root=refs))
    with TestClient(app) as client:
        big = "\n".join(slice_references(refs)).encode()
        r = client.post(f"/api/boards/{BOARD}/submissions", headers={"Authorization": f"Bearer {token}"},
                        data={"metadata": json.dumps({"model": "m", "notes": "x" * 1900})},
                        files={"outputs": ("h.txt", big)})
    assert r.status_code == 503, r.text
    assert "the disk holding the database is full; nothing was stored" in r.json()["detail"]


class Proxy:
    """A TCP forwarder on 127.0.0.1 to `upstream`, stopped (every connection cut) to play a database gone."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream, self.sockets, self.listener = upstream, [], socket.create_server(("127.0.0.1", 0))
        self.stopped = False
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.stopped:
                client.close()
                return
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass

    def stop(self):
        self.stopped = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept() (close alone does not)
        except OSError:
            pass
        self.listener.close()
        for s in list(self.sockets):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def test_postgresql_gone_answers_503_with_the_reason(tmp_path, data_root):
    boards, refs = slice_boards(tmp_path, data_root)
    with database("postgresql", tmp_path) as url:
        token = add_user(url, "pgfan")
        host, port = url.split("@", 1)[1].split("/", 1)[0].split(":")
        proxy = Proxy((host, int(port)))
        proxied = url.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}")
        srv = Server(proxied, boards, refs, tmp_path / "server.log").start()
        try:
            good = "\n".join(slice_references(refs)).encode()
            assert post(srv.url, BOARD, token, good, {"model": "before"}).status_code == 201
            proxy.stop()
            r = post(srv.url, BOARD, token, good, {"model": "after"})
            assert r.status_code == 503, r.text
            assert "the database server cannot be reached" in r.json()["detail"]
            health = httpx.get(srv.url + "/healthz")
            assert health.status_code == 503 and "cannot be reached" in health.json()["detail"]
        finally:
            proxy.stop()
            srv.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_admin_commands_refuse_bad_urls_and_names_in_one_line(backend, tmp_path):
    with database(backend, tmp_path) as url:
        one_line_error(attnrepro("leaderboard", "user", "add", "bob", "--db", "x.db"), "'x.db'", "sqlite:///",
                       "postgresql://")
        one_line_error(attnrepro("leaderboard", "user", "add", "a" * 65, "--db", url), "1 to 64")
        one_line_error(attnrepro("leaderboard", "user", "add", "", "--db", url), "an empty name")
        one_line_error(attnrepro("leaderboard", "user", "add", "bob smith", "--db", url), "'bob smith'")
        one_line_error(attnrepro("leaderboard", "user", "add", "ok", "--daily-limit", str(2**40), "--db", url),
                       "--daily-limit")
        assert attnrepro("leaderboard", "user", "add", "a" * 64, "--db", url).returncode == 0
        one_line_error(attnrepro("leaderboard", "token", "add", "a" * 64, "--label", "x" * 101, "--db", url),
                       "--label")
    one_line_error(attnrepro("leaderboard", "user", "add", "bob", "--db", f"sqlite:///{tmp_path}/no/such/dir/x.db"),
                   "cannot use the database", "cannot be opened")
