"""ASGI routes of the OpenAI-compatible API, in front of the ``/v2`` app.

::

    POST /v1/completions          a completion (JSON, or server-sent events with stream)
    GET  /v1/models               the language models this key may use
    GET  /v1/models/{model}       one of them

Everything else goes to the wrapped app unchanged. Errors under ``/v1`` are
OpenAI's ``{"error": {"message", "type", "param", "code"}}``. A streamed
answer's client is watched while the stream runs: when it disconnects, the
generation is cut at the next step (and billed for what it produced).
"""

from __future__ import annotations

import asyncio
import logging

from starlette.datastructures import Headers

from shoestring.serve.answers import Reply
from shoestring.serve.completions import JSON, Completions, EventStream
from shoestring.serve.openai_protocol import OpenAIError, error_body
from shoestring.serve.protocol import ProtocolError

_log = logging.getLogger("shoestring.serve")


class OpenAIRoutes:
    """ASGI: ``/v1/…`` to :class:`Completions`; everything else to ``app``."""

    def __init__(self, app, completions: Completions, max_body_bytes: int) -> None:
        self.app, self.completions, self.limit = app, completions, max_body_bytes
        # Read by the HTTP layer (serve/http.py): its connection rules and /v2 fast path.
        self.http_rules = getattr(app, "http_rules", None)
        self.service = getattr(app, "service", None)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path, method = scope["path"].rstrip("/"), scope["method"]
        try:
            if path == "/v1/completions":
                _allow(method, "POST")
                answer = await self.completions.complete(headers, lambda: self._body(headers,
                                                                                     receive))
            elif path == "/v1/models":
                _allow(method, "GET")
                answer = await self.completions.list_models(headers)
            elif path.startswith("/v1/models/") and path.count("/") == 3:
                _allow(method, "GET")
                answer = await self.completions.get_model(headers, path.rsplit("/", 1)[1])
            else:
                raise OpenAIError(404, f"no route {method} {scope['path']}; this server offers "
                                  "POST /v1/completions and GET /v1/models", code="not_found")
        except OpenAIError as exc:
            answer = Reply(exc.status, exc.body(), exc.headers)
        except Exception:  # a bug: answer 500 in OpenAI's shape and log it
            _log.exception("/v1 request failed")
            answer = Reply(500, error_body(500, "internal server error"))
        if isinstance(answer, EventStream):
            await self._stream(answer, receive, send)
        else:
            await send({"type": "http.response.start", "status": answer.status, "headers": [
                (b"content-type", JSON.encode()),
                (b"content-length", str(len(answer.body)).encode()),
                *((k.lower().encode(), v.encode()) for k, v in answer.headers.items())]})
            await send({"type": "http.response.body", "body": answer.body})

    async def _stream(self, stream: EventStream, receive, send) -> None:
        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            stream.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await send({"type": "http.response.start", "status": stream.status, "headers": [
                (k.encode(), v.encode()) for k, v in stream.headers.items()]})
            async for chunk in stream.chunks:
                # After a disconnect the server drops what is sent; the generation stops
                # at its next step and the stream ends by itself.
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()

    async def _body(self, headers: Headers, receive) -> bytes:
        """The body, refusing more than the limit without reading it all."""
        from shoestring.serve.app import read_body  # app.py imports this module

        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            raise ProtocolError(413, f"request body of {declared} bytes exceeds the limit of "
                                f"{self.limit}")
        return await read_body(receive, self.limit)


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise OpenAIError(405, f"method {method} is not allowed here; use {allowed}",
                          code="method_not_allowed", headers={"Allow": allowed})
