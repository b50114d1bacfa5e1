"""Connection limits under the ASGI app (uvicorn's h11 protocol, subclassed): a connection must send its
request's headers within `header_timeout_s` of opening or of its previous answer, whether it sends nothing
or a byte at a time, else it is closed; and no more than `connection_cap()` connections are held at once
(below the process's open-file limit), the one idle longest making room for a new one. So a crowd of idle
sockets cannot use up the server's file descriptors and keep /healthz or a submission from being answered.
Slow *bodies* are the request guard's (guard.py: 408)."""

from __future__ import annotations

import logging
import resource
import time

from uvicorn.protocols.http.h11_impl import H11Protocol

LIMITS = {"header_timeout_s": 10.0, "max_connections": 1000}  # this process's; create_app sets them
log = logging.getLogger("leaderboards")


def configure(header_timeout_s: float, max_connections: int) -> None:
    LIMITS.update(header_timeout_s=header_timeout_s, max_connections=max_connections)


def _open_file_limit() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def connection_cap() -> int:
    """`max_connections`, or half the open-file limit where that is lower: the other half stays for the
    database, the scoring worker's pipes and the connections being accepted (accept_backlog)."""
    soft = _open_file_limit()
    return LIMITS["max_connections"] if soft is None else max(8, min(LIMITS["max_connections"], soft // 2))


def accept_backlog() -> int:
    """How many connections the event loop accepts in one go before the cap can act (uvicorn's backlog): an
    eighth of the open-file limit, so that two batches in flight stay within it."""
    soft = _open_file_limit()
    return 2048 if soft is None else max(16, min(2048, soft // 8))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for request headers and a cap on open connections."""

    waiting_since: float | None = None  # when this connection began waiting for a request's headers
    header_timer = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._wait_for_headers()
        self._make_room()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._wait_for_headers()

    def connection_lost(self, exc) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
        super().connection_lost(exc)

    def awaiting_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _wait_for_headers(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
        self.waiting_since = time.monotonic()
        self.header_timer = self.loop.call_later(LIMITS["header_timeout_s"], self._headers_overdue)

    def _headers_overdue(self) -> None:
        self.header_timer = None
        if self.awaiting_headers() and not self.transport.is_closing():
            self.transport.close()  # no answer: the client sent no request to answer

    def _make_room(self) -> None:
        cap = connection_cap()
        if len(self.connections) <= cap:
            return
        idle = [c for c in self.connections if c is not self and isinstance(c, GuardedH11Protocol)
                and c.awaiting_headers() and not c.transport.is_closing()]
        victim = min(idle, key=lambda c: c.waiting_since or 0.0) if idle else self
        if not getattr(self.server_state, "warned_cap", False):
            self.server_state.warned_cap = True
            log.warning("%d connections open, the cap is %d: closing the ones idle longest (logged once)",
                        len(self.connections), cap)
        victim.transport.close()
