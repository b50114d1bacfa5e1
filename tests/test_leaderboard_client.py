"""What a leaderboard user does: train a tiny model, `attnrepro submit` its run directory, see it ranked with
the server's score, export the boards, open the board page in headless Chromium; and a captioning board
scored by pycocoevalcap on the server."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from lbsupport import Server, add_user, database, post, slice_boards

from reproductions.translation.metrics import corpus_scores

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("ATTNREPRO_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.slow


def attnrepro(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "WANDB_MODE": "disabled", **(env or {})}, timeout=600)


@pytest.fixture(scope="module")
def server(tmp_path_factory, data_root):
    tmp = tmp_path_factory.mktemp("leaderboard")
    boards, refs = slice_boards(tmp, data_root)
    with database("sqlite", tmp) as url:
        srv = Server(url, boards, refs, tmp / "server.log").start()
        srv.refs_root = refs
        yield srv
        srv.stop()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny RNNencdec run that decoded all of test_2016_flickr (greedy, so it takes seconds)."""
    run_dir = tmp_path_factory.mktemp("runs") / "cho2014-tiny"
    result = attnrepro("train", "cho2014", "--preset", "tiny", "--run-dir", str(run_dir), "--set",
                       "data.eval_limit=null", "--set", "decode.beam=1")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_submit_a_tiny_run_and_see_it_ranked_with_the_servers_score(server, tiny_run, data_root, tmp_path):
    token = add_user(server.db_url, "student")
    env = {"ATTNREPRO_TOKEN": token, "ATTNREPRO_LEADERBOARD_URL": server.url}
    result = attnrepro("submit", str(tiny_run), "--board", "multi30k-2016-en-de", env=env)
    assert result.returncode == 0, result.stderr
    assert "rank 1;" in result.stdout and "(scored by the server)" in result.stdout
    refs = gzip.open(data_root / "multi30k/task1/raw/test_2016_flickr.de.gz", "rt", encoding="utf-8").read()
    hyps = (tiny_run / "hyps" / "test_2016_flickr.txt").read_text(encoding="utf-8")
    expected = corpus_scores(hyps.rstrip("\n").split("\n"), refs.rstrip("\n").split("\n"))
    board = httpx.get(f"{server.url}/api/boards/multi30k-2016-en-de").json()
    [row] = [r for r in board["rows"] if r["kind"] == "submission"]
    assert row["rank"] == 1 and row["model"] == "cho2014 (tiny, seed 1)" and row["user"] == "student"
    assert row["scores"] == {"bleu": expected["bleu"], "chrf": expected["chrf"]}
    detail = httpx.get(f"{server.url}/api/submissions/{row['id']}").json()
    run_metrics = json.loads((tiny_run / "metrics.json").read_text())["splits"]["test_2016_flickr"]
    assert detail["claimed_scores"]["bleu"] == run_metrics["bleu"]  # the run's own number, kept as a claim
    assert detail["reproduction"] == "cho2014" and detail["config"]["data"]["pair"] == "en-de"
    provenance = json.loads((tiny_run / "provenance.json").read_text())
    assert detail["compute"]["steps"] >= 1 and detail["commit"] == (provenance.get("git", {}).get("commit") or None)
    # The same command again (a retry) stores nothing new.
    again = attnrepro("submit", str(tiny_run), "--board", "multi30k-2016-en-de", env=env)
    assert again.returncode == 0 and "already stored" in again.stdout
    assert httpx.get(f"{server.url}/api/boards/multi30k-2016-en-de").json()["submissions"] == 1
    # A board for another pair, a closed board and a missing token are refused with what to do.
    wrong = attnrepro("submit", str(tiny_run), "--board", "multi30k-2016-en-fr", env=env)
    assert wrong.returncode == 2 and "scores multi30k en-fr" in wrong.stderr
    closed = attnrepro("submit", str(tiny_run), "--board", "multi30k-2018-en-de", env=env)
    assert closed.returncode == 2 and "is closed: reference file" in closed.stderr
    missing = attnrepro("submit", str(tiny_run), "--board", "multi30k-2016-en-de",
                        env={"ATTNREPRO_TOKEN": "", "ATTNREPRO_LEADERBOARD_URL": server.url,
                             "ATTNREPRO_LEADERBOARD_CONFIG": str(tmp_path / "none.yaml")})
    assert missing.returncode == 2 and "no API token" in missing.stderr

    # Export: static Markdown and HTML of every board, the submission among them.
    out = tmp_path / "published"
    exported = attnrepro("leaderboard", "export", "--out", str(out), "--server", server.url)
    assert exported.returncode == 0, exported.stderr
    markdown = (out / "multi30k-2016-en-de.md").read_text()
    assert "cho2014 (tiny, seed 1)" in markdown and f"{expected['bleu']:.2f}" in markdown
    assert "RNNsearch-50 (reported, not verified" in (out / "newstest2014-en-fr.md").read_text()
    assert "closed" in (out / "README.md").read_text() and (out / "index.html").is_file()


