"""What every request and every answer goes through: the body limit (413, announced or chunked), the body
read timeout (408), the security headers, and one JSON error format `{"detail": ...}` on every error path,
500s included."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

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

        async def send_secured(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers[key] = value
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


def install(app: FastAPI, max_upload_bytes: int, body_timeout_s: float) -> None:
    """The guard and the JSON error handlers of `app`."""
    app.add_middleware(RequestGuard, limit=max_upload_bytes, timeout_s=body_timeout_s)

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
