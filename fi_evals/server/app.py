"""The HTTP layer of the reference server: thin FastAPI routes over :class:`EvalService`.

It knows nothing of SQLite or threads: storage and background work are behind the
``JobStore``/``JobExecutor`` interfaces that ``application.py`` wires in. The API routes are plain
``def`` so that they run in the thread pool: a slow evaluation (``--sim-latency-ms``) never
blocks the event loop. ``/healthcheck/`` and ``/metrics`` never wait behind them: the health
answer is ``async`` (no thread at all) and ``/metrics`` renders on threads of its own
(``_METRICS_THREADS``), not on the pool's 40 shared by the evaluations. The request body is
read by the gateway, so ``raw_body`` costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Depends, FastAPI, Query, Request
from fastapi.openapi.utils import get_openapi
from starlette.responses import Response

from fi_evals import _constants as C
from fi_evals._version import __version__
from fi_evals.protocol import (
    BulkStatusEntry,
    BulkStatusRequest,
    Capabilities,
    ErrorEnvelope,
    EvalResultPayload,
    NewEvalRequest,
    SuccessEnvelope,
    SyncEvalBlock,
    TemplateInfo,
)
from fi_evals.server.errors import ApiError, install_exception_handlers
from fi_evals.server.metrics import CONTENT_TYPE_LATEST, ServerMetrics
from fi_evals.server.middleware import KEY_SCOPE, DirectHandler
from fi_evals.server.service import EvalService, ServiceAnswer

__all__ = ["build_fastapi", "new_eval_handler"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope} for status in (400, 401, 413, 429, 503)}
_HEALTH_BODY = b'{"status":true,"result":"ok"}'
_METRICS_THREADS = 2  # scrapes rendered at once (a store's queue depth may be a network call)


async def raw_body(request: Request) -> bytes:
    return await request.body()


def _respond(answer: ServiceAnswer) -> Response:
    return Response(answer.body, status_code=answer.status, headers=dict(answer.headers),
                    media_type="application/json")


def _json_body(model: type) -> dict[str, Any]:
    """OpenAPI ``requestBody`` pointing at a protocol model (added in ``_openapi``)."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def build_fastapi(service: EvalService, metrics: ServerMetrics, compat: bool) -> FastAPI:
    """The routes of PROTOCOL.md A and B (B's own routes are left out in ``compat`` mode)."""
    app = FastAPI(title="fi-evals reference server", version=__version__,
                  description="PROTOCOL.md sections A and B. Authenticate with the X-Api-Key "
                              "and X-Secret-Key headers.")
    install_exception_handlers(app)

    @app.post(C.PATH_NEW_EVAL, summary="Run evaluations (sync) or queue them (async)",
              openapi_extra=_json_body(NewEvalRequest),
              responses={200: {"model": SuccessEnvelope[list[SyncEvalBlock]]}, 422: {
                  "model": ErrorEnvelope, "description": "Idempotency-Key reused"}, **_ERRORS})
    def new_eval(request: Request, body: bytes = Depends(raw_body)) -> Response:
        # The gateway answers this route itself (new_eval_handler); this one documents it and
        # serves the app when it runs without the gateway.
        key = None if compat else request.headers.get(C.HEADER_IDEMPOTENCY_KEY)
        if key is not None:
            _check_idempotency_key(key)
        return _respond(service.submit(body, request.scope.get(KEY_SCOPE, ""), key,
                                       results=_prefers_results(request.headers.get(
                                           C.HEADER_PREFER))))

    @app.get(C.PATH_NEW_EVAL, summary="Read one evaluation",
             responses={200: {"model": SuccessEnvelope[EvalResultPayload]},
                        404: {"model": ErrorEnvelope}, **_ERRORS})
    def get_eval(eval_id: list[str] = Query(default=[])) -> Response:  # noqa: B008 - FastAPI's idiom
        return _respond(service.get_one(eval_id))

    if not compat:
        @app.post(C.PATH_BULK_STATUS, summary="Read many evaluations (section B)",
                  openapi_extra=_json_body(BulkStatusRequest),
                  responses={200: {"model": SuccessEnvelope[list[BulkStatusEntry]]}, **_ERRORS})
        def bulk_status(body: bytes = Depends(raw_body)) -> Response:
            return _respond(service.bulk_status(body))

        @app.get(C.PATH_CAPABILITIES, summary="Section B extensions of this server",
                 responses={200: {"model": SuccessEnvelope[Capabilities]}, **_ERRORS})
        def capabilities() -> Response:
            return _respond(service.capabilities())

    @app.get(C.PATH_GET_EVALS, summary="List templates",
             responses={200: {"model": SuccessEnvelope[list[TemplateInfo]]}, **_ERRORS})
    def get_evals() -> Response:
        return _respond(service.templates())

    @app.get(C.PATH_HEALTH, summary="Health (no authentication)")
    async def health() -> Response:
        return Response(_HEALTH_BODY, media_type="application/json")

    limiter: list[CapacityLimiter] = []  # made on first use, inside the server's event loop

    @app.get(C.PATH_METRICS, summary="Prometheus metrics (no authentication)")
    async def prometheus() -> Response:
        if not limiter:
            limiter.append(CapacityLimiter(_METRICS_THREADS))
        text = await anyio.to_thread.run_sync(metrics.render, limiter=limiter[0])
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _prefers_results(prefer: str | None) -> bool:
    """Whether a ``Prefer`` header (RFC 7240: comma-separated preferences, each maybe with
    ``;`` parameters) asks for ``return=representation``."""
    if not prefer:
        return False
    return any(p.split(";", 1)[0].strip().replace(" ", "").lower() == C.PREFER_RESULTS
               for p in prefer.split(","))