def test_admin_commands_create_list_and_revoke_tokens(tmp_path):
    with database("sqlite", tmp_path) as url:
        added = attnrepro("leaderboard", "user", "add", "carol", "--daily-limit", "5", "--db", url)
        assert added.returncode == 0, added.stderr
        token = added.stdout.strip().splitlines()[-1]
        assert token.startswith("arl_")
        listed = attnrepro("leaderboard", "token", "list", "carol", "--db", url)
        assert token[:10] in listed.stdout and token not in listed.stdout  # only a hint is shown, never the token
        from sqlalchemy import select

        from leaderboards import db

        factory = db.init_db(db.make_engine(url))
        with factory() as session:
            stored = session.scalars(select(db.Token.token_hash)).all()
            assert stored == [db.hash_token(token)]
        again = attnrepro("leaderboard", "user", "add", "carol", "--db", url)
        assert again.returncode == 2 and "user 'carol' exists" in again.stderr
        assert attnrepro("leaderboard", "token", "revoke", "1", "--db", url).returncode == 0
        with factory() as session:
            assert db.user_for_token(session, token) is None
        factory.kw["bind"].dispose()


def test_caption_board_is_scored_with_pycocoevalcap(server, data_root):
    from reproductions.captioning.metrics import caption_scores

    token = add_user(server.db_url, "captioner")
    images = (data_root / "flickr8k/Flickr8k_text/Flickr_8k.testImages.txt").read_text().split()[:12]
    captions = [{"image": image, "caption": "a dog runs on the grass" if i % 2 else "a man in a red shirt"}
                for i, image in enumerate(images)]
    r = post(server.url, "slice-captions", token, json.dumps(captions).encode(), {"model": "constant"})
    assert r.status_code == 201, r.text
    lines = gzip.open(data_root / "flickr8k/Flickr8k_text/Flickr8k.token.txt.gz", "rt", encoding="utf-8").read()
    refs = {}
    for line in lines.splitlines():
        key, _, caption = line.partition("\t")
        refs.setdefault(key.rsplit("#", 1)[0], []).append(caption)
    expected = caption_scores([c["caption"] for c in captions], [refs[i] for i in images])
    assert r.json()["scores"]["cider_d"] == expected["cider_d"] and r.json()["primary"] == expected["cider_d"]
    assert r.json()["scores"]["meteor"] == expected["meteor"]
    missing = post(server.url, "slice-captions", token, json.dumps(captions[1:]).encode(), {"model": "m"})
    assert missing.status_code == 400 and "1 of the 12 images have no caption, e.g. " in missing.json()["detail"]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run does)")
def test_board_page_in_headless_chromium_shows_rows_and_escapes_script(server):
    from playwright.sync_api import sync_playwright

    token = add_user(server.db_url, "browser")
    refs = (server.refs_root / "slice" / "refs.de").read_text(encoding="utf-8").split("\n")[:60]
    evil = '<script>window.__pwned = 1; alert("pwned")</script><img src=x onerror="window.__pwned = 2">'
    for name, k in ((evil, 30), ("honest model", 10)):
        hyps = [("ein Hund" if i < k else ref) for i, ref in enumerate(refs)]
        assert post(server.url, "slice-en-de", token, "\n".join(hyps).encode(), {"model": name}).status_code == 201
    dialogs = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{server.url}/boards/slice-en-de")
        rows = page.locator("#ranking tbody tr.submission")
        assert rows.count() == 2
        assert rows.nth(0).locator("td").nth(1).inner_text().startswith("honest model")
        assert rows.nth(1).locator("td").nth(1).inner_text().startswith(evil)  # shown as text
        assert page.evaluate("window.__pwned") is None and not dialogs
        page.click("text=chrf")  # sortable columns
        assert "sort=chrf" in page.url
        page.goto(f"{server.url}/boards/newstest2014-en-fr")
        assert page.locator("tr.paper").count() == 7  # Table 1's five RNN rows, Table 2's two En-Fr rows
        assert "reported, not verified" in page.locator("tr.paper").first.inner_text()
        assert "26.75 (tok_bleu, All)" in page.locator("tr.paper").first.inner_text()  # beside BLEU, unranked
        page.goto(f"{server.url}/")
        assert "closed" in page.locator("body").inner_text()
        browser.close()
