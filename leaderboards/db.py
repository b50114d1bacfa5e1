"""The leaderboard's database through SQLAlchemy: users, API tokens (only their sha256 is stored) and
submissions (outputs, server-computed scores, provenance). SQLite file by default, PostgreSQL by URL.

A submission is stored in one transaction, so a crash leaves either all of it or none. SQLite takes the
write lock at BEGIN (BEGIN IMMEDIATE) so the daily-limit count and the insert see the same table;
PostgreSQL locks the user's row for the same effect.

The schema is versioned with Alembic (`leaderboards/migrations/`): an empty database is created at the
newest revision; one at an older revision is refused until `attnrepro leaderboard migrate --db URL` has
upgraded it in place (`leaderboards.admin.migrate`).

Operator faults are named, not hidden: a URL that is not a database URL, a database that cannot be opened
or reached (DatabaseUnavailable, an AttnreproError: one line, exit 2 from the CLI; a 503 from the server); a
SQLite file deleted or replaced while the server runs (every write and /healthz check that the file is still
the one opened); and a SQLite file gone where one was created before (its `FILE.created` witness remains),
which is refused instead of silently starting an empty database.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import time
import weakref
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, joinedload, mapped_column, relationship, sessionmaker

from reproductions.common.errors import AttnreproError

TOKEN_PREFIX = "arl_"
log = logging.getLogger("leaderboards")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # naive UTC: the same on SQLite and PostgreSQL


class Base(DeclarativeBase):
    pass


MAX_USER_NAME = 64  # the column's length, checked here so SQLite and PostgreSQL refuse the same names
USER_NAME_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_USER_NAME - 1}}}")
MAX_LABEL = 100  # tokens.label
MAX_DAILY_LIMIT = 2**31 - 1  # users.daily_limit is an INTEGER


def check_user_name(name: str) -> str:
    """The one rule for user names (admin commands and every database): 1 to 64 letters, digits, _ . -"""
    if not USER_NAME_RE.fullmatch(name or ""):
        shown = repr(name[:80]) if name else "an empty name"
        raise AttnreproError(f"user name {shown} is not allowed: use 1 to {MAX_USER_NAME} letters, digits, '_', '.' "
                             "or '-', starting with a letter or digit (e.g. alice or lab-3)")
    return name


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_USER_NAME), unique=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    daily_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: the server's default
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    def limit(self, default: int) -> int:
        return default if self.daily_limit is None else self.daily_limit


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the token
    hint: Mapped[str] = mapped_column(String(16))  # the first characters, to tell tokens apart in listings
    label: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Submission(Base):
    __tablename__ = "submissions"
    __table_args__ = (UniqueConstraint("user_id", "idempotency_key", name="one_submission_per_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    board: Mapped[str] = mapped_column(String(100), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    reproduction: Mapped[str | None] = mapped_column(String(64), nullable=True)
    preset: Mapped[str | None] = mapped_column(String(64), nullable=True)
    config: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    commit: Mapped[str | None] = mapped_column(String(40), nullable=True)
    seed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    wandb_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    compute: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    claimed_scores: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # shown, never used
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    outputs: Mapped[bytes] = mapped_column(LargeBinary)  # byte-exact as uploaded: sha256 is outputs_sha256
    outputs_sha256: Mapped[str] = mapped_column(String(64))
    segments: Mapped[int] = mapped_column(Integer)
    scores: Mapped[dict] = mapped_column(JSON)
    primary_score: Mapped[float] = mapped_column(Float, index=True)
    signature: Mapped[str] = mapped_column(String(500))
    metric_version: Mapped[str] = mapped_column(String(32))
    score_detail: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    user: Mapped[User] = relationship()


class DeletedSubmission(Base):
    """What is left of a deleted submission: whose it was and when it was made, so that it still counts
    against its owner's daily limit (deleting is no way around the limit). Outputs and provenance are gone."""
    __tablename__ = "deleted_submissions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    submission_id: Mapped[int] = mapped_column(Integer)
    submitted_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    deleted_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


def default_url() -> str:
    if os.environ.get("ATTNREPRO_LEADERBOARD_DB"):
        return os.environ["ATTNREPRO_LEADERBOARD_DB"]
    path = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "attnrepro" / "leaderboard.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


URL_FORMS = "sqlite:///PATH/TO/FILE.sqlite3 or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"


