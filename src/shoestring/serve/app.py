"""The HTTP face of a :class:`~shoestring.serve.service.Service`: Open Inference Protocol v2.

Routes (KServe's REST form of the protocol, plus ``/metrics``)::

    GET  /v2                                   server metadata
    GET  /v2/health/live | /v2/health/ready    liveness, readiness (503 while draining)
    GET  /v2/models/{name}[/versions/{v}]      model metadata
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer
    GET  /metrics                              Prometheus text format

Every error, including the framework's own 404/405/422, is ``{"error": "…"}``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

import shoestring
from shoestring.serve.protocol import DATATYPES, ProtocolError, error_body
from shoestring.serve.service import Reply, Service

JSON = "application/json"

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


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProtocolError(413, f"request body of {declared} bytes exceeds the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProtocolError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(service: Service) -> FastAPI:
    """A FastAPI app serving ``service``; its lifespan starts and stops the service."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="Shoestring inference server", version=shoestring.__version__,
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

    @app.exception_handler(ProtocolError)
    async def _protocol_error(_req: Request, exc: ProtocolError) -> Response:
        return _error(exc.status, exc.message, exc.headers)

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "shoestring", "version": shoestring.__version__, "extensions": []}

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
        try:
            body = await _read_body(request, service.config.max_body_bytes)
        except ProtocolError as exc:
            return _error(exc.status, exc.message, exc.headers)
        return _reply(await service.infer(name, version, request.headers, body))

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
