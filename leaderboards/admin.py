"""What `attnrepro leaderboard ACTION` does, for whoever runs the server: users, API tokens, the boards
open here, schema migrations. Each function works on the database (or board files) directly and returns
text or rows for the CLI to print; what the operator must fix (a bad URL, a database that cannot be opened, a
name that is not allowed) is an AttnreproError of one line, which the CLI prints and exits 2 on."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.exc import InterfaceError, OperationalError

from . import db


def migrate(url: str | None) -> str:
    """Upgrade the database at `url` in place to this release's schema (Alembic); returns what was done.
    A database made before migrations existed is first stamped with the baseline revision."""
    from alembic import command

    engine = db.make_engine(url)
    try:
        with engine.connect().execution_options(writes=True) as conn, conn.begin():
            db.schema_lock(conn)
            before = db.current_revision(conn)
            config = db.alembic_config(conn)
            if before is None and "submissions" in inspect(conn).get_table_names():
                command.stamp(config, db.BASELINE)
                before = db.BASELINE
            command.upgrade(config, "head")
            after = db.current_revision(conn)
    except (OperationalError, InterfaceError) as err:
        raise db.DatabaseUnavailable(f"cannot migrate {engine.url.render_as_string(hide_password=True)}: "
                                     f"{db.unavailable_reason(err)}") from None
    finally:
        engine.dispose()
    shown = engine.url.render_as_string(hide_password=True)
    if before == after:
        return f"{shown}: schema {after} is current; nothing to do"
    return f"{shown}: schema {before or '(empty)'} -> {after}"


def add_user(url: str | None, name: str, admin: bool = False, daily_limit: int | None = None) -> str:
    db.check_user_name(name)  # before the database is opened (or created)
    token = db.create_user(_sessions(url), name, admin=admin, daily_limit=daily_limit)
    return f"user {name} added; API token (shown once, store it now):\n{token}"


def add_token(url: str | None, name: str, label: str | None = None) -> str:
    return db.create_token(_sessions(url), name, label=label)


def revoke_token(url: str | None, token_id: int) -> str:
    token = db.revoke_token(_sessions(url), token_id)
    return f"token {token.id} ({token.hint}...) revoked"


def users(url: str | None) -> list[dict]:
    return db.list_users(_sessions(url))


def tokens(url: str | None, name: str | None = None) -> list[dict]:
    return db.list_tokens(_sessions(url), name)


def boards(boards_dir: Path | None, references: Path | None) -> list[dict]:
    """One row per board: whether it is open on this server, and if not, why."""
    from .boards import load_boards

    return [{"board": b.name, "task": b.task, "split": f"{b.dataset} {b.split} {b.pair or ''}".strip(),
             "metric": f"{b.metric.name} {b.metric.version}", "status": "open" if b.is_open else f"closed: {b.reason}"}
            for b in load_boards(boards_dir, references).values()]


def _sessions(url: str | None):
    return db.init_db(db.make_engine(url))
