"""The leaderboard service (FastAPI): submissions scored on the server, boards as pages and as JSON.

Routes (nothing else is served; reference files in particular never are):
    GET  /                           the boards, open or closed (with the reason)
    GET  /boards/NAME                one board, ranked; ?sort=COLUMN&order=asc|desc
    GET  /submissions/ID             a submission's scores and provenance
    GET  /api/boards, /api/boards/NAME, /api/submissions/ID   the same as JSON
    POST /api/boards/NAME/submissions    multipart: metadata (JSON) + outputs (file); Bearer token;
                                          Idempotency-Key header makes a retry store nothing new
    PATCH, DELETE /api/submissions/ID    the owner only
    GET  /api/me, /healthz
"""


from __future__ import annotations

import dataclasses
import json
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from . import api, connections, db, guard, pages
from .boards import load_boards
from .scoring import ScoringWorker
from .service import Service
from .views import page_templates, render  # noqa: F401 - the export (client.py) renders pages through here


@dataclass
class Settings:
    database_url: str | None = None  # default: db.default_url()
    boards_dir: Path | None = None  # default: leaderboards/boards
    references_root: Path | None = None  # default: $ATTNREPRO_DATA
    daily_limit: int = 50  # submissions per user per 24 hours, unless the user has their own limit
    max_upload_bytes: int = 8 * 1024 * 1024
    body_timeout_s: float = 30.0  # a request body that stalls this long is answered 408
    score_timeout_s: float = 300.0  # the metric code's time on one submission (a 3003-line board takes ~1 s)
    # ... and its memory, Java included: about 1.3 GB on a Flickr8k board. These limits are the backstop; the
    # boards' limits (words per caption, characters per line) refuse the inputs that blow up METEOR or sacreBLEU.
    score_memory_mb: int = 3072
    # A connection that has not sent a request's headers this long after opening (or after its last answer) is
    # closed; at most max_connections are held (fewer where the open-file limit is lower: connections.py).
    header_timeout_s: float = 10.0
    max_connections: int = 1000
    keep_alive_s: float = 5.0  # uvicorn's timeout_keep_alive: an idle keep-alive connection is closed after this

    ENV = "ATTNREPRO_LEADERBOARD_SETTINGS"

    def to_env(self) -> None:
        os.environ[self.ENV] = json.dumps({k: None if v is None else str(v) if isinstance(v, Path) else v
                                           for k, v in dataclasses.asdict(self).items()})

    @classmethod
    def from_env(cls) -> Settings:
        values = json.loads(os.environ.get(cls.ENV, "{}"))
        for key in ("boards_dir", "references_root"):
            values[key] = Path(values[key]) if values.get(key) else None
        return cls(**values)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service: boards loaded and checked, the database at the current schema (else SchemaOutOfDate,
    naming the migrate command), a scoring worker process, the API and page routes behind the guard."""
    settings = settings or Settings()
    connections.configure(settings.header_timeout_s, settings.max_connections)
    boards = load_boards(settings.boards_dir, settings.references_root)
    sessions = db.init_db(db.make_engine(settings.database_url))
    scorer = ScoringWorker(timeout_s=settings.score_timeout_s, memory_mb=settings.score_memory_mb)
    service = Service(settings, boards, sessions, scorer, page_templates())

    @asynccontextmanager
    async def lifespan(_app):
        scorer.start()  # warm before the first submission
        try:
            yield
        finally:
            scorer.close()  # the worker and any Java it runs
            sessions.kw["bind"].dispose()

    app = FastAPI(title="attnrepro leaderboards", docs_url=None, redoc_url=None, lifespan=lifespan)
    guard.install(app, settings.max_upload_bytes, settings.body_timeout_s)
    app.include_router(api.router(service))
    app.include_router(pages.router(service))
    return app


def app_from_env() -> FastAPI:
    """The app of one of several uvicorn worker processes (`attnrepro leaderboard serve --workers N`)."""
    return create_app(Settings.from_env())


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    import uvicorn

    limits = {"http": connections.GuardedH11Protocol, "timeout_keep_alive": settings.keep_alive_s,
              "backlog": connections.accept_backlog()}
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info", **limits)
    else:  # worker processes build the app from the settings in the environment
        load_boards(settings.boards_dir, settings.references_root)  # fail here, once, on a bad board ...
        db.init_db(db.make_engine(settings.database_url)).kw["bind"].dispose()  # ... or an out-of-date schema
        settings.to_env()
        uvicorn.run("leaderboards.app:app_from_env", factory=True, workers=workers, host=host, port=port,
                    log_level="info", **limits)
