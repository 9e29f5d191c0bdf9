"""Running a :class:`Service` under uvicorn: binding, announcing, draining on SIGTERM.

Drain (what Kubernetes expects between SIGTERM and SIGKILL): readiness turns
503 and new inference requests get 503 + ``Retry-After`` so the load balancer
moves on; requests already in flight finish; then uvicorn closes the
connections and the lifespan shutdown commits every queued usage event and
releases the database. ``drain_seconds`` bounds the wait for in-flight work.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import uvicorn

from shoestring.errors import ShoestringError
from shoestring.serve.app import serving_app
from shoestring.serve.config import ServeConfig
from shoestring.serve.http import ServingProtocol
from shoestring.serve.licenses import check_models, pinned_key, verify_license
from shoestring.serve.service import Service


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with a drain phase on the first SIGTERM."""

    def __init__(self, config: uvicorn.Config, service: Service, drain_seconds: float,
                 on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self.service, self.drain_seconds, self.on_ready = service, drain_seconds, on_ready
        self._drain_started: float | None = None

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if not self.should_exit and self.started:
            self.on_ready()

    def handle_exit(self, sig: int, frame) -> None:
        if sig == signal.SIGTERM and self._drain_started is None:
            self._drain_started = time.monotonic()
            self.service.begin_drain()
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_started is not None and not self.should_exit:
            waited = time.monotonic() - self._drain_started
            if self.service.inflight == 0 or waited >= self.drain_seconds:
                self.should_exit = True
        return await super().on_tick(counter)


def model_names(config: ServeConfig) -> list[str]:
    return [m.name or Path(m.run_dir).resolve().name for m in config.models]


def check_license(config: ServeConfig, today: date) -> None:
    """Refuse to start unless a valid, unexpired license covers every model, when a license
    is given or a run folder has the vendor's key pinned (then only that key signs)."""
    pinned = pinned_key([m.run_dir for m in config.models], config.public_key)
    if pinned is not None and config.license is None:
        raise ShoestringError(f"{pinned.parent} is licensed software (vendor key pinned in "
                              f"{pinned}): pass --license FILE",
                              hint="use the license file the vendor issued for these models")
    if config.license is None:
        return
    key = pinned or config.public_key
    if key is None:
        raise ShoestringError("--license needs the vendor's public key",
                              hint="pass --public-key FILE, or pin it into the run folder "
                              "with 'shoestring license pin'")
    lic = verify_license(config.license, key, today)
    check_models(lic, model_names(config), config.license)


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port`` (port 0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns on TCP_NODELAY only for sockets that say they are
    # TCP (ServingProtocol sets it on every connection anyway).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ShoestringError(f"cannot listen on {host}:{port}: {exc.strerror}",
                              hint="pick another --port (0 picks a free one) or stop the "
                              "process using it") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def uvicorn_config(app, config: ServeConfig, log_level: str = "warning") -> uvicorn.Config:
    """uvicorn settings shared by ``shoestring serve`` and the in-process demo."""
    return uvicorn.Config(app, log_level=log_level, lifespan="on", access_log=config.access_log,
                          loop=config.event_loop, http=ServingProtocol,
                          timeout_keep_alive=config.keep_alive_s,
                          timeout_graceful_shutdown=max(1, int(config.drain_seconds)))


def run_server(config: ServeConfig, *, announce: Callable[[str], None] = lambda _u: None,
               today: Callable[[], date] = date.today, log_level: str = "warning") -> None:
    """Serve until SIGTERM/SIGINT. ``announce(url)`` is called once the server is ready."""
    check_license(config, today())
    service = Service(config)
    sock = bind(config.host, config.port)
    url = url_of(sock)
    uv_config = uvicorn_config(serving_app(service), config, log_level)
    server = DrainingServer(uv_config, service, config.drain_seconds, lambda: announce(url))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        logging.getLogger("uvicorn.error").debug("server stopped")
