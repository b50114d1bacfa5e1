"""A hostile user's probe against a real uvicorn server (SQLite and PostgreSQL): a caption that crashes METEOR costs
only its own submission; ids, PATCH bodies and multipart parts are checked; over-limit and stalled bodies are
cut off; errors (500s included) are JSON with the security headers; stored outputs are the uploaded bytes;
closed boards never show the server's paths."""

from __future__ import annotations

import hashlib
import json
import socket
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from lbsupport import BACKENDS, Server, add_user, database, degraded, post, slice_boards, slice_references

BOARD = "slice-en-de"
UNLIMITED = "slice-captions-unlimited"  # slice-captions without the words-per-caption limit


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory, data_root):
    """One server per backend for this module (the tests use their own users and boards' rows apart)."""
    tmp_path = tmp_path_factory.mktemp(f"hardening-{request.param}")
    boards, refs = slice_boards(tmp_path, data_root)
    (boards / f"{UNLIMITED}.yaml").write_text((boards / "slice-captions.yaml").read_text()
                                             + "limits: {max_caption_words: 100000, max_caption_chars: 10000000}\n")
    with database(request.param, tmp_path) as url:
        srv = Server(url, boards, refs, tmp_path / "server.log", body_timeout=2,
                     extra=("--score-timeout", "120", "--score-memory-mb", "1800"))
        srv.start()
        srv.refs, srv.refs_root, srv.tmp = slice_references(refs), refs, tmp_path
        yield srv
        srv.stop()


def captions(server, text: str = "a dog runs on the grass") -> bytes:
    images = (server.refs_root / "slice" / "images.txt").read_text().split()
    return json.dumps([{"image": i, "caption": text} for i in images]).encode()


