"""The HTTP/1.1 connection layer: uvicorn's httptools protocol with the server's own rules.

Every accepted connection gets ``TCP_NODELAY``. Without it, Nagle's algorithm
holds a small response until the client's delayed ACK of the previous one
arrives, so every request on a keep-alive connection waits ~40 ms (RFC 896;
Linux delays ACKs by up to 40 ms). asyncio sets the option itself only for
sockets created with ``IPPROTO_TCP``; uvloop sets it always. Setting it here
makes the server independent of the event loop and of how the listening
socket was made.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # the peer may already have gone; nothing to speed up then
            pass


class ServingProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection (see the module docstring)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)
