"""The JSON API: boards and submissions to read, submissions to make, change and delete."""


import hashlib
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Header, HTTPException, Path, Request, Response, UploadFile

from . import db
from .boards import Board, ScoringFailed, SubmissionError
from .schemas import KEY_RE, MAX_ID, Changes, InvalidBody, Metadata, parse_body
from .service import Service
from .views import board_view, receipt, submission_view

SubmissionId = Annotated[int, Path(ge=1, le=MAX_ID, description="a submission's id")]
PARTS = ("metadata", "outputs")


QUERY_TOKENS = ("token", "access_token", "api_key", "apikey", "key")  # never read; the access log redacts them


def router(service: Service) -> APIRouter:
    api = APIRouter()

    def current_user(request: Request, authorization: Annotated[str | None, Header()] = None) -> db.User:
        if not authorization:
            in_url = next((k for k in request.query_params if k.lower() in QUERY_TOKENS), None)
            where = (f"a token in the URL (?{in_url}=) is never read: URLs end up in logs; revoke that token and "
                     if in_url else "this needs an API token: ")
            raise HTTPException(401, where + "send 'Authorization: Bearer TOKEN' (an admin creates one with "
                                             "`attnrepro leaderboard token add USER`)",
                                headers={"WWW-Authenticate": "Bearer"})
        scheme, _, token = authorization.partition(" ")
        db.check_database(service.sessions)  # a deleted database file: 503 before anything is read or scored
        with service.sessions() as session:
            user = db.user_for_token(session, token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise HTTPException(401, "the API token is unknown or revoked", headers={"WWW-Authenticate": "Bearer"})
        return user

    async def one_of_each_part(request: Request) -> None:
        """Multipart parts are metadata and outputs, once each (a repeated part is refused, not overwritten)."""
        names = [name for name, _ in (await request.form()).multi_items()]
        for name in names:
            if name not in PARTS:
                raise HTTPException(400, f"unknown multipart part {name[:40]!r}; send metadata and outputs")
            if names.count(name) > 1:
                raise HTTPException(400, f"multipart part {name!r} appears {names.count(name)} times; send it once")

    def owned_id(submission_id: SubmissionId, user: Annotated[db.User, Depends(current_user)]) -> int:
        """The id of a submission of the caller's (401, 404 or 403 otherwise), checked before any body is read."""
        with service.sessions() as session:
            owned(session, submission_id, user)
        return submission_id

    async def changes_body(request: Request, _owned: Annotated[int, Depends(owned_id)]) -> Changes:
        try:
            return parse_body(Changes, await request.body(), "body")
        except InvalidBody as err:
            raise HTTPException(422, str(err)) from None

    @api.get("/healthz")
    def healthz():
        try:
            db.check_alive(service.sessions)
        except db.DatabaseUnavailable as err:
            raise HTTPException(503, f"unhealthy: {err}") from None
        return {"ok": True, "boards": len(service.boards), "open": sum(b.is_open for b in service.boards.values())}

    @api.get("/api/boards")
    def api_boards():
        return service.boards_summary()

    @api.get("/api/boards/{name}")
    def api_board(name: str, sort: str | None = None, order: str | None = None):
        board = service.board(name)
        with service.sessions() as session:
            return board_view(session, board, sort, order)

    @api.get("/api/submissions/{submission_id}")
    def api_submission(submission_id: SubmissionId):
        with service.sessions() as session:
            return submission_view(session, submission_id)

    @api.get("/api/me")
    def api_me(user: Annotated[db.User, Depends(current_user)]):
        with service.sessions() as session:
            made = db.submissions_since(session, user.id)
        return {"name": user.name, "admin": user.is_admin, "submissions_last_24h": made,
                "daily_limit": user.limit(service.settings.daily_limit)}

    # The token, then the daily limit, are checked before the outputs are parsed or scored: a refusal is cheap.
    @api.post("/api/boards/{name}/submissions", status_code=201,
              dependencies=[Depends(current_user), Depends(one_of_each_part)])
    def submit(
        name: str,
        response: Response,
        user: Annotated[db.User, Depends(current_user)],
        metadata: Annotated[str, Form(description="JSON: model, reproduction, config, commit, seed, wandb_url, ...")],
        outputs: Annotated[UploadFile, File(description="translations, one per line; or captions as JSON")],
        idempotency_key: Annotated[str | None, Header()] = None,
    ):
        board = service.board(name)
        if not board.is_open:
            raise HTTPException(409, f"board {name} is closed: {board.reason}")
        if idempotency_key is not None and not KEY_RE.fullmatch(idempotency_key):
            raise HTTPException(400, "Idempotency-Key: 1 to 200 printable ASCII characters without spaces")
        with service.sessions() as session:  # a retry is answered with what was stored, even at the limit
            earlier = db.find_by_key(session, user.id, idempotency_key)
            refused = db.over_limit(session, user, service.settings.daily_limit) if earlier is None else None
        if refused:
            raise HTTPException(429, refused)
        try:
            meta = parse_body(Metadata, metadata, "metadata")
        except InvalidBody as err:
            raise HTTPException(422, str(err)) from None
        data = outputs.file.read()
        digest = hashlib.sha256(data).hexdigest()
        if earlier is not None:
            return replay(earlier, board, digest, meta, response)
        row = scored_row(board, user, meta, data, digest, idempotency_key)
        try:
            stored, created = db.store_submission(service.sessions, row, service.settings.daily_limit)
        except db.LimitReached as err:  # reached by a concurrent submission while this one was scored
            raise HTTPException(429, str(err)) from None
        if not created:
            return replay(stored, board, digest, meta, response)
        with service.sessions() as session:
            return receipt(session, stored, replayed=False)

    def scored_row(board: Board, user: db.User, meta: Metadata, data: bytes, digest: str,
                   key: str | None) -> db.Submission:
        try:
            hyps = board.parse(data)
        except SubmissionError as err:
            raise HTTPException(400, str(err)) from None
        try:
            result = board.score(hyps, service.scorer)
        except ScoringFailed as err:
            raise HTTPException(422, f"outputs: the metric code failed on these outputs ({err}); nothing was "
                                     "stored") from None
        return db.Submission(
            board=board.name, user_id=user.id, model=meta.model, reproduction=meta.reproduction, preset=meta.preset,
            config=meta.config, commit=meta.commit, seed=meta.seed, wandb_url=meta.wandb_url,
            compute=stored_compute(meta), claimed_scores=meta.claimed_scores, notes=meta.notes, outputs=data,
            outputs_sha256=digest, segments=len(hyps), scores=result["scores"], primary_score=result["primary"],
            signature=result["signature"], metric_version=result["metric_version"], score_detail=result["detail"],
            idempotency_key=key,
        )

    def replay(earlier: db.Submission, board: Board, digest: str, meta: Metadata, response: Response) -> dict:
        """The stored submission again; metadata that differs from what was stored is named, not stored."""
        if earlier.board != board.name or earlier.outputs_sha256 != digest:
            raise HTTPException(409, f"Idempotency-Key was used for another submission (#{earlier.id} on "
                                     f"{earlier.board}); use a new key for new outputs")
        response.status_code = 200
        with service.sessions() as session:
            answer = receipt(session, earlier, replayed=True)
        ignored = [field for field, value in stored_metadata(meta).items() if getattr(earlier, field) != value]
        answer["ignored_metadata"] = ignored
        if ignored:
            response.headers["Idempotency-Replayed"] = "metadata-ignored"
            answer["warning"] = (f"this Idempotency-Key was used for submission #{earlier.id}: nothing new was "
                                 f"stored, and the new {', '.join(ignored)} was ignored; change model, wandb_url or "
                                 f"notes with PATCH /api/submissions/{earlier.id}, or use a new key")
        return answer

    @api.patch("/api/submissions/{submission_id}")
    def change(submission_id: SubmissionId, user: Annotated[db.User, Depends(current_user)],
               changes: Annotated[Changes, Depends(changes_body)]):
        with db.write_session(service.sessions) as session:
            row = owned(session, submission_id, user)
            for key, value in changes.model_dump(exclude_unset=True).items():
                setattr(row, key, value)
            session.commit()
            return submission_view(session, submission_id)

    @api.delete("/api/submissions/{submission_id}", status_code=204)
    def delete(submission_id: SubmissionId, user: Annotated[db.User, Depends(current_user)]):
        with db.write_session(service.sessions) as session:
            db.delete_submission(session, owned(session, submission_id, user))
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

    return api


def stored_compute(meta: Metadata) -> dict | None:
    """The compute record as stored: the client's, with the commit's dirty flag."""
    return {**(meta.compute or {}), **({"dirty": meta.dirty} if meta.dirty is not None else {})} or None


def stored_metadata(meta: Metadata) -> dict:
    """`meta` as the columns of a submission hold it."""
    return {"model": meta.model, "reproduction": meta.reproduction, "preset": meta.preset, "config": meta.config,
            "commit": meta.commit, "seed": meta.seed, "wandb_url": meta.wandb_url, "compute": stored_compute(meta),
            "claimed_scores": meta.claimed_scores, "notes": meta.notes}
