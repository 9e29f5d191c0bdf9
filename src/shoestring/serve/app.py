"""The HTTP face of a :class:`~shoestring.serve.service.Service`: Open Inference Protocol v2.

Routes (KServe's REST form of the protocol, plus ``/metrics``)::

    GET  /v2                                   server metadata
    GET  /v2/health/live | /v2/health/ready    liveness, readiness (503 while draining)
    GET  /v2/models/{name}[/versions/{v}]      model metadata
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer
    GET  /metrics                              Prometheus text format

plus OpenAI's ``POST /v1/completions`` and ``GET /v1/models`` for language models
(:mod:`shoestring.serve.openai_app`, errors in OpenAI's shape there).

Every error, including the framework's own 404/405/422, is ``{"error": "…"}``.

:func:`serving_app` is what runs: the FastAPI app behind a small ASGI layer that
answers the two infer routes itself. FastAPI's routing, middleware and
dependency solving cost about 70 µs a request on the development machine,
a quarter of a whole request to the seed MLP; the FastAPI routes still
document the endpoints (OpenAPI) and take the same code path.
"""

from __future__ import annotations

import logging
import re
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from shoestring.serve.http import HttpRules
from shoestring.serve.openai_app import OpenAIRoutes
from shoestring.serve.protocol import DATATYPES, ProtocolError, error_body
from shoestring.serve.service import Reply, Service
from shoestring.version import __version__

JSON = "application/json"
_log = logging.getLogger("shoestring.serve")

_TENSOR = {"type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
    "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
    "datatype": {"type": "string", "enum": sorted(DATATYPES)}, "data": {"type": "array"},
    "parameters": {"type": "object"}}}
_INFER_REQUEST = {"type": "object", "required": ["inputs"], "properties": {
    "id": {"type": "string"}, "parameters": {"type": "object"},
    "inputs": {"type": "array", "items": _TENSOR},
    "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                                           "properties": {"name": {"type": "string"}}}}}}
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}
_INFER_DOC = {
    "requestBody": {"required": True, "content": {JSON: {"schema": _INFER_REQUEST}}},
    "parameters": [
        {"name": "Authorization", "in": "header", "required": False,
         "schema": {"type": "string"}, "description": "Bearer API key"},
        {"name": "Idempotency-Key", "in": "header", "required": False,
         "schema": {"type": "string"}, "description": "retries with the same key are charged "
         "once and return the first response"}],
    "responses": {str(code): {"description": why, "content": {JSON: {"schema": _ERROR}}}
                  for code, why in [(400, "bad request"), (401, "missing or unknown key"),
                                    (403, "model not in plan"), (404, "unknown model"),
                                    (413, "request too large"), (422, "idempotency conflict"),
                                    (429, "rate, quota or budget exceeded"),
                                    (503, "shedding load or draining")]},
}


def _reply(r: Reply) -> Response:
    return Response(r.body, status_code=r.status, headers=r.headers, media_type=JSON)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(message), status_code=status, headers=headers, media_type=JSON)


def _too_large(declared: str | None, limit: int) -> ProtocolError | None:
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return ProtocolError(413, f"request body of {declared} bytes exceeds the limit of {limit}")
    return None


