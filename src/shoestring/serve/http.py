"""The HTTP/1.1 connection layer: uvicorn's httptools protocol with the server's own rules.

* **TCP_NODELAY** on every accepted connection. Without it, Nagle's algorithm
  holds a small response until the client's delayed ACK of the previous one
  arrives, so every request on a keep-alive connection waits ~40 ms (RFC 896;
  Linux delays ACKs by up to 40 ms). asyncio sets the option itself only for
  sockets created with ``IPPROTO_TCP``; uvloop always does. Setting it here
  makes the server independent of the loop and of how the socket was made.
* **Timeouts and a connection limit** against slow clients ("slowloris"): a
  request's headers must arrive within ``header_timeout_s`` of its first byte
  (a new connection's first request likewise), its body within
  ``body_timeout_s`` of its headers; otherwise the client gets 408 and the
  connection is closed. Idle keep-alive connections close after uvicorn's
  keep-alive timeout. Beyond ``max_connections`` open connections a new one is
  answered 503 and closed at once; headers beyond ``max_header_bytes`` get 431.
* **Every error is JSON**, the parser's own 400s included.
* **The infer routes skip ASGI** (:class:`_FastCycle`): the key, model and plan
  are checked when the headers are complete, before any of the body is
  buffered (a refused request's body is discarded as it arrives), and the
  answer is written straight to the transport. The ASGI path
  (:class:`~shoestring.serve.app.InferFastPath`) serves the same routes when a
  client pipelines requests, and serves every other route.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass
from http import HTTPStatus

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shoestring.serve.answers import Reply
from shoestring.serve.protocol import ProtocolError, error_body

INFER_PATH = re.compile(rb"^/v2/models/([A-Za-z0-9._-]+)(?:/versions/([A-Za-z0-9._-]+))?/infer$")


@dataclass(frozen=True)
class HttpRules:
    """Connection limits (see the module docstring); ``shoestring serve`` sets them."""

    header_timeout_s: float = 5.0
    body_timeout_s: float = 10.0
    max_connections: int = 1024
    max_header_bytes: int = 65536


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # the peer may already have gone; nothing to speed up then
            pass


def response_bytes(reply: Reply, extra: list[tuple[bytes, bytes]], close: bool) -> bytes:
    """A complete HTTP/1.1 response with a JSON body."""
    try:
        phrase = HTTPStatus(reply.status).phrase
    except ValueError:
        phrase = ""
    head = [f"HTTP/1.1 {reply.status} {phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(reply.body)}\r\n".encode()]
    head += [k + b": " + v + b"\r\n" for k, v in extra]
    head += [f"{k.lower()}: {v}\r\n".encode("latin-1") for k, v in reply.headers.items()]
    if close:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    return b"".join(head) + reply.body


class _NoEvent:
    def set(self) -> None:
        pass


class _FastCycle:
    """One infer request handled without ASGI. Carries the attributes uvicorn's protocol
    reads from its own request cycle (``response_complete``, ``disconnected``, ``keep_alive``,
    ``message_event``)."""

    message_event = _NoEvent()

    def __init__(self, name: str, version: str | None, headers: dict[str, str], keep_alive: bool,
                 started: float) -> None:
        self.name, self.version, self.headers = name, version, headers
        self.keep_alive, self.started = keep_alive, started
        self.adm = None              # the Service's Admission once the key etc. are checked
        self.admitting = False       # a key lookup is under way
        self.refused = False         # answered before the body: discard the body
        self.body = bytearray()
        self.complete = False        # the whole body has arrived
        self.running = False
        self.response_complete = False
        self.disconnected = False


class ServingProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection (see the module docstring)."""

    def __init__(self, config, server_state, app_state, _loop=None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        front = config.app
        self.rules: HttpRules = getattr(front, "http_rules", None) or HttpRules()
        self.service = getattr(front, "service", None)  # the infer fast path, when served
        self._timer: asyncio.TimerHandle | None = None
        self._phase = "idle"  # then "headers", "body", and "idle" again once it has arrived
        self._header_bytes = -1  # counting while a request's headers arrive (bytes received)
        self._header_seen = 0    # and parsed (URL, names and values)

    # -- connection -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)
        if len(self.connections) > self.rules.max_connections:
            self._refuse_now(503, f"the server has {self.rules.max_connections} connections "
                             "open, its limit; retry shortly", {"Retry-After": "1"})
            return
        self._arm(self.rules.header_timeout_s)  # until the first request's headers

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        cycle = self.cycle
        super().connection_lost(exc)
        if isinstance(cycle, _FastCycle):
            cycle.disconnected = True
            if cycle.adm is not None and not cycle.running and not cycle.refused:
                self.service.abandon(cycle.adm)
                cycle.adm = None

    def data_received(self, data: bytes) -> None:
        if self._header_bytes >= 0:
            self._header_bytes += len(data)
            if self._header_bytes > self.rules.max_header_bytes:
                self._refuse_now(431, f"request headers exceed {self.rules.max_header_bytes} "
                                 "bytes")
                return
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        """The parser's own refusals (malformed requests), as JSON like every other error."""
        self._refuse_now(400, f"malformed HTTP request: {msg.rstrip('.')}")

    def _refuse_now(self, status: int, message: str, headers: dict | None = None) -> None:
        if not self.transport.is_closing():
            self.transport.write(response_bytes(Reply(status, error_body(message), headers or {}),
                                                self.server_state.default_headers, close=True))
            self.transport.close()

    # -- timeouts ---------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        cycle = self.cycle
        answering = cycle is not None and not cycle.response_complete and (
            getattr(cycle, "response_started", False) or getattr(cycle, "refused", False))
        if self._phase == "idle" or answering or (
                self._phase == "headers" and cycle is not None and not cycle.response_complete):
            self.transport.close()  # nothing to answer, or an answer is already under way
            return
        self._refuse_now(408, "the request was not received in time (headers within "
                         f"{self.rules.header_timeout_s:g} s, body within "
                         f"{self.rules.body_timeout_s:g} s)")

    # -- parser callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase, self._header_bytes, self._header_seen = "headers", 0, 0
        self._arm(self.rules.header_timeout_s)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count_header(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._count_header(len(name) + len(value) + 4)

    def _count_header(self, n: int) -> None:
        self._header_seen += n
        if self._header_seen > self.rules.max_header_bytes:
            self._refuse_now(431, f"request headers exceed {self.rules.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        if self.transport.is_closing():
            return
        self._phase, self._header_bytes = "body", -1
        self._arm(self.rules.body_timeout_s)
        match = self._fast_route()
        if match is None:
            super().on_headers_complete()
            return
        service = self.service
        # Names arrive lowercased (uvicorn's on_header); a dict makes each lookup O(1).
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in self.headers}
        version = self.parser.get_http_version()
        cycle = _FastCycle(match[1].decode(), match[2].decode() if match[2] else None, headers,
                           version != "1.0" and self.parser.should_keep_alive(),
                           service.clock())
        self.cycle = cycle  # type: ignore[assignment]
        try:
            adm = service.admit(cycle.name, cycle.version, headers, cycle.started)
        except ProtocolError as exc:
            self._refuse(cycle, exc)
            return
        if adm is None:  # the key is not cached: look it up before reading the body
            cycle.admitting = True
            self.flow.pause_reading()
            task = self.loop.create_task(service.admit_async(cycle.name, cycle.version, headers,
                                                             cycle.started))
            task.add_done_callback(lambda t: self._admitted(cycle, t))
            return
        self._accept(cycle, adm)

    def _fast_route(self) -> re.Match | None:
        if self.service is None or self.parser.get_method() != b"POST":
            return None
        if self.cycle is not None and not self.cycle.response_complete:
            return None  # pipelined behind an unanswered request: ASGI keeps the order
        if self.parser.should_upgrade():
            return None
        return INFER_PATH.match(httptools.parse_url(self.url).path)

    def _admitted(self, cycle: _FastCycle, task: asyncio.Task) -> None:
        cycle.admitting = False
        if cycle.disconnected:
            if not task.cancelled() and task.exception() is None:
                self.service.abandon(task.result())
            return
        self.flow.resume_reading()
        exc = task.exception()
        if exc is None:
            self._accept(cycle, task.result())
        elif isinstance(exc, ProtocolError):
            self._refuse(cycle, exc)
        else:
            self._refuse(cycle, ProtocolError(503, "the key could not be checked; retry",
                                              {"Retry-After": "1"}))

    def _accept(self, cycle: _FastCycle, adm) -> None:
        limit = self.service.config.max_body_bytes
        declared = cycle.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            self.service.abandon(adm)
            self._refuse(cycle, ProtocolError(413, f"request body of {declared} bytes exceeds "
                                              f"the limit of {limit}"))
            return
        cycle.adm = adm
        if self.expect_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if cycle.complete:
            self._run(cycle)

    def _refuse(self, cycle: _FastCycle, exc: ProtocolError) -> None:
        """Answer now; the body, if any, is discarded as it arrives (or the connection
        closed when it would be large)."""
        cycle.refused = True
        cycle.body = bytearray()
        reply = self.service.refuse(cycle.name, exc, cycle.started)
        if exc.status in (413, 503):
            cycle.keep_alive = False
        self._respond(cycle, reply)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if self.transport.is_closing():  # refused or timed out: the rest is not wanted
            return
        if not isinstance(cycle, _FastCycle):
            super().on_body(body)
            return
        if cycle.refused:
            return
        cycle.body += body
        limit = self.service.config.max_body_bytes
        if len(cycle.body) > limit:
            if cycle.adm is not None:
                self.service.abandon(cycle.adm)
                cycle.adm = None
            self._refuse(cycle, ProtocolError(413, f"request body exceeds the limit of {limit} "
                                              "bytes"))

    def on_message_complete(self) -> None:
        self._phase = "idle"
        self._disarm()
        cycle = self.cycle
        if self.transport.is_closing():
            return
        if not isinstance(cycle, _FastCycle):
            super().on_message_complete()
            return
        cycle.complete = True
        if cycle.adm is not None and not cycle.refused:
            self._run(cycle)

    # -- answering --------------------------------------------------------------------------

    def _run(self, cycle: _FastCycle) -> None:
        cycle.running = True
        body, cycle.body = bytes(cycle.body), bytearray()
        task = self.loop.create_task(self.service.run(cycle.adm, cycle.headers, body))
        self.tasks.add(task)  # uvicorn's shutdown waits for these

        def done(t: asyncio.Task) -> None:
            self.tasks.discard(t)
            if not t.cancelled():
                self._respond(cycle, t.result())

        task.add_done_callback(done)

    def _respond(self, cycle: _FastCycle, reply: Reply) -> None:
        if cycle.disconnected or cycle.response_complete or self.transport.is_closing():
            return
        close = not cycle.keep_alive
        self.transport.write(response_bytes(reply, self.server_state.default_headers, close))
        cycle.response_complete = True
        if close:
            self.transport.close()
        self.on_response_complete()