def make_engine(url: str | None = None) -> Engine:
    url = url or default_url()
    try:
        parsed = make_url(url)
    except ArgumentError:
        parsed = None
    if parsed is None or not parsed.drivername.startswith(("sqlite", "postgres")):
        raise AttnreproError(f"database URL {url!r} is not one this server takes; use {URL_FORMS}")
    if url.startswith(("postgresql://", "postgres://")):  # psycopg 3 is the driver we ship
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("writes") else "BEGIN")

    return engine


class DatabaseUnavailable(AttnreproError):
    """The database cannot be used now (gone, replaced, unreachable, read-only, full); the server answers 503
    with this message, the admin commands print it."""


def unavailable_reason(err: Exception) -> str:
    """What an OperationalError of SQLite or PostgreSQL means for whoever runs the server, in a few words."""
    text = str(getattr(err, "orig", err)).lower()
    for words, reason in ((("readonly", "read-only", "read only"), "the database is read-only"),
                          (("disk is full", "no space left", "disk full"), "the disk holding the database is full"),
                          (("unable to open", "no such file"), "the database file cannot be opened"),
                          (("connection", "connect", "server closed", "terminating"),
                           "the database server cannot be reached"),
                          (("locked", "busy"), "the database is locked by another process")):
        if any(w in text for w in words):
            return reason
    return "the database refused the operation (the server log has the details)"


class SchemaOutOfDate(AttnreproError):
    """The database was made by an older release; the message names the command that upgrades it."""


MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "0001"  # the schema of the release before migrations existed (its databases have no version table)


