"""The leaderboard service against a real uvicorn server in a subprocess, on SQLite and on PostgreSQL
(where $ATTNREPRO_TEST_POSTGRES_URL is set; .ci/run sets it): scores computed by the server, concurrency,
crash safety, bad input, authentication, and references that never leave the server."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from lbsupport import BACKENDS, Server, add_user, bleu, database, degraded, post, slice_boards, slice_references

from leaderboards.boards import BOARDS_DIR, BoardError, load_boards, parse_board

REPO = Path(__file__).resolve().parents[1]
BOARD = "slice-en-de"


@pytest.fixture(params=BACKENDS)
def server(request, tmp_path, data_root):
    boards, refs = slice_boards(tmp_path, data_root)
    with database(request.param, tmp_path) as url:
        srv = Server(url, boards, refs, tmp_path / "server.log").start()
        srv.refs = slice_references(refs)
        srv.refs_root = refs
        yield srv
        srv.stop()


# -- boards as data ----------------------------------------------------------------------------------------


def test_shipped_boards_load_and_open_on_the_shared_data(data_root):
    boards = load_boards(BOARDS_DIR, data_root)
    assert {"multi30k-2016-en-de", "multi30k-2016-en-fr", "multi30k-2018-en-de", "newstest2014-en-de",
            "newstest2014-en-fr", "flickr8k-test"} <= set(boards)
    for name in ("multi30k-2016-en-de", "multi30k-2016-en-fr", "newstest2014-en-de", "newstest2014-en-fr",
                 "flickr8k-test"):
        assert boards[name].is_open, (name, boards[name].reason)
    assert boards["newstest2014-en-de"].segments == 3003 and boards["flickr8k-test"].segments == 1000
    blind = boards["multi30k-2018-en-de"]  # its references are held back from shared/data
    assert not blind.is_open and "test_2018_flickr.de.gz is not on this server" in blind.reason
    assert blind.hidden_references


def test_paper_rows_come_from_the_reproductions_paper_results_and_never_cross_conventions(tmp_path):
    en_fr = {row["model"]: row for row in parse_board(BOARDS_DIR / "newstest2014-en-fr.yaml").paper_rows}
    # tokenised BLEU is shown beside the sacreBLEU column, never in it (so never sorted or ranked with it)
    assert en_fr["RNNsearch-50"]["scores"] == {}
    assert en_fr["RNNsearch-50"]["beside"] == {"bleu": "26.75 (tok_bleu, All); 34.16 (tok_bleu, No UNK)"}
    assert en_fr["RNNencdec-30"]["reproduction"] == "cho2014" and "Transformer (base)" in en_fr
    flickr = {row["model"]: row for row in parse_board(BOARDS_DIR / "flickr8k-test.yaml").paper_rows}
    assert flickr["Soft-Attention"]["scores"] == {"meteor": 18.93}  # the same convention: under its column
    assert flickr["Soft-Attention"]["beside"]["bleu4"] == "19.5 (bleu_nobp)"
    multi30k = parse_board(BOARDS_DIR / "multi30k-2016-en-de.yaml").paper_rows
    assert [r["beside"] for r in multi30k] == [{"bleu": "41.02 (lc_tok_bleu)"}]
    good = (BOARDS_DIR / "newstest2014-en-fr.yaml").read_text()
    (tmp_path / "a.yaml").write_text(good + "paper_rows:\n  - {model: X, scores: {bleu: 1.0}, source: s}\n")
    with pytest.raises(BoardError, match=r"a\.yaml: paper_rows are read from reproductions/\*/paper_results.yaml"):
        parse_board(tmp_path / "a.yaml")


def test_a_bad_board_definition_names_the_file_and_key(tmp_path):
    good = (BOARDS_DIR / "newstest2014-en-de.yaml").read_text()
    (tmp_path / "a.yaml").write_text(good.replace("primary: bleu", "primary: ter"))
    with pytest.raises(BoardError, match=r"a\.yaml: metric.primary 'ter' is not one of metric.columns"):
        load_boards(tmp_path, None)
    (tmp_path / "a.yaml").write_text(good + "colour: red\n")
    with pytest.raises(BoardError, match=r"a\.yaml: unknown config key 'colour'"):
        load_boards(tmp_path, None)
    (tmp_path / "a.yaml").write_text(good.replace("  primary: bleu\n", "  primary: bleu\n  colour: red\n"))
    with pytest.raises(BoardError, match=r"a\.yaml: unknown config key 'metric.colour'"):
        load_boards(tmp_path, None)
    (tmp_path / "a.yaml").write_text(good.replace("title:", "limits: {max_line_chars: many}\ntitle:"))
    with pytest.raises(BoardError, match=r"a\.yaml: 'limits.max_line_chars' must be int"):
        load_boards(tmp_path, None)
    (tmp_path / "a.yaml").write_text(good.replace("split: newstest2014\n", ""))
    with pytest.raises(BoardError, match=r"a\.yaml: missing key 'split'"):
        load_boards(tmp_path, None)


# -- the server --------------------------------------------------------------------------------------------


def test_server_scores_submissions_and_ignores_claimed_scores(server):
    token = add_user(server.db_url, "alice")
    hyps = degraded(server.refs, 20)
    true_bleu = bleu(hyps, server.refs)
    response = post(server.url, BOARD, token, "\n".join(hyps).encode(),
                    {"model": "liar", "claimed_scores": {"bleu": 99.9, "chrf": 99.9}}, key="a")
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["scores"]["bleu"] == true_bleu != 99.9 and receipt["rank"] == 1
    detail = httpx.get(f"{server.url}/api/submissions/{receipt['id']}").json()
    assert detail["scores"]["bleu"] == true_bleu and detail["claimed_scores"] == {"bleu": 99.9, "chrf": 99.9}
    assert detail["signature"] == "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
    better = post(server.url, BOARD, token, "\n".join(degraded(server.refs, 5)).encode(), {"model": "better"}, key="b")
    assert better.json()["rank"] == 1
    rows = httpx.get(f"{server.url}/api/boards/{BOARD}").json()["rows"]
    assert [(r["model"], r["rank"]) for r in rows] == [("better", 1), ("liar", 2)]


def test_concurrent_submissions_are_stored_once_with_correct_ranks(server):
    """20 clients x 10 submissions, each sent twice at once with the same Idempotency-Key: 200 rows."""
    tokens = [add_user(server.db_url, f"client{c:02d}") for c in range(20)]
    jobs = []
    for c, token in enumerate(tokens):
        for s in range(10):
            k = (c * 10 + s) % 57 + 1  # 57 distinct qualities, so some scores tie
            jobs.append((token, f"c{c}-s{s}", k))
    expected = {key: bleu(degraded(server.refs, k), server.refs) for _, key, k in jobs}

    def send(job):
        token, key, k = job
        with httpx.Client() as client:
            response = post(server.url, BOARD, token, "\n".join(degraded(server.refs, k)).encode(),
                            {"model": key}, key=key, client=client)
        return key, response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=20) as pool:  # each job twice in a row: the twins race each other
        results = list(pool.map(send, [job for job in jobs for _ in range(2)]))
    assert all(status in (200, 201) for _, status, _ in results), [r for r in results if r[1] not in (200, 201)][:3]
    ids = {}
    for key, _, body in results:
        ids.setdefault(key, set()).add(body["id"])
        assert body["scores"]["bleu"] == expected[key]
    assert all(len(v) == 1 for v in ids.values()) and len(ids) == 200
    assert sum(status == 201 for _, status, _ in results) == 200  # the other 200 were answered as replays
    board = httpx.get(f"{server.url}/api/boards/{BOARD}").json()
    rows = [r for r in board["rows"] if r["kind"] == "submission"]
    assert len(rows) == 200 == board["submissions"]
    scores = sorted(expected.values(), reverse=True)
    for row in rows:
        assert row["scores"]["bleu"] == expected[row["model"]]
        assert row["rank"] == 1 + sum(s > row["scores"]["bleu"] for s in scores)  # competition ranking
    assert [r["scores"]["bleu"] for r in rows] == scores


def test_sigkill_during_submissions_loses_no_acknowledged_one(server):
    token = add_user(server.db_url, "crashy", daily_limit=1000)
    acknowledged, lock, stop = {}, threading.Lock(), threading.Event()

    def client(worker: int):
        with httpx.Client() as http:
            for s in range(40):
                if stop.is_set():
                    return
                key = f"w{worker}-{s}"
                try:
                    r = post(server.url, BOARD, token, "\n".join(degraded(server.refs, s + 1)).encode(),
                             {"model": key}, key=key, client=http)
                except httpx.TransportError:
                    return
                if r.status_code == 201:
                    with lock:
                        acknowledged[key] = r.json()["id"]

    threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    while len(acknowledged) < 12:
        threading.Event().wait(0.05)
    server.kill()  # SIGKILL, with requests in flight
    stop.set()
    for t in threads:
        t.join()
    server.start()
    stored = {r["model"]: r for r in httpx.get(f"{server.url}/api/boards/{BOARD}").json()["rows"]}
    assert set(acknowledged) <= set(stored)
    for key, row in stored.items():  # every stored row is whole: scored, with its outputs
        detail = httpx.get(f"{server.url}/api/submissions/{row['id']}").json()
        assert detail["segments"] == 60 and detail["scores"]["bleu"] == bleu(
            degraded(server.refs, int(key.split("-")[1]) + 1), server.refs)
    # Retrying everything with the same keys stores each submission exactly once.
    for w in range(4):
        for s in range(40):
            r = post(server.url, BOARD, token, "\n".join(degraded(server.refs, s + 1)).encode(), {"model": f"w{w}-{s}"},
                     key=f"w{w}-{s}")
            assert r.status_code in (200, 201)
            if f"w{w}-{s}" in acknowledged:
                assert r.status_code == 200 and r.json()["id"] == acknowledged[f"w{w}-{s}"]
    assert httpx.get(f"{server.url}/api/boards/{BOARD}").json()["submissions"] == 160


MALFORMED = [  # (what, board, outputs, metadata, expected status, words the message must hold)
    ("wrong line count", BOARD, b"ein Hund\n" * 59, {"model": "m"}, 400,
     "has 59 lines; expected 60: one detokenised translation per line of test_2017_flickr.en"),
    ("a line too long", BOARD, b"ein Hund\n" * 59 + b"x" * 5001, {"model": "m"}, 400,
     "line 60 has 5001 characters; the board takes at most 5000"),
    ("U+2028 is no line end", BOARD, b"ein\xe2\x80\xa8Hund\n" * 59, {"model": "m"}, 400, "has 59 lines"),
    ("invalid UTF-8", BOARD, b"\xff\xfe\xfa\n" * 60, {"model": "m"}, 400, "not valid UTF-8: byte 0xff at offset 0"),
    ("empty", BOARD, b"", {"model": "m"}, 400, "outputs: is empty"),
    ("NUL bytes", BOARD, b"a\x00\n" * 60, {"model": "m"}, 400, "NUL character"),
    ("oversized", BOARD, b"a" * (1024 * 1024 + 10), {"model": "m"}, 413, "larger than the server's limit"),
    ("bad JSON", BOARD, None, '{"model": "m",', 422, "metadata: not valid JSON"),
    ("NaN claimed", BOARD, None, '{"model": "m", "claimed_scores": {"bleu": NaN}}', 422, "NaN is not a JSON number"),
    ("Infinity in the config", BOARD, None, '{"model": "m", "config": {"lr": -Infinity}}', 422,
     "-Infinity is not a JSON number"),
    ("1e400 in compute", BOARD, None, '{"model": "m", "compute": {"flops": 1e400}}', 422, "'1e400' is out of range"),
    ("a repeated key", BOARD, None, '{"model": "m", "model": "n"}', 422, "key 'model' appears twice"),
    ("a newline after the reproduction", BOARD, None, {"model": "m", "reproduction": "bahdanau2014\n"}, 422,
     "lower-case name"),
    ("a line separator in the model name", BOARD, None, {"model": "a\u2028b"}, 422, "U+2028, LINE SEPARATOR"),
    ("a bidi override in the model name", BOARD, None, {"model": "a\u202eb"}, 422, "U+202E, RIGHT-TO-LEFT OVERRIDE"),
    ("a C1 control in the model name", BOARD, None, {"model": "a\x85b"}, 422, "U+0085"),
    ("NUL in the notes", BOARD, None, {"model": "m", "notes": "a\x00b"}, 422, "metadata.notes: a NUL character"),
    ("NUL in the config", BOARD, None, {"model": "m", "config": {"a": ["x\x00"]}}, 422,
     "metadata.config.a[0]: a NUL character"),
    ("a deeply nested config", BOARD, None, '{"model": "m", "config": ' + '{"a": ' * 40 + "1" + "}" * 41, 422,
     "nested more than 32 levels deep"),
    ("metadata not an object", BOARD, None, "[1, 2]", 422, "metadata"),
    ("unknown metadata field", BOARD, None, {"model": "m", "score": 99}, 422, "score: Extra inputs are not permitted"),
    ("no model name", BOARD, None, {"seed": 1}, 422, "model: Field required"),
    ("seed not a number", BOARD, None, {"model": "m", "seed": "<b>1</b>"}, 422, "seed: Input should be a valid int"),
    ("javascript W&B link", BOARD, None, {"model": "m", "wandb_url": "javascript:alert(1)"}, 422, "http(s) URL"),
    ("SQL in the commit", BOARD, None, {"model": "m", "commit": "'; DROP TABLE submissions; --"}, 422,
     "git commit hash"),
    ("newline in the model name", BOARD, None, {"model": "a\nb"}, 422, "one line"),
    ("path-like reproduction", BOARD, None, {"model": "m", "reproduction": "../../etc/passwd"}, 422, "lower-case name"),
    ("unknown board", "no-such-board", None, {"model": "m"}, 404, "no board named 'no-such-board'"),
    ("SQL in the board name", "x' OR '1'='1", None, {"model": "m"}, 404, "no board named"),
    ("path-like board name", "..%2F..%2Fetc%2Fpasswd", None, {"model": "m"}, 404, "nothing at /api/boards/../../etc"),
    ("closed board", "broken", None, {"model": "m"}, 409, "closed: reference file"),
    ("caption ids that are paths", "slice-captions", json.dumps({"../../etc/passwd": "a dog"}).encode(),
     {"model": "m"}, 400, "not among the board's images"),
    ("captions nested 100,000 deep", "slice-captions", b"[" * 100_000 + b"]" * 100_000, {"model": "m"}, 400,
     "nested too deeply"),
    ("an image captioned twice by a repeated key", "slice-captions", b'{"a.jpg": "x", "a.jpg": "y"}', {"model": "m"},
     400, "key 'a.jpg' appears twice"),
    ("a caption of 50,000 words", "slice-captions", json.dumps({"a.jpg": "dog " * 50_000}).encode(), {"model": "m"},
     400, "has 50000 words"),
    ("captions not JSON", "slice-captions", b"a dog\n" * 12, {"model": "m"}, 400, "outputs: is not valid JSON"),
]


def test_malformed_submissions_get_a_clear_4xx_and_the_server_keeps_serving(server):
    token = add_user(server.db_url, "mallory", daily_limit=1000)
    good = "\n".join(server.refs).encode()
    for what, board, outputs, metadata, status, words in MALFORMED:
        response = post(server.url, board, token, good if outputs is None else outputs, metadata)
        assert response.status_code == status, (what, response.status_code, response.text)
        assert words in response.json()["detail"], (what, response.json())
        assert response.headers["x-content-type-options"] == "nosniff", what  # the security headers on errors too
        assert server.alive(), what
    r = httpx.post(f"{server.url}/api/boards/{BOARD}/submissions", headers={"Authorization": f"Bearer {token}"},
                   data={"metadata": "{}"})
    assert r.status_code == 422 and "outputs: Field required" in r.json()["detail"]
    r = post(server.url, BOARD, token, good, {"model": "m"}, key="has spaces in it")
    assert r.status_code == 400 and "Idempotency-Key" in r.json()["detail"]
    r = httpx.get(f"{server.url}/api/boards/{BOARD}", params={"sort": "bleu; DROP TABLE submissions"})
    assert r.status_code == 400 and "unknown column" in r.json()["detail"]
    # An injection string as a model name is data: stored and shown verbatim, the tables intact.
    evil = "Robert'); DROP TABLE submissions;-- <b>x</b>"
    assert post(server.url, BOARD, token, good, {"model": evil}).status_code == 201
    assert [r["model"] for r in httpx.get(f"{server.url}/api/boards/{BOARD}").json()["rows"]] == [evil]
    assert httpx.get(f"{server.url}/api/submissions/1").json()["model"] == evil


def test_tokens_users_and_ownership(server):
    alice, bob = add_user(server.db_url, "alice"), add_user(server.db_url, "bob", daily_limit=2)
    good = "\n".join(server.refs).encode()
    assert post(server.url, BOARD, None, good, {"model": "m"}).status_code == 401
    for wrong in ("arl_not-a-token", "' OR '1'='1", alice + "x"):
        r = post(server.url, BOARD, wrong, good, {"model": "m"})
        assert r.status_code == 401 and "unknown or revoked" in r.json()["detail"]
    mine = post(server.url, BOARD, alice, good, {"model": "alice's"}).json()["id"]
    headers = {"Authorization": f"Bearer {bob}"}
    r = httpx.patch(f"{server.url}/api/submissions/{mine}", json={"model": "bob was here"}, headers=headers)
    assert r.status_code == 403 and "belongs to another user" in r.json()["detail"]
    assert httpx.delete(f"{server.url}/api/submissions/{mine}", headers=headers).status_code == 403
    assert httpx.patch(f"{server.url}/api/submissions/{mine}", json={"model": "x"}).status_code == 401
    assert httpx.get(f"{server.url}/api/submissions/{mine}").json()["model"] == "alice's"
    own = {"Authorization": f"Bearer {alice}"}
    r = httpx.patch(f"{server.url}/api/submissions/{mine}", json={"model": "renamed"}, headers=own)
    assert r.status_code == 200 and r.json()["model"] == "renamed"
    # Per-user daily limit (bob: 2), and token revocation through the admin command.
    assert [post(server.url, BOARD, bob, good, {"model": f"b{i}"}).status_code for i in range(3)] == [201, 201, 429]
    assert "limit is 2" in post(server.url, BOARD, bob, good, {"model": "b"}).json()["detail"]
    from leaderboards import db

    factory = db.init_db(db.make_engine(server.db_url))
    alice_token = next(t for t in db.list_tokens(factory, "alice"))
    db.revoke_token(factory, alice_token["id"])
    factory.kw["bind"].dispose()
    assert post(server.url, BOARD, alice, good, {"model": "m"}).status_code == 401
    assert httpx.delete(f"{server.url}/api/submissions/{mine}", headers=own).status_code == 401


def test_hidden_references_cannot_be_fetched_by_any_route(server):
    token = add_user(server.db_url, "alice")
    leaky = "\n".join(degraded(server.refs, 59)).encode()  # its last line is a reference
    assert post(server.url, BOARD, token, leaky, {"model": "m"}).status_code == 201
    secrets = [ref for ref in server.refs[59:] + server.refs[:3] if len(ref) > 25]
    assert secrets
    paths = set()
    for route in httpx.get(f"{server.url}/openapi.json").json()["paths"]:
        for value in (BOARD, "1", "slice-captions"):
            paths.add(route.replace("{name}", value).replace("{submission_id}", value))
    paths |= {"/boards/slice-en-de/references", "/api/boards/slice-en-de/references", "/static/refs.de",
              "/refs/slice/refs.de", "/slice/refs.de", "/boards/..%2F..%2Frefs%2Fslice%2Frefs.de",
              "/api/boards/..%2Fslice%2Frefs.de", "/%2e%2e/%2e%2e/refs/slice/refs.de", "/docs", "/redoc",
              f"/boards/{BOARD}?sort=model", f"/api/boards/{BOARD}?sort=chrf&order=asc", "/api/submissions/1/outputs"}
    seen = 0
    for path in sorted(paths):
        for method in ("GET", "POST"):
            r = httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {token}"})
            seen += r.status_code == 200
            assert not any(secret in r.text for secret in secrets), (method, path)
    assert seen >= 6  # the real pages answered, without the references
    board = httpx.get(f"{server.url}/api/boards/{BOARD}").json()
    assert board["hidden_references"] and board["references"][0]["path"] == "slice/refs.de"


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_server_processes_share_one_database(backend, tmp_path, data_root):
    """`serve --workers 2`: two processes, concurrent twins across them, still one row per key."""
    boards, refs_root = slice_boards(tmp_path, data_root)
    refs = slice_references(refs_root)
    with database(backend, tmp_path) as url:
        srv = Server(url, boards, refs_root, tmp_path / "server.log", workers=2).start()
        try:
            tokens = [add_user(url, f"w{u}") for u in range(4)]
            jobs = [(tokens[i % 4], f"k{i}", i % 50 + 1) for i in range(40)]

            def send(job):
                token, key, k = job
                with httpx.Client() as client:
                    r = post(srv.url, BOARD, token, "\n".join(degraded(refs, k)).encode(), {"model": key}, key=key,
                             client=client)
                return r.status_code

            with ThreadPoolExecutor(max_workers=8) as pool:
                statuses = list(pool.map(send, [job for job in jobs for _ in range(2)]))
            assert sorted(set(statuses)) == [200, 201] and statuses.count(201) == 40
            rows = httpx.get(f"{srv.url}/api/boards/{BOARD}").json()["rows"]
            assert sorted(r["model"] for r in rows) == sorted(key for _, key, _ in jobs)
        finally:
            srv.stop()