async def read_body(receive, limit: int) -> bytes:
    """An ASGI request's body, refusing more than ``limit`` bytes without reading it all."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ProtocolError(400, "the client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ProtocolError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def infer_asgi(service: Service, name: str, version: str | None, headers, receive
                     ) -> Reply:
    """One infer request through ASGI: admitted (key checked) before its body is read."""
    t0 = service.clock()
    try:
        adm = await service.admit_async(name, version, headers, t0)
    except ProtocolError as exc:
        return service.refuse(name, exc, t0)
    try:
        err = _too_large(headers.get("content-length"), service.config.max_body_bytes)
        if err is not None:
            raise err
        body = await read_body(receive, service.config.max_body_bytes)
    except ProtocolError as exc:
        service.abandon(adm)
        return service.refuse(name, exc, t0)
    return await service.run(adm, headers, body)


def build_app(service: Service) -> FastAPI:
    """A FastAPI app serving ``service``; its lifespan starts and stops the service."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="Shoestring inference server", version=__version__,
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, exc: StarletteHTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_req: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def _internal_error(_req: Request, exc: Exception) -> Response:
        _log.error("request failed", exc_info=exc)
        return _error(500, "internal server error")

    @app.exception_handler(ProtocolError)
    async def _protocol_error(_req: Request, exc: ProtocolError) -> Response:
        return _error(exc.status, exc.message, exc.headers)

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "shoestring", "version": __version__, "extensions": []}

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        ok = service.ready and not service.draining
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def metadata(name: str, version: str | None) -> dict[str, Any]:
        return service.model_metadata(name, version)

    async def model_ready(name: str, version: str | None) -> Response:
        service.model_metadata(name, version)  # 404 for unknown models
        ok = service.ready and not service.draining
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    async def infer(name: str, version: str | None, request: Request) -> Response:
        return _reply(await infer_asgi(service, name, version, request.headers,
                                       request.receive))

    @app.get("/v2/models/{model_name}")
    async def model_metadata(model_name: str) -> dict[str, Any]:
        return await metadata(model_name, None)

    @app.get("/v2/models/{model_name}/versions/{model_version}")
    async def model_version_metadata(model_name: str, model_version: str) -> dict[str, Any]:
        return await metadata(model_name, model_version)

    @app.get("/v2/models/{model_name}/ready")
    async def model_is_ready(model_name: str) -> Response:
        return await model_ready(model_name, None)

    @app.get("/v2/models/{model_name}/versions/{model_version}/ready")
    async def model_version_is_ready(model_name: str, model_version: str) -> Response:
        return await model_ready(model_name, model_version)

    @app.post("/v2/models/{model_name}/infer", openapi_extra=_INFER_DOC)
    async def model_infer(model_name: str, request: Request) -> Response:
        return await infer(model_name, None, request)

    @app.post("/v2/models/{model_name}/versions/{model_version}/infer", openapi_extra=_INFER_DOC)
    async def model_version_infer(model_name: str, model_version: str,
                                  request: Request) -> Response:
        return await infer(model_name, model_version, request)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        for (name, _v), b in service.batchers.items():
            service.metrics.queue_depth.labels(name).set(b.queued_rows)
        body, ctype = service.metrics.render()
        return Response(body, media_type=ctype)

    return app


_INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


class InferFastPath:
    """ASGI: POST …/infer straight to the service; everything else to the FastAPI app."""

    def __init__(self, app: FastAPI, service: Service) -> None:
        self.app, self.service = app, service
        c = service.config
        # Read by the HTTP layer (serve/http.py), which also serves the infer routes itself.
        self.http_rules = HttpRules(c.header_timeout_s, c.body_timeout_s, c.max_connections)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _INFER_PATH.match(scope["path"])
            if match is not None:
                await self._infer(match[1], match[2], scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _infer(self, name: str, version: str | None, scope, receive, send) -> None:
        try:
            reply = await infer_asgi(self.service, name, version, Headers(scope=scope), receive)
        except Exception:  # a bug: answer 500 as JSON and log it, like FastAPI would
            _log.exception("inference request failed")
            reply = Reply(500, error_body("internal server error"))
        await send({"type": "http.response.start", "status": reply.status, "headers": [
            (b"content-type", JSON.encode()), (b"content-length", str(len(reply.body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in reply.headers.items())]})
        await send({"type": "http.response.body", "body": reply.body})


def serving_app(service: Service) -> OpenAIRoutes:
    """The ASGI app ``shoestring serve`` runs (see the module docstring), with the
    OpenAI-compatible ``/v1`` routes in front (:mod:`shoestring.serve.openai_app`)."""
    return OpenAIRoutes(InferFastPath(build_app(service), service), service.completions,
                        service.config.max_body_bytes)
