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


import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import db
from .boards import Board, SubmissionError, load_boards

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'"  # no scripts at all
KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces


@dataclass
class Settings:
    database_url: str | None = None  # default: db.default_url()
    boards_dir: Path | None = None  # default: leaderboards/boards
    references_root: Path | None = None  # default: $ATTNREPRO_DATA
    daily_limit: int = 50  # submissions per user per 24 hours, unless the user has their own limit
    max_upload_bytes: int = 8 * 1024 * 1024

    ENV = "ATTNREPRO_LEADERBOARD_SETTINGS"

    def to_env(self) -> None:
        os.environ[self.ENV] = json.dumps({k: None if v is None else str(v) if isinstance(v, Path) else v
                                           for k, v in dataclasses.asdict(self).items()})

    @classmethod
    def from_env(cls) -> "Settings":
        values = json.loads(os.environ.get(cls.ENV, "{}"))
        for key in ("boards_dir", "references_root"):
            values[key] = Path(values[key]) if values.get(key) else None
        return cls(**values)


def app_from_env() -> FastAPI:
    """The app of one of several uvicorn worker processes (`attnrepro leaderboard serve --workers N`)."""
    return create_app(Settings.from_env())


# -- request bodies ---------------------------------------------------------------------------------------


def _one_line(text: str | None) -> str | None:
    if text is not None and any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError("must be one line without control characters")
    return text


def _http_url(url: str | None) -> str | None:
    if url is not None and not re.fullmatch(r"https?://[^\s<>\"'`]+", url):
        raise ValueError("must be an http(s) URL such as https://wandb.ai/ENTITY/PROJECT/runs/ID")
    return url


ModelName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_one_line)]
Link = Annotated[str, Field(max_length=500), AfterValidator(_http_url)]
Notes = Annotated[str, Field(max_length=2000)]


class Metadata(BaseModel):
    """What the client says about a run. Scores it claims are kept for display and never used."""
    model_config = ConfigDict(extra="forbid")

    model: ModelName
    reproduction: str | None = Field(default=None, max_length=64)
    preset: str | None = Field(default=None, max_length=64)
    config: dict[str, Any] | None = None
    commit: str | None = None
    dirty: bool | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    wandb_url: Link | None = None
    compute: dict[str, Any] | None = None
    claimed_scores: dict[str, float] | None = None
    notes: Notes | None = None

    @field_validator("reproduction", "preset")
    @classmethod
    def _name(cls, v):
        if v is not None and not NAME_RE.match(v):
            raise ValueError("must be a lower-case name like bahdanau2014 or xu2015-hard")
        return v

    @field_validator("commit")
    @classmethod
    def _commit(cls, v):
        if v is not None and not re.fullmatch(r"[0-9a-f]{7,40}", v):
            raise ValueError("must be a git commit hash (7 to 40 lower-case hex digits)")
        return v


class Changes(BaseModel):
    """What an owner may change after submitting (PATCH)."""
    model_config = ConfigDict(extra="forbid")

    model: ModelName | None = None
    wandb_url: Link | None = None
    notes: Notes | None = None


# -- the app ------------------------------------------------------------------------------------------------


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, whether or not they announce their length."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._refuse(send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        started = False

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send):
        response = JSONResponse({"detail": f"request body is larger than the server's limit of "
                                           f"{self.limit // 1024} KiB"}, status_code=413)
        await response({"type": "http"}, None, send)