def new_eval_handler(service: EvalService, compat: bool) -> DirectHandler:
    """``POST new-eval/`` for the gateway to answer without FastAPI (issue 20): the same
    checks and the same :meth:`EvalService.submit` as the route above."""
    header = C.HEADER_IDEMPOTENCY_KEY.lower().encode("latin-1")
    prefer = C.HEADER_PREFER.lower().encode("latin-1")

    def handle(body: bytes, headers: Mapping[bytes, bytes], scope: str) -> ServiceAnswer:
        raw = None if compat else headers.get(header)
        key = None if raw is None else raw.decode("latin-1")
        if key is not None:
            _check_idempotency_key(key)
        wanted = headers.get(prefer)
        return service.submit(body, scope, key, results=_prefers_results(
            None if wanted is None else wanted.decode("latin-1")))

    return handle


def bulk_status_handler(service: EvalService) -> DirectHandler:
    """``POST new-eval/status/`` for the gateway to answer without FastAPI (issue 20: an async
    batch polls 1,000 ids a request): the same :meth:`EvalService.bulk_status` as the route
    above, which stays for the OpenAPI schema."""

    def handle(body: bytes, headers: Mapping[bytes, bytes], scope: str) -> ServiceAnswer:
        return service.bulk_status(body)

    return handle


def _check_idempotency_key(key: str) -> None:
    if not key or len(key) > C.MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
        raise ApiError.invalid(f"{C.HEADER_IDEMPOTENCY_KEY} must be 1 to "
                               f"{C.MAX_IDEMPOTENCY_KEY_LENGTH} printable characters",
                               C.HEADER_IDEMPOTENCY_KEY)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (NewEvalRequest, BulkStatusRequest):
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs", {}))
        schemas[model.__name__] = body
    components["securitySchemes"] = {
        "ApiKey": {"type": "apiKey", "in": "header", "name": C.HEADER_API_KEY},
        "SecretKey": {"type": "apiKey", "in": "header", "name": C.HEADER_SECRET_KEY},
    }
    for path, ops in schema.get("paths", {}).items():
        if path.startswith("/sdk/api/"):
            for op in ops.values():
                op["security"] = [{"ApiKey": [], "SecretKey": []}]
    app.openapi_schema = schema
    return schema
