"""Connection limits of `myllm serve`: idle connections are closed, a request must arrive in time, and the number
of open connections is capped, so that a client opening sockets and sending nothing (or one byte at a time: a
slow-loris) cannot exhaust the server's file descriptors.

uvicorn alone closes a connection only once it has answered a request on it and then waited `timeout_keep_alive`;
a connection that never sends a request, or sends its head a byte at a time, stays open for ever (64 of 64 idle
connections were still open after 30 s). This protocol (uvicorn's h11 one, extended) adds:

* the keep-alive timer from the moment a connection opens, not only after a response (`--keep-alive-timeout`);
* a read timer (`--read-timeout`): the request head must be complete within it of the connection opening, or of
  the previous response ending, however slowly bytes trickle in (the body's own timer is in app.py: 408);
* a cap (`--max-connections`): a connection over it closes the longest-idle connection (one with no request in
  progress) to make room, or, when every other connection is busy with a request, is answered 503 and closed.
Each close is counted in `myllm_connections_closed_total{reason}`; `myllm_open_connections` is a gauge.
"""

from __future__ import annotations

import json
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .limits import ServerSettings
from .metrics import ServerMetrics
from .schemas import error_body


def _busy_response(cap: int, retry_after_s: int) -> bytes:
    body = json.dumps(error_body(f"the server holds its limit of {cap} open connections, each busy with a request "
                                 f"— fix: retry after {retry_after_s} s", "server_error",
                                 code="too_many_connections")).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"retry-after: {retry_after_s}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


def guarded_protocol(settings: ServerSettings, metrics: ServerMetrics) -> type:
    """The uvicorn HTTP protocol class (`uvicorn.Config(http=...)`) enforcing `settings`' connection limits."""
    busy = _busy_response(settings.max_connections, settings.retry_after_s)

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.idle_since = time.monotonic()
            self._read_timer = None
            metrics.set("myllm_open_connections", len(self.connections))
            open_now = sum(not c.transport.is_closing() for c in self.connections)
            if open_now > settings.max_connections and not self._evict_longest_idle():
                metrics.inc("myllm_rejected_total", reason="connections")
                transport.write(busy)
                self._close("over_limit")
                return
            # uvicorn arms the keep-alive timer only after a response; a connection that never sends is idle too
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                self.timeout_keep_alive_handler)
            self._arm_read_timer()

        def connection_lost(self, exc) -> None:
            super().connection_lost(exc)
            if self._read_timer is not None:
                self._read_timer.cancel()
            metrics.set("myllm_open_connections", len(self.connections))

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.idle_since = time.monotonic()
            if not self.transport.is_closing():
                self._arm_read_timer()

        def timeout_keep_alive_handler(self) -> None:
            if not self.transport.is_closing():
                self._close("idle")

        # --- helpers ---
        def waiting(self) -> bool:
            """No request in progress: idle, or its head still arriving."""
            return self.cycle is None or self.cycle.response_complete

        def _arm_read_timer(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
            self._read_timer = self.loop.call_later(settings.read_timeout_s, self._read_timed_out)

        def _read_timed_out(self) -> None:
            self._read_timer = None
            if self.waiting() and not self.transport.is_closing():
                self._close("read_timeout")

        def _evict_longest_idle(self) -> bool:
            idle = [c for c in self.connections if c is not self and isinstance(c, GuardedH11Protocol)
                    and c.waiting() and not c.transport.is_closing()]
            if not idle:
                return False
            min(idle, key=lambda c: c.idle_since)._close("over_limit")
            return True

        def _close(self, reason: str) -> None:
            metrics.inc("myllm_connections_closed_total", reason=reason)
            try:
                self.conn.send(h11.ConnectionClosed())
            except h11.LocalProtocolError:          # mid-request: h11 has no clean close to send
                pass
            self.transport.close()

    return GuardedH11Protocol