class _TooLarge(Exception):
    pass


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    boards: dict[str, Board] = load_boards(settings.boards_dir, settings.references_root)
    sessions = db.init_db(db.make_engine(settings.database_url))
    pages = page_templates()

    app = FastAPI(title="attnrepro leaderboards", docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, err: RequestValidationError):
        return JSONResponse({"detail": "; ".join(_describe(e) for e in err.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        detail = err.detail
        if err.status_code == 404 and detail == "Not Found":  # no route matched
            detail = f"nothing at {request.url.path}; / lists the boards and /openapi.json describes the API"
        return JSONResponse({"detail": detail}, status_code=err.status_code, headers=getattr(err, "headers", None))

    def board_or_404(name: str) -> Board:
        if name not in boards:
            raise HTTPException(404, f"no board named {name!r}; GET /api/boards lists them")
        return boards[name]

    def current_user(authorization: Annotated[str | None, Header()] = None) -> db.User:
        if not authorization:
            raise HTTPException(401, "this needs an API token: send 'Authorization: Bearer TOKEN' (an admin "
                                     "creates one with `attnrepro leaderboard token add USER`)",
                                headers={"WWW-Authenticate": "Bearer"})
        scheme, _, token = authorization.partition(" ")
        with sessions() as session:
            user = db.user_for_token(session, token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise HTTPException(401, "the API token is unknown or revoked", headers={"WWW-Authenticate": "Bearer"})
        return user

    # -- JSON API --

    @app.get("/healthz")
    def healthz():
        return {"ok": True, "boards": len(boards), "open": sum(b.is_open for b in boards.values())}

    @app.get("/api/boards")
    def api_boards():
        with sessions() as session:
            return [{**b.public(), "submissions": db.count_on_board(session, b.name)} for b in boards.values()]

    @app.get("/api/boards/{name}")
    def api_board(name: str, sort: str | None = None, order: str | None = None):
        board = board_or_404(name)
        with sessions() as session:
            return board_view(session, board, sort, order)

    @app.get("/api/submissions/{submission_id}")
    def api_submission(submission_id: int):
        with sessions() as session:
            return submission_view(session, submission_id)

    @app.get("/api/me")
    def api_me(user: Annotated[db.User, Depends(current_user)]):
        with sessions() as session:
            made = db.submissions_since(session, user.id)
        return {"name": user.name, "admin": user.is_admin, "submissions_last_24h": made,
                "daily_limit": user.limit(settings.daily_limit)}

    @app.post("/api/boards/{name}/submissions", status_code=201)
    def submit(
        name: str,
        response: Response,
        user: Annotated[db.User, Depends(current_user)],
        metadata: Annotated[str, Form(description="JSON: model, reproduction, config, commit, seed, wandb_url, ...")],
        outputs: Annotated[UploadFile, File(description="translations, one per line; or captions as JSON")],
        idempotency_key: Annotated[str | None, Header()] = None,
    ):
        board = board_or_404(name)
        if not board.is_open:
            raise HTTPException(409, f"board {name} is closed: {board.reason}")
        if idempotency_key is not None and not KEY_RE.match(idempotency_key):
            raise HTTPException(400, "Idempotency-Key: 1 to 200 printable ASCII characters without spaces")
        try:
            meta = Metadata.model_validate_json(metadata)
        except ValidationError as err:
            raise HTTPException(422, "metadata: " + "; ".join(_describe(e) for e in err.errors())) from None
        data = outputs.file.read()
        digest = hashlib.sha256(data).hexdigest()
        with sessions() as session:  # a retry: answer with what was stored, before scoring anything
            earlier = db.find_by_key(session, user.id, idempotency_key)
            if earlier is not None:
                return replay(session, earlier, board, digest, response)
        try:
            hyps = board.parse(data)
        except SubmissionError as err:
            raise HTTPException(400, str(err)) from None
        result = board.score(hyps)
        row = db.Submission(
            board=board.name, user_id=user.id, model=meta.model, reproduction=meta.reproduction, preset=meta.preset,
            config=meta.config, commit=meta.commit, seed=meta.seed, wandb_url=meta.wandb_url,
            compute={**(meta.compute or {}), **({"dirty": meta.dirty} if meta.dirty is not None else {})} or None,
            claimed_scores=meta.claimed_scores, notes=meta.notes, outputs="\n".join(hyps), outputs_sha256=digest,
            segments=len(hyps), scores=result["scores"], primary_score=result["primary"],
            signature=result["signature"], metric_version=result["metric_version"], score_detail=result["detail"],
            idempotency_key=idempotency_key,
        )
        try:
            stored, created = db.store_submission(sessions, row, settings.daily_limit)
        except db.LimitReached as err:
            raise HTTPException(429, str(err)) from None
        with sessions() as session:
            if not created:
                return replay(session, stored, board, digest, response)
            return receipt(session, stored, replayed=False)

    def replay(session, earlier: db.Submission, board: Board, digest: str, response: Response) -> dict:
        if earlier.board != board.name or earlier.outputs_sha256 != digest:
            raise HTTPException(409, f"Idempotency-Key was used for another submission (#{earlier.id} on "
                                     f"{earlier.board}); use a new key for new outputs")
        response.status_code = 200
        return receipt(session, earlier, replayed=True)

    @app.patch("/api/submissions/{submission_id}")
    def change(submission_id: int, changes: Changes, user: Annotated[db.User, Depends(current_user)]):
        with db.write_session(sessions) as session:
            row = owned(session, submission_id, user)
            for key, value in changes.model_dump(exclude_unset=True).items():
                setattr(row, key, value)
            session.commit()
            return submission_view(session, submission_id)

    @app.delete("/api/submissions/{submission_id}", status_code=204)
    def delete(submission_id: int, user: Annotated[db.User, Depends(current_user)]):
        with db.write_session(sessions) as session:
            session.delete(owned(session, submission_id, user))
            session.commit()
        return Response(status_code=204)

    def owned(session, submission_id: int, user: db.User) -> db.Submission:
        row = session.get(db.Submission, submission_id)
        if row is None:
            raise HTTPException(404, f"no submission #{submission_id}")
        if row.user_id != user.id:
            raise HTTPException(403, f"submission #{submission_id} belongs to another user; only its owner can "
                                     "change or delete it")
        return row

    # -- pages --

    @app.get("/", response_class=HTMLResponse)
    def index():
        return render(pages, "index.html", boards=api_boards())

    @app.get("/boards/{name}", response_class=HTMLResponse)
    def board_page(name: str, sort: str | None = None, order: str | None = None):
        return render(pages, "board.html", board=api_board(name, sort, order))

    @app.get("/submissions/{submission_id}", response_class=HTMLResponse)
    def submission_page(submission_id: int):
        return render(pages, "submission.html", s=api_submission(submission_id))

    return app


# -- views: one dict per page, served as JSON and rendered as HTML ------------------------------------------


def board_view(session, board: Board, sort: str | None, order: str | None) -> dict:
    columns = list(board.metric.columns)
    sortable = columns + ["model", "submitted"]
    sort = sort or board.metric.primary
    if sort not in sortable:
        raise HTTPException(400, f"sort: unknown column {sort!r}; one of {', '.join(sortable)}")
    if order not in (None, "asc", "desc"):
        raise HTTPException(400, "order: asc or desc")
    rows = session.scalars(select(db.Submission).where(db.Submission.board == board.name)
                           .order_by(db.Submission.primary_score.desc(), db.Submission.created_at, db.Submission.id))
    out, rank, previous = [], 0, None
    for position, row in enumerate(rows, start=1):
        if row.primary_score != previous:  # competition ranking: ties share a rank
            rank, previous = position, row.primary_score
        out.append({"kind": "submission", "rank": rank, "id": row.id, "model": row.model, "user": row.user.name,
                    "reproduction": row.reproduction, "scores": row.scores, "commit": row.commit,
                    "wandb_url": row.wandb_url, "submitted": row.created_at.isoformat(timespec="seconds")})
    for paper in board.paper_rows:
        out.append({"kind": "paper", "rank": None, "id": None, "model": paper["model"], "user": None,
                    "reproduction": paper.get("reproduction"), "scores": paper["scores"], "source": paper["source"],
                    "commit": None, "wandb_url": None, "submitted": None})
    descending = (order or ("asc" if sort in ("model", "submitted") else "desc")) == "desc"

    def value(row):
        return row["scores"].get(sort) if sort in columns else row[sort]

    # Stable sorts: rows that tie keep the ranking's order; rows without the column (paper rows) go last.
    out = (sorted((r for r in out if value(r) is not None), key=value, reverse=descending)
           + [r for r in out if value(r) is None])
    return {**board.public(), "columns": columns, "sort": sort, "order": "desc" if descending else "asc",
            "rows": out, "submissions": sum(r["kind"] == "submission" for r in out)}


def submission_view(session, submission_id: int) -> dict:
    row = session.get(db.Submission, submission_id)
    if row is None:
        raise HTTPException(404, f"no submission #{submission_id}")
    return {
        "id": row.id, "board": row.board, "model": row.model, "user": row.user.name,
        "rank": db.rank_of(session, row.board, row.primary_score), "scores": row.scores,
        "primary": row.primary_score, "signature": row.signature, "metric_version": row.metric_version,
        "score_detail": row.score_detail, "reproduction": row.reproduction, "preset": row.preset,
        "config": row.config, "commit": row.commit, "seed": row.seed, "wandb_url": row.wandb_url,
        "compute": row.compute, "claimed_scores": row.claimed_scores, "notes": row.notes,
        "segments": row.segments, "outputs_sha256": row.outputs_sha256,
        "submitted": row.created_at.isoformat(timespec="seconds"),
    }


def receipt(session, row: db.Submission, replayed: bool) -> dict:
    return {"id": row.id, "board": row.board, "model": row.model, "scores": row.scores, "primary": row.primary_score,
            "rank": db.rank_of(session, row.board, row.primary_score), "signature": row.signature,
            "url": f"/submissions/{row.id}", "replayed": replayed}


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body",))
    return f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", "invalid")


def render(pages: Environment, template: str, server: str | None = None, static: bool = False, **context) -> str:
    """A page of the live site, or (static=True) of the exported copy whose detail links point at `server`."""
    board = context.get("board")

    def sort_link(column: str) -> str:
        if static or board is None:
            return "#ranking"
        flip = board["sort"] == column and board["order"] == "desc"
        order = "asc" if flip or (board["sort"] != column and column in ("model", "submitted")) else "desc"
        return f"?{urlencode({'sort': column, 'order': order})}"

    links = {
        "home": "index.html" if static else "/",
        "board_link": (lambda name: f"{quote(name)}.html") if static else (lambda name: f"/boards/{quote(name)}"),
        "submission_link": lambda i: f"{(server or '').rstrip('/')}/submissions/{int(i)}",
        "sort_link": sort_link,
    }
    return pages.get_template(template).render(**links, **context)


def page_templates() -> Environment:
    """The HTML templates (autoescaped: every user-supplied string is shown as text)."""
    env = Environment(loader=PackageLoader("leaderboards", "templates"), autoescape=select_autoescape(default=True))
    env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    env.filters["num"] = lambda value: "–" if value is None else f"{value:.2f}"
    return env