def alembic_config(connection=None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def schema_lock(connection) -> None:
    """Serialise schema work of processes starting together (SQLite: BEGIN IMMEDIATE did it already)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7274101)")


def init_db(engine: Engine) -> sessionmaker[Session]:
    """Sessions on `engine`'s database: an empty one gets the newest schema; an older one is refused, and so
    is a missing SQLite file where one was created before. Raises DatabaseUnavailable when it cannot be used."""
    path = sqlite_file(engine)
    if path is not None:
        _refuse_a_vanished_file(path)
    for attempt in range(5):  # server workers starting together may race to create the tables
        try:
            _create_or_check(engine)
            break
        except (OperationalError, ProgrammingError, IntegrityError, InterfaceError) as err:
            if attempt == 4:
                shown = engine.url.render_as_string(hide_password=True)
                raise DatabaseUnavailable(f"cannot use the database {shown}: {unavailable_reason(err)} "
                                          f"({str(getattr(err, 'orig', err)).strip().splitlines()[0][:200]})") from None
            time.sleep(0.2 * (attempt + 1))
    if path is not None:
        _remember_file(engine, path)
    return sessionmaker(engine, expire_on_commit=False)


def _create_or_check(engine: Engine) -> None:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = head_revision()
    with engine.connect() as conn, conn.begin():  # the usual case, without a write lock (a read-only file works)
        if current_revision(conn) == head:
            return
    with engine.connect().execution_options(writes=True) as conn, conn.begin():
        schema_lock(conn)
        current = current_revision(conn)
        if current == head:
            return
        if current is None and not inspect(conn).get_table_names():
            Base.metadata.create_all(conn)
            MigrationContext.configure(conn).stamp(ScriptDirectory.from_config(alembic_config()), head)
            log.warning("created a new, empty leaderboard database at %s (no users, no submissions)",
                        engine.url.render_as_string(hide_password=True))
            return
        url = engine.url.render_as_string(hide_password=True)
        raise SchemaOutOfDate(f"the database {url} has schema {current or 'from before migrations'}, this release "
                              f"needs {head}; back it up, then run `attnrepro leaderboard migrate --db {url}`")


# -- the SQLite file: still the one opened? ----------------------------------------------------------------

_OPENED: weakref.WeakKeyDictionary[Engine, tuple[Path, int, int]] = weakref.WeakKeyDictionary()


def sqlite_file(engine: Engine) -> Path | None:
    """The file of a SQLite database (None for PostgreSQL and in-memory databases)."""
    name = engine.url.database if engine.dialect.name == "sqlite" else None
    if not name or name == ":memory:" or "mode=memory" in name:
        return None
    return Path(name.removeprefix("file:")).resolve()


def witness(path: Path) -> Path:
    """`FILE.created`, written beside a SQLite database when it is first opened: its absence is expected only
    for a database that never existed."""
    return path.with_name(path.name + ".created")


def _refuse_a_vanished_file(path: Path) -> None:
    mark = witness(path)
    if mark.is_file() and (not path.is_file() or path.stat().st_size == 0):
        raise DatabaseUnavailable(f"the database file {path} is missing or empty, but {mark.name} beside it says "
                                  "a database was created there before: it was deleted or moved. Restore it from a "
                                  f"backup, or delete {mark} to start with an empty database")


def _remember_file(engine: Engine, path: Path) -> None:
    mark = witness(path)
    if not mark.exists():
        try:
            mark.write_text(f"attnrepro leaderboard database {path.name}, first opened {utcnow().isoformat()} UTC; "
                            "if that file is missing, restore it from a backup (delete this file to start afresh)\n")
        except OSError:  # a read-only folder: the witness is a safeguard, not a requirement
            pass
    stat = path.stat()
    _OPENED[engine] = (path, stat.st_dev, stat.st_ino)


def check_database(factory: sessionmaker[Session]) -> None:
    """Raise DatabaseUnavailable if the SQLite file this process opened was deleted or replaced since: writes
    would go to a file nobody will see again."""
    engine = factory.kw["bind"]
    if engine not in _OPENED:
        return
    path, device, inode = _OPENED[engine]
    try:
        stat = path.stat()
    except FileNotFoundError:
        log.error("the database file %s was deleted while the server ran; stop it and restore the file", path)
        raise DatabaseUnavailable(f"the database file {path.name} was deleted while the server ran; nothing was "
                                  "stored (the server's operator must restore it from a backup)") from None
    if (stat.st_dev, stat.st_ino) != (device, inode):
        log.error("the database file %s was replaced while the server ran; restart the server", path)
        raise DatabaseUnavailable(f"the database file {path.name} was replaced while the server ran; nothing was "
                                  "stored (the server's operator must restart the server)")


def check_alive(factory: sessionmaker[Session]) -> None:
    """For /healthz: the file is the one opened and the database answers a query."""
    check_database(factory)
    try:
        with factory() as session:
            session.execute(select(1))
    except (OperationalError, InterfaceError) as err:
        raise DatabaseUnavailable(unavailable_reason(err)) from None


def write_session(factory: sessionmaker[Session]) -> Session:
    """A session whose transaction takes SQLite's write lock at BEGIN (no effect on PostgreSQL), on a database
    file that is still the one opened."""
    check_database(factory)
    session = factory()
    session.connection(execution_options={"writes": True})
    return session


# -- users and tokens (the admin commands) ---------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_user(factory: sessionmaker[Session], name: str, admin: bool = False,
                daily_limit: int | None = None) -> str:
    """Add a user and return their first API token (shown once; only its hash is kept)."""
    check_user_name(name)
    if daily_limit is not None and not 0 <= daily_limit <= MAX_DAILY_LIMIT:
        raise AttnreproError(f"--daily-limit {daily_limit}: give 0 to {MAX_DAILY_LIMIT} submissions per 24 hours")
    with write_session(factory) as session:
        if session.scalar(select(User).where(User.name == name)) is not None:
            raise AttnreproError(f"user '{name}' exists; give them another token with "
                                 f"`attnrepro leaderboard token add {name}`")
        user = User(name=name, is_admin=admin, daily_limit=daily_limit)
        session.add(user)
        session.flush()
        token = _new_token(session, user, label="first token")
        session.commit()
    return token


def create_token(factory: sessionmaker[Session], name: str, label: str | None = None) -> str:
    if label is not None and not (0 < len(label) <= MAX_LABEL and label.isprintable()):
        raise AttnreproError(f"--label: give 1 to {MAX_LABEL} printable characters (got {len(label)})")
    with write_session(factory) as session:
        user = _user(session, name)
        token = _new_token(session, user, label)
        session.commit()
    return token


def revoke_token(factory: sessionmaker[Session], token_id: int) -> Token:
    with write_session(factory) as session:
        token = session.get(Token, token_id)
        if token is None:
            raise AttnreproError(f"no token with id {token_id}; `attnrepro leaderboard token list` shows them")
        token.revoked_at = token.revoked_at or utcnow()
        session.commit()
        return token


def list_users(factory: sessionmaker[Session]) -> list[dict]:
    with factory() as session:
        counts = dict(session.execute(select(Submission.user_id, func.count()).group_by(Submission.user_id)).all())
        return [{"id": u.id, "name": u.name, "admin": u.is_admin, "daily_limit": u.daily_limit,
                 "submissions": counts.get(u.id, 0), "created": u.created_at.isoformat(timespec="seconds")}
                for u in session.scalars(select(User).order_by(User.id))]


def list_tokens(factory: sessionmaker[Session], name: str | None = None) -> list[dict]:
    with factory() as session:
        query = select(Token, User.name).join(User).order_by(Token.id)
        if name:
            query = query.where(User.name == name)
        return [{"id": t.id, "user": user, "hint": t.hint + "...", "label": t.label,
                 "created": t.created_at.isoformat(timespec="seconds"),
                 "revoked": t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else None}
                for t, user in session.execute(query)]


def user_for_token(session: Session, token: str) -> User | None:
    return session.scalar(select(User).join(Token).where(Token.token_hash == hash_token(token),
                                                         Token.revoked_at.is_(None)))


def _user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise AttnreproError(f"no user '{name}'; add one with `attnrepro leaderboard user add {name}`")
    return user


def _new_token(session: Session, user: User, label: str | None) -> str:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(Token(user_id=user.id, token_hash=hash_token(token), hint=token[:10], label=label))
    return token


# -- submissions -------------------------------------------------------------------------------------------


class LimitReached(Exception):
    pass


def find_by_key(session: Session, user_id: int, key: str | None) -> Submission | None:
    if key is None:
        return None
    return session.scalar(select(Submission).where(Submission.user_id == user_id, Submission.idempotency_key == key))


def submissions_since(session: Session, user_id: int, hours: int = 24) -> int:
    """Submissions the user made in the last `hours`, the deleted ones included (their tombstones)."""
    since = utcnow() - timedelta(hours=hours)
    live = session.scalar(select(func.count()).select_from(Submission)
                          .where(Submission.user_id == user_id, Submission.created_at >= since))
    deleted = session.scalar(select(func.count()).select_from(DeletedSubmission)
                             .where(DeletedSubmission.user_id == user_id, DeletedSubmission.submitted_at >= since))
    return live + deleted


def over_limit(session: Session, user: User, daily_limit: int) -> str | None:
    """Why `user` may not submit now (their limit is reached), or None."""
    limit = user.limit(daily_limit)
    made = submissions_since(session, user.id)
    if made < limit:
        return None
    return (f"user '{user.name}' has made {made} submissions in the last 24 hours (deleted ones count), the limit "
            f"is {limit}; try again later")


def delete_submission(session: Session, row: Submission) -> None:
    """Delete `row`, leaving its tombstone (it keeps counting against the daily limit for 24 hours)."""
    session.add(DeletedSubmission(user_id=row.user_id, submission_id=row.id, submitted_at=row.created_at))
    session.delete(row)


def store_submission(factory: sessionmaker[Session], row: Submission, daily_limit: int) -> tuple[Submission, bool]:
    """Insert `row` unless its idempotency key was used already; returns (submission, created).
    Raises LimitReached when the user has made `daily_limit` submissions in the last 24 hours."""
    with write_session(factory) as session:
        user = session.scalar(select(User).where(User.id == row.user_id).with_for_update())
        existing = find_by_key(session, row.user_id, row.idempotency_key)
        if existing is not None:
            return existing, False
        refused = over_limit(session, user, daily_limit)
        if refused:
            raise LimitReached(refused)
        session.add(row)
        try:
            session.commit()
        except IntegrityError:  # the same key, committed by a concurrent request in between
            session.rollback()
            existing = find_by_key(session, row.user_id, row.idempotency_key)
            if existing is None:
                raise
            return existing, False
        return row, True


def count_on_board(session: Session, board: str) -> int:
    return session.scalar(select(func.count()).select_from(Submission).where(Submission.board == board))


def _ranking(board: str):
    """Competition ranking on one board by the primary score, higher first: ties share a rank (1, 2, 2, 4).
    The only definition of a rank; pages, the API and receipts all read it from here."""
    return (select(Submission.id.label("id"), func.rank().over(order_by=Submission.primary_score.desc()).label("rank"))
            .where(Submission.board == board).subquery())


def ranked(session: Session, board: str) -> list[tuple[Submission, int]]:
    """Every submission on `board` with its rank, best first (ties: the earlier submission first)."""
    ranking = _ranking(board)
    query = (select(Submission, ranking.c.rank).join(ranking, ranking.c.id == Submission.id)
             .order_by(ranking.c.rank, Submission.created_at, Submission.id).options(joinedload(Submission.user)))
    return [(row, rank) for row, rank in session.execute(query)]


def rank_of(session: Session, row: Submission) -> int:
    ranking = _ranking(row.board)
    return session.scalar(select(ranking.c.rank).where(ranking.c.id == row.id))