def assert_json_error(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert words in response.json()["detail"], response.json()
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.slow
def test_a_caption_that_crashes_meteor_costs_only_its_own_submission_and_outputs_are_stored_byte_exact(server):
    token = add_user(server.db_url, "alice")
    listed = json.loads(captions(server))
    listed[0]["caption"] = "a dog\nruns"  # a newline inside a caption stays in the stored bytes
    uploads = [("slice-captions", json.dumps(listed, indent=1).encode())]
    started = time.monotonic()
    r = post(server.url, uploads[0][0], token, uploads[0][1], {"model": "warm-up"})
    usual = time.monotonic() - started
    assert r.status_code == 201, r.text
    ids = [r.json()["id"]]
    crash = json.loads(captions(server))
    crash[0]["caption"] = "dog " * 50_000  # METEOR's Java fills its heap (stopped at this server's 1800 MB)
    response = post(server.url, UNLIMITED, token, json.dumps(crash).encode(), {"model": "crash"})
    assert_json_error(response, 422, "the metric code failed on these outputs")
    lines = degraded(server.refs, 5)
    lines[3] += "\u2028und so"  # one line: U+2028 ends no line
    uploads += [(BOARD, ("\ufeff" + "\r\n".join(lines) + "\r\n").encode()),
                ("slice-captions", captions(server, "two dogs")), (BOARD, "\n".join(lines).encode())]
    for board, outputs in uploads[1:]:  # answered as usual, by a fresh scoring worker
        started = time.monotonic()
        response = post(server.url, board, token, outputs, {"model": f"after the crash on {board}"})
        assert response.status_code == 201, response.text
        assert time.monotonic() - started < 3 * usual + 5
        ids.append(response.json()["id"])
    assert httpx.get(f"{server.url}/api/boards/{UNLIMITED}").json()["submissions"] == 0
    left = server.descendants()  # the scoring worker (and multiprocessing's resource tracker); no java, no zombie
    assert not [c for c in left.values() if "java" in c], left
    assert len([c for c in left.values() if "resource_tracker" not in c]) == 1, left
    assert_stored_byte_exact(server, dict(zip(ids, (data for _, data in uploads))))


def assert_stored_byte_exact(server, uploads: dict[int, bytes]) -> None:
    from leaderboards import db

    factory = db.init_db(db.make_engine(server.db_url))
    try:
        with factory() as session:
            for sid, data in uploads.items():
                row = session.get(db.Submission, sid)
                assert row.outputs == data
                assert hashlib.sha256(row.outputs).hexdigest() == row.outputs_sha256
                api = httpx.get(f"{server.url}/api/submissions/{sid}").json()
                assert api["outputs_sha256"] == hashlib.sha256(data).hexdigest()
    finally:
        factory.kw["bind"].dispose()


def test_ids_patch_bodies_and_multipart_parts_get_a_json_4xx(server):
    token = add_user(server.db_url, "bob")
    good = "\n".join(server.refs).encode()
    for path in (f"/api/submissions/{2**63}", f"/submissions/{2**64}", "/api/submissions/0", "/api/submissions/-1"):
        assert_json_error(httpx.get(server.url + path), 422, "submission_id")
    sid = post(server.url, BOARD, token, good, {"model": "m"}).json()["id"]
    auth = {"Authorization": f"Bearer {token}"}
    assert_json_error(httpx.patch(f"{server.url}/api/submissions/{2**63}", json={"notes": "x"}, headers=auth), 422,
                      "submission_id")
    assert_json_error(httpx.delete(f"{server.url}/api/submissions/{2**31}", headers=auth), 422, "submission_id")
    for body, words in (('{"model": null}', "keeps a model name"), ('{"notes": "a", "notes": "b"}', "appears twice"),
                        ('{"notes": "a\\u0000"}', "NUL"), ('{"model": "a\\u202e"}', "U+202E"),
                        ('{"notes": NaN}', "NaN is not a JSON number"), ("[", "not valid JSON")):
        r = httpx.patch(f"{server.url}/api/submissions/{sid}", content=body, headers=auth)
        assert_json_error(r, 422, words)
    assert httpx.get(f"{server.url}/api/submissions/{sid}").json()["model"] == "m"
    metadata = json.dumps({"model": "m"})
    url = f"{server.url}/api/boards/{BOARD}/submissions"
    r = httpx.post(url, headers=auth, data={"metadata": metadata}, files=[("outputs", ("a", good)),
                                                                          ("outputs", ("b", good))])
    assert_json_error(r, 400, "multipart part 'outputs' appears 2 times")
    r = httpx.post(url, headers=auth, data={"metadata": [metadata, json.dumps({"model": "n"})]},
                   files={"outputs": ("a", good)})
    assert_json_error(r, 400, "multipart part 'metadata' appears 2 times")
    r = httpx.post(url, headers=auth, data={"metadata": metadata, "extra": "1"}, files={"outputs": ("a", good)})
    assert_json_error(r, 400, "unknown multipart part 'extra'")
    assert server.alive()


def test_over_limit_and_stalled_bodies_are_cut_off(server):
    def chunks():
        for _ in range(40):  # 2.5 MB against the test server's 1 MB limit, without a Content-Length
            yield b"x" * 65536

    r = httpx.post(f"{server.url}/api/boards/{BOARD}/submissions", content=chunks(), timeout=60)
    assert "content-length" not in r.request.headers
    assert_json_error(r, 413, "larger than the server's limit")
    for framing in (b"Content-Length: 1000\r\n", b"Transfer-Encoding: chunked\r\n"):
        with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30) as s:
            s.sendall(b"POST /api/boards/slice-en-de/submissions HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n"
                      + (b"a" * 10 if b"Length" in framing else b"a\r\nb\r\n"))
            started = time.monotonic()
            answer = s.recv(65536)
            waited = time.monotonic() - started
            while not answer.endswith(b"}"):  # the JSON body may come in a packet of its own
                more = s.recv(65536)
                if not more:
                    break
                answer += more
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"stalled for 2 s" in answer and b"nosniff" in answer
        assert 1.5 < waited < 10
    assert server.alive()


def test_closed_boards_name_reference_files_relative_to_the_reference_root(server, tmp_path):
    from leaderboards.client import export

    blind = httpx.get(f"{server.url}/api/boards/multi30k-2018-en-de").json()
    assert blind["reason"] == ("reference file multi30k/task1/raw/test_2018_flickr.de.gz is not on this server "
                               "(under its reference root)")
    export(tmp_path / "site", server=server.url)
    answers = [httpx.get(server.url + p).text for p in ("/", "/api/boards", "/boards/broken", "/api/boards/broken")]
    answers += [p.read_text() for p in (tmp_path / "site").iterdir()]
    for text in answers:
        assert str(server.refs_root) not in text and str(server.tmp) not in text


def test_an_internal_error_is_json_with_the_security_headers(tmp_path, data_root):
    from leaderboards.app import Settings, create_app

    boards, refs = slice_boards(tmp_path, data_root)
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", boards_dir=boards,
                              references_root=refs))

    @app.get("/boom")
    def boom():
        raise RuntimeError("a bug")

    client = TestClient(app, raise_server_exceptions=False)  # no lifespan: no scoring worker needed here
    assert_json_error(client.get("/boom"), 500, "internal server error")
    assert_json_error(client.get("/nowhere"), 404, "nothing at /nowhere")
