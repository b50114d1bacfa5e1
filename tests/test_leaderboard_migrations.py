"""Schema migrations (Alembic) on SQLite and PostgreSQL: a database made by the first release (no version
table, outputs as text) stops the server with the command to run; `attnrepro leaderboard migrate` upgrades
it in place, keeping its users, tokens and submissions, to exactly the schema of the models."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from lbsupport import BACKENDS, REPO, Server, database, slice_boards
from sqlalchemy import text

from leaderboards import db

OLD_TOKEN = "arl_made-by-the-first-release"


def first_release_database(url: str) -> None:
    """The schema the first release created (migration 0001, which matches its models: checked with Alembic's
    compare_metadata against that release's leaderboards/db.py), without a version table, and some rows."""
    from alembic import command

    engine = db.make_engine(url)
    with engine.connect().execution_options(writes=True) as conn, conn.begin():
        command.upgrade(db.alembic_config(conn), "0001")
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("INSERT INTO users (id, name, is_admin, created_at) VALUES (1, 'old', false, :t)"),
                     {"t": db.utcnow()})
        conn.execute(text("INSERT INTO tokens (user_id, token_hash, hint, created_at) VALUES (1, :h, 'arl_made', :t)"),
                     {"h": db.hash_token(OLD_TOKEN), "t": db.utcnow()})
        conn.execute(text(
            "INSERT INTO submissions (id, board, user_id, model, outputs, outputs_sha256, segments, scores, "
            "primary_score, signature, metric_version, created_at) VALUES (1, 'slice-en-de', 1, 'old model', "
            ":outputs, :sha, 2, '{\"bleu\": 12.5, \"chrf\": 40.0}', 12.5, 'sig', '2.6.0', :t)"),
            {"outputs": "ein Hund\nzwei Hunde", "sha": "0" * 64, "t": db.utcnow()})
    engine.dispose()


def migrate(url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", "leaderboard", "migrate", "--db", url], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_first_release_database_is_refused_then_upgraded_in_place(backend, tmp_path, data_root):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    boards, refs = slice_boards(tmp_path, data_root)
    with database(backend, tmp_path) as url:
        first_release_database(url)
        server = Server(url, boards, refs, tmp_path / "server.log")
        with pytest.raises(RuntimeError, match="server exited with 2"):
            server.start()
        assert "from before migrations, this release needs 0003; back it up, then run `attnrepro leaderboard " \
               "migrate --db" in (tmp_path / "server.log").read_text()
        done = migrate(url)
        assert done.returncode == 0, done.stderr
        assert "schema 0001 -> 0003" in done.stdout
        engine = db.make_engine(url)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                    db.Base.metadata) == []
            assert conn.execute(text("SELECT outputs FROM submissions")).scalar_one() == b"ein Hund\nzwei Hunde"
        engine.dispose()
        server.start()
        try:
            me = httpx.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {OLD_TOKEN}"})
            assert me.status_code == 200 and me.json()["name"] == "old"
            old = httpx.get(f"{server.url}/api/submissions/1").json()
            assert old["model"] == "old model" and old["rank"] == 1 and old["scores"]["bleu"] == 12.5
        finally:
            server.stop()
        again = migrate(url)
        assert again.returncode == 0 and "schema 0003 is current; nothing to do" in again.stdout


def test_an_empty_database_is_created_at_the_newest_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.sqlite3'}"
    db.init_db(db.make_engine(url)).kw["bind"].dispose()
    engine = db.make_engine(url)
    with engine.connect() as conn:
        assert db.current_revision(conn) == db.head_revision() == "0003"
    engine.dispose()
    assert "nothing to do" in migrate(url).stdout
