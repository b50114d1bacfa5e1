"""The leaderboard's database through SQLAlchemy: users, API tokens (only their sha256 is stored) and
submissions (outputs, server-computed scores, provenance). SQLite file by default, PostgreSQL by URL.

A submission is stored in one transaction, so a crash leaves either all of it or none. SQLite takes the
write lock at BEGIN (BEGIN IMMEDIATE) so the daily-limit count and the insert see the same table;
PostgreSQL locks the user's row for the same effect.

The schema is versioned with Alembic (`leaderboards/migrations/`): an empty database is created at the
newest revision; one at an older revision is refused until `attnrepro leaderboard migrate --db URL` has
upgraded it in place (`leaderboards.admin.migrate`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
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
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, joinedload, mapped_column, relationship, sessionmaker

from reproductions.common.errors import AttnreproError

TOKEN_PREFIX = "arl_"


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # naive UTC: the same on SQLite and PostgreSQL


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
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


def default_url() -> str:
    if os.environ.get("ATTNREPRO_LEADERBOARD_DB"):
        return os.environ["ATTNREPRO_LEADERBOARD_DB"]
    path = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "attnrepro" / "leaderboard.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def make_engine(url: str | None = None) -> Engine:
    url = url or default_url()
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
    """Sessions on `engine`'s database: an empty one gets the newest schema; an older one is refused."""
    for attempt in range(5):  # server workers starting together may race to create the tables
        try:
            _create_or_check(engine)
            break
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    return sessionmaker(engine, expire_on_commit=False)


def _create_or_check(engine: Engine) -> None:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.connect().execution_options(writes=True) as conn, conn.begin():
        schema_lock(conn)
        current = current_revision(conn)
        head = head_revision()
        if current == head:
            return
        if current is None and not inspect(conn).get_table_names():
            Base.metadata.create_all(conn)
            MigrationContext.configure(conn).stamp(ScriptDirectory.from_config(alembic_config()), head)
            return
        url = engine.url.render_as_string(hide_password=True)
        raise SchemaOutOfDate(f"the database {url} has schema {current or 'from before migrations'}, this release "
                              f"needs {head}; back it up, then run `attnrepro leaderboard migrate --db {url}`")


def write_session(factory: sessionmaker[Session]) -> Session:
    """A session whose transaction takes SQLite's write lock at BEGIN (no effect on PostgreSQL)."""
    session = factory()
    session.connection(execution_options={"writes": True})
    return session


# -- users and tokens (the admin commands) ---------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_user(factory: sessionmaker[Session], name: str, admin: bool = False,
                daily_limit: int | None = None) -> str:
    """Add a user and return their first API token (shown once; only its hash is kept)."""
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
    since = utcnow() - timedelta(hours=hours)
    return session.scalar(select(func.count()).select_from(Submission)
                          .where(Submission.user_id == user_id, Submission.created_at >= since))


def store_submission(factory: sessionmaker[Session], row: Submission, daily_limit: int) -> tuple[Submission, bool]:
    """Insert `row` unless its idempotency key was used already; returns (submission, created).
    Raises LimitReached when the user has made `daily_limit` submissions in the last 24 hours."""
    with write_session(factory) as session:
        user = session.scalar(select(User).where(User.id == row.user_id).with_for_update())
        existing = find_by_key(session, row.user_id, row.idempotency_key)
        if existing is not None:
            return existing, False
        limit = user.limit(daily_limit)
        made = submissions_since(session, row.user_id)
        if made >= limit:
            raise LimitReached(f"user '{user.name}' has made {made} submissions in the last 24 hours, the limit is "
                               f"{limit}; try again later")
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
