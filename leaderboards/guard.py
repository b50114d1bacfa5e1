"""What every request and every answer goes through: the body limit (413, announced or chunked), the body
read timeout (408), the security headers (and `Cache-Control: no-store` on every answer to a request that
carries a token), HEAD wherever GET is served, one JSON error format `{"detail": ...}` on every error path
(a database that is gone, unreachable, read-only or full is a 503 with the reason; other 500s too), and an
access log with tokens in URLs blanked out."""

from __future__ import annotations

import asyncio
import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import db
from .schemas import describe

CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'"  # no scripts at all
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer"}
DRAIN_FACTOR = 4  # an over-limit body is read on (and dropped) up to 4x the limit, so the client sees the 413
log = logging.getLogger("leaderboards")


def json_error(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


class RequestGuard:
    """ASGI middleware: reads each request body whole before the app sees it, refusing one over `limit` bytes
    (413, whether or not it announced its length) or one that stalls for `timeout_s` seconds (408); adds the
    security headers to every answer."""

    def __init__(self, app, limit: int, timeout_s: float):
        self.app, self.limit, self.timeout_s = app, limit, timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        head = scope["method"] == "HEAD"  # answered as GET without the body (uvicorn sees HEAD still)
        if head:
            scope = {**scope, "method": "GET"}
        private = scope["path"] == "/api/me" or any(k == b"authorization" for k, _ in scope["headers"])

        async def send_secured(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers[key] = value
                if private:  # an answer for one user: no shared or browser cache keeps it
                    headers["Cache-Control"] = "no-store"
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and not length.isdigit():
            return await json_error(400, "Content-Length must be a number of bytes")(scope, receive, send_secured)
        if length is not None and int(length) > self.limit:
            return await self._too_large()(scope, receive, send_secured)
        chunks, seen, more = [], 0, True
        while more:
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except asyncio.TimeoutError:
                return await json_error(408, f"the request body stalled for {self.timeout_s:g} s; send it whole "
                                             "and promptly")(scope, receive, send_secured)
            if message["type"] == "http.disconnect":
                return
            seen += len(message.get("body", b""))
            more = message.get("more_body", False)
            if seen > self.limit:
                await self._drain(receive, seen, more)
                return await self._too_large()(scope, receive, send_secured)
            chunks.append(message.get("body", b""))
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send_secured)

    async def _drain(self, receive, seen: int, more: bool) -> None:
        while more and seen <= DRAIN_FACTOR * self.limit:
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except asyncio.TimeoutError:
                return
            if message["type"] == "http.disconnect":
                return
            seen += len(message.get("body", b""))
            more = message.get("more_body", False)

    def _too_large(self) -> JSONResponse:
        return json_error(413, f"request body is larger than the server's limit of {self.limit // 1024} KiB")


# query parameters that may hold a secret, and anything shaped like one of our tokens, wherever it appears
SECRET_PARAM = re.compile(r"([?&;][^=&;#]*(?:token|key|secret|passw|auth)[^=&;#]*=)[^&;#]*", re.IGNORECASE)
TOKEN_SHAPE = re.compile(re.escape(db.TOKEN_PREFIX) + r"[A-Za-z0-9_\-%]+")


def redact(path: str) -> str:
    return TOKEN_SHAPE.sub(db.TOKEN_PREFIX + "REDACTED", SECRET_PARAM.sub(r"\1REDACTED", path))


class RedactTokens(logging.Filter):
    """On uvicorn's access log (args: client, method, path with query, HTTP version, status): a token sent
    in a URL is refused (401), and must not be written to the log in clear either."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
            record.args = (*record.args[:2], redact(record.args[2]), *record.args[3:])
        return True


def install(app: FastAPI, max_upload_bytes: int, body_timeout_s: float) -> None:
    """The guard, the JSON error handlers of `app` and the access log's redaction."""
    app.add_middleware(RequestGuard, limit=max_upload_bytes, timeout_s=body_timeout_s)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access.filters):
        access.addFilter(RedactTokens())

    @app.exception_handler(db.DatabaseUnavailable)
    async def database_gone(request: Request, err: db.DatabaseUnavailable):
        log.error("database unavailable on %s %s: %s", request.method, request.url.path, err)
        return json_error(503, f"{err}; retry later", {"Retry-After": "30"})

    async def database_error(request: Request, err: Exception):
        log.error("database error on %s %s: %s", request.method, request.url.path, err)
        return json_error(503, f"the database is unavailable: {db.unavailable_reason(err)}; nothing was stored. "
                               "Retry later (the same Idempotency-Key stores nothing twice)", {"Retry-After": "30"})

    for error in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(error, database_error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, err: RequestValidationError):
        return json_error(422, "; ".join(describe(e) for e in err.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        detail = err.detail
        if err.status_code == 404 and detail == "Not Found":  # no route matched
            detail = f"nothing at {request.url.path}; / lists the boards and /openapi.json describes the API"
        return json_error(err.status_code, detail, getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception):  # Starlette logs the traceback after this
        log.error("internal error on %s %s: %s: %s", request.method, request.url.path, type(err).__name__, err)
        return json_error(500, "internal server error (logged on the server); a retry with the same "
                               "Idempotency-Key stores nothing twice")
