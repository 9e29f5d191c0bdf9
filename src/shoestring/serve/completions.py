"""OpenAI-compatible completions for the language models a server holds.

:meth:`Completions.complete` is a request's whole life, in order: draining?
(503) → key (401) → body (413) → request fields (400) → model (404; 400 if it
is not a language model) → plan (403) → prompt tokens and context (400) →
the server's metering interface, :meth:`Billing.reserve
<shoestring.serve.billing.Billing.reserve>` (Idempotency-Key replay; rate
limit, quota and budget held for ``prompt + max_tokens`` units: 429) → queue
(503 when full) → generation,
in the model's continuously batched :class:`~shoestring.serve.scheduler.Scheduler`
→ ONE usage event of ``prompt + completion`` tokens through
:meth:`Billing.charge_many <shoestring.serve.billing.Billing.charge_many>`,
recorded before the answer (not streamed) or before the stream's final chunk
and ``data: [DONE]`` (streamed). A stream whose client leaves is cut at the
next step and charged, once, for the tokens produced until then.

Like :mod:`shoestring.serve.service`, nothing here knows about HTTP
frameworks: it takes headers and a body reader and returns a
:class:`~shoestring.serve.answers.Reply` or an :class:`EventStream`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import orjson
from prometheus_client import Counter, Gauge, Histogram

from shoestring.errors import ShoestringError
from shoestring.serve.answers import Reply
from shoestring.serve.auth import Principal
from shoestring.serve.billing import Grant, idempotency_key, request_digest
from shoestring.serve.metering import Outcome
from shoestring.serve.metrics import BATCH_BUCKETS
from shoestring.serve.model_store import ServedModel
from shoestring.serve.openai_protocol import (
    DEFAULT_MAX_TOKENS,
    SSE_DONE,
    CompletionRequest,
    OpenAIError,
    completion,
    model_card,
    parse_completion_request,
    sse,
    usage,
    usage_chunk,
)
from shoestring.serve.protocol import ProtocolError
from shoestring.serve.ratelimit import retry_after_header
from shoestring.serve.scheduler import (
    Chunk,
    Done,
    Generation,
    Job,
    Overloaded,
    Scheduler,
    SchedulerLimits,
    TooLarge,
)

JSON = "application/json"
_log = logging.getLogger("shoestring.serve")
_CODES = {401: "invalid_api_key", 403: "model_not_allowed", 413: "request_too_large",
          422: "idempotency_key_reused", 503: "unavailable"}


def _openai(exc: ProtocolError) -> OpenAIError:
    """The /v2 path's errors (auth, limits, ledger) in OpenAI's shape."""
    code = _CODES.get(exc.status)
    if exc.status == 429:
        code = "insufficient_quota" if "quota" in exc.message or "budget" in exc.message \
            else "rate_limit_exceeded"
    return OpenAIError(exc.status, exc.message, code=code, headers=exc.headers)


@dataclass
class EventStream:
    """A 200 answered as server-sent events; :meth:`cancel` when the client leaves."""

    chunks: AsyncIterator[bytes]
    cancel: Callable[[], None]
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {
        "content-type": "text/event-stream", "cache-control": "no-cache"})


@dataclass
class _Call:
    """One admitted completion request, from its reservation to its charge."""

    model: ServedModel
    req: CompletionRequest
    prompt_tokens: int
    gen: Generation
    grant: Grant | None  # None when metering is off (--no-auth)
    id: str
    created: int
    started: float


class Completions:
    """The ``/v1`` routes' logic for one :class:`~shoestring.serve.service.Service`."""

    def __init__(self, service) -> None:
        self.service = service
        c = service.config
        self.limits = SchedulerLimits(c.max_running_generations, c.max_generation_tokens,
                                      c.max_waiting_generations)
        self.models = [m for m in service.store.all() if m.generates]
        self.schedulers: dict[tuple[str, str], Scheduler] = {}
        self.billing = service.billing  # None when metering is off (--no-auth)
        self._settling: set[asyncio.Task] = set()
        self._created = int(service.now().timestamp())
        r = service.metrics.registry
        self._running = Gauge("shoestring_generations_running", "Sequences in the decode batch",
                              ["model"], registry=r)
        self._waiting = Gauge("shoestring_generations_waiting",
                              "Completions queued for a decode slot", ["model"], registry=r)
        self._rows = Histogram("shoestring_decode_batch_rows", "Sequences per decode step",
                               ["model"], buckets=BATCH_BUCKETS, registry=r)
        self._tokens = Counter("shoestring_completion_tokens", "Tokens generated for /v1 "
                               "completions", ["model"], registry=r)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Allocate each language model's KV cache and start its scheduler thread."""
        loop = asyncio.get_running_loop()
        for m in self.models:
            rows = self._rows.labels(m.name)
            s = Scheduler(m.module, m.tok.decode, vocab_limit=m.tok.vocab_size,
                          limits=self.limits, lock=m._lock, name=m.name,
                          on_step=lambda n, _s, rows=rows: rows.observe(n))
            self._running.labels(m.name).set_function(lambda s=s: s.running)
            self._waiting.labels(m.name).set_function(lambda s=s: s.waiting)
            s.start(loop)
            self.schedulers[(m.name, m.version)] = s

    async def stop(self) -> None:
        """Abort what still runs (charging what streams produced), then stop the threads."""
        loop = asyncio.get_running_loop()
        for s in self.schedulers.values():
            await loop.run_in_executor(None, s.stop)
        if self._settling:
            await asyncio.wait(self._settling, timeout=30)

    # -- GET /v1/models ---------------------------------------------------------------------

    async def list_models(self, headers: Mapping[str, str]) -> Reply:
        try:
            who = await self._authenticate(headers)
        except OpenAIError as exc:
            return Reply(exc.status, exc.body(), exc.headers)
        names = sorted({m.name for m in self.models if who is None or who.plan.allows(m.name)})
        return Reply(200, orjson.dumps({"object": "list", "data": [
            model_card(n, self._created) for n in names]}))

    async def get_model(self, headers: Mapping[str, str], model_id: str) -> Reply:
        try:
            who = await self._authenticate(headers)
            model = self._model(model_id)
            if who is not None and not who.plan.allows(model.name):
                raise OpenAIError(404, f"the model {model_id!r} does not exist",
                                  param="model", code="model_not_found")
        except OpenAIError as exc:
            return Reply(exc.status, exc.body(), exc.headers)
        return Reply(200, orjson.dumps(model_card(model_id, self._created)))

    # -- POST /v1/completions ---------------------------------------------------------------

    async def complete(self, headers: Mapping[str, str],
                       read_body: Callable[[], Awaitable[bytes]]) -> Reply | EventStream:
        """Answer one completions request (see the module docstring)."""
        svc = self.service
        t0 = svc.clock()
        svc.inflight += 1
        svc.metrics.inflight.inc()
        name, status = "_unknown", 500
        try:
            call = await self._admit(headers, read_body, t0)
            name = call.model.name
            if call.req.stream:
                out: asyncio.Queue[bytes | None] = asyncio.Queue()
                self._track(self._pump(call, out))
                status = None  # the pump ends the request's accounting
                return EventStream(_drain(out), call.gen.cancel)
            # A task of its own: if this request's task is cancelled, the completion is
            # still charged (or its reservation released) exactly once.
            reply = await asyncio.shield(self._track(self._answer(call)))
            status = reply.status
            return reply
        except _Replay as replay:
            status = 200
            return replay.answer
        except OpenAIError as exc:
            status = exc.status
            return Reply(exc.status, exc.body(), exc.headers)
        finally:
            if status is not None:
                self._end(name, status, t0)

    def _track(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._settling.add(task)  # a reference until done, as asyncio requires
        task.add_done_callback(self._settling.discard)
        return task

    def _end(self, model: str, status: int, t0: float) -> None:
        svc = self.service
        svc.inflight -= 1
        svc.metrics.inflight.dec()
        svc.metrics.observe(model, status, svc.clock() - t0)

    async def _authenticate(self, headers: Mapping[str, str]) -> Principal | None:
        if self.billing is None:
            return None
        try:
            return await self.billing.authenticate(headers)
        except ProtocolError as exc:
            raise _openai(exc) from None

    def _model(self, model_id: str) -> ServedModel:
        name, _, version = model_id.partition(":")
        model = self.service.store.get(name, version or None)
        if model is None:
            raise OpenAIError(404, f"the model {model_id!r} does not exist; GET /v1/models lists "
                              "the language models served here", param="model",
                              code="model_not_found")
        if not model.generates:
            raise OpenAIError(400, f"model {model_id!r} is a {model.task} model, not a language "
                              "model: completions need a GPT run; send its inputs to "
                              f"POST /v2/models/{model.name}/infer instead", param="model",
                              code="model_not_supported")
        return model

    async def _admit(self, headers: Mapping[str, str],
                     read_body: Callable[[], Awaitable[bytes]], t0: float) -> _Call:
        svc = self.service
        if svc.draining:
            raise OpenAIError(503, "the server is shutting down; retry on another replica",
                              code="unavailable", headers={"Retry-After": "1"})
        who = await self._authenticate(headers)  # the key before the body
        try:
            body = await read_body()
        except ProtocolError as exc:
            raise _openai(exc) from None
        req = parse_completion_request(body)
        model = self._model(req.model)
        if who is not None and not who.plan.allows(model.name):
            raise OpenAIError(403, f"plan {who.plan.name!r} does not include model "
                              f"{model.name!r}", param="model", code="model_not_allowed")
        prompt = self._prompt_ids(model, req.prompt)
        scheduler = self.schedulers[(model.name, model.version)]
        room = scheduler.context - len(prompt)
        max_tokens = req.max_tokens if req.max_tokens is not None else \
            max(1, min(DEFAULT_MAX_TOKENS, room))
        job = Job(prompt, max_tokens, req.sampling, req.stop, req.seed)
        try:
            scheduler.check(job)
        except TooLarge as exc:
            raise OpenAIError(400, f"{exc}; shorten the prompt or lower max_tokens",
                              param="max_tokens" if room > 0 else "prompt",
                              code="context_length_exceeded") from None
        grant = None
        if who is not None:
            try:
                idem = idempotency_key(headers)
            except ProtocolError as exc:
                raise OpenAIError(400, exc.message, code="invalid_idempotency_key") from None
            # The parsed body, canonical: a retry serialized differently is the same request.
            digest = request_digest(f"/v1/completions {model.name}", model.version,
                                    orjson.loads(body))
            try:
                # Holds prompt + max_tokens of the key's quota and the project's budget (from
                # this replica's lease), so the charge at the end cannot be refused: a stream
                # never shows tokens it could not bill.
                grant = await self.billing.reserve(who, model.name, model.version, job.tokens,
                                                   idempotency_key=idem, request_digest=digest,
                                                   started=t0)
            except ProtocolError as exc:
                if exc.status == 429 and ("quota" in exc.message or "budget" in exc.message):
                    exc.message += (f" for this completion, which may use up to {job.tokens} "
                                    f"units (prompt {len(prompt)} + max_tokens {max_tokens}); "
                                    "a lower max_tokens may fit")
                raise _openai(exc) from None
            if grant.replay is not None:
                raise _Replay(self._replay(grant.replay, req))
        try:
            gen = scheduler.submit(job, chunks=req.stream)
        except Overloaded as exc:
            if grant is not None:
                self.billing.release(grant)
            raise OpenAIError(503, exc.message, code="overloaded",
                              headers={"Retry-After": retry_after_header(exc.retry_after_s)}) \
                from None
        usage_id = grant.usage_id if grant is not None else os.urandom(16).hex()
        return _Call(model, req, len(prompt), gen, grant, f"cmpl-{usage_id}",
                     int(svc.now().timestamp()), t0)

    def _prompt_ids(self, model: ServedModel, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, list):
            vocab = model.tok.vocab_size
            bad = [t for t in prompt if not 0 <= t < vocab]
            if bad:
                raise OpenAIError(400, f"token id {bad[0]} is outside the model's vocabulary "
                                  f"(0 to {vocab - 1})", param="prompt", code="invalid_value")
            return prompt
        limit = self.service.config.max_text_bytes
        if len(prompt.encode()) > limit:
            raise OpenAIError(413, f"the prompt is longer than {limit} bytes", param="prompt",
                              code="request_too_large")
        try:
            ids = model.tok.encode(prompt)
        except ShoestringError as exc:  # e.g. a character a char tokenizer never saw
            raise OpenAIError(400, f"'prompt': {exc.message}", param="prompt",
                              code="invalid_value") from None
        if not ids:
            raise OpenAIError(400, "the prompt encodes to no tokens", param="prompt",
                              code="invalid_value")
        return ids

    # -- answers ----------------------------------------------------------------------------

    async def _answer(self, call: _Call) -> Reply:
        """Not streamed: the whole completion, after its usage event is committed."""
        done = await _finished(call.gen)
        if done.reason in ("error", "abort"):
            self._release(call)
            why = "the server is shutting down" if done.reason == "abort" else \
                f"generation failed ({done.error})"
            return Reply(503, OpenAIError(503, f"{why}; the request was not charged, retry it"
                                          ).body(), {"Retry-After": "1"})
        body = self._completion_body(call, done)
        outcome = await self._charge(call, done, body)
        if isinstance(outcome, OpenAIError):
            return Reply(outcome.status, outcome.body(), outcome.headers)
        return outcome or Reply(200, body)  # or the stored answer of an identical request

    async def _pump(self, call: _Call, out: asyncio.Queue) -> None:
        """Streamed: text chunks as they come; the charge; the final chunk, usage, [DONE].

        Runs as a task of its own, fed to the client through ``out``, so it always reaches
        the charge, also when the client left (then after the abort) or the request's task
        was cancelled.
        """
        try:
            while True:
                event = await call.gen.events.get()
                if isinstance(event, Done):
                    break
                out.put_nowait(sse(completion(call.id, call.created, call.req.model,
                                              event.text, None, None)))
            done = event
            if done.reason == "error":
                self._release(call)
                out.put_nowait(_sse_error(OpenAIError(
                    500, f"generation failed ({done.error}); the completion was not charged")))
                return
            outcome = await self._charge(call, done, self._completion_body(call, done))
            if isinstance(outcome, OpenAIError):
                out.put_nowait(_sse_error(outcome))
                return
            # (A Reply: an identical request with this Idempotency-Key was charged first;
            # this stream, the same completion, is not charged again.)
            out.put_nowait(sse(completion(call.id, call.created, call.req.model, "",
                                          _finish_reason(done), None)))
            if call.req.include_usage:
                out.put_nowait(sse(usage_chunk(call.id, call.created, call.req.model,
                                               usage(call.prompt_tokens,
                                                     done.completion_tokens))))
            out.put_nowait(SSE_DONE)
        finally:
            out.put_nowait(None)
            self._end(call.model.name, 200, call.started)

    def _completion_body(self, call: _Call, done: Done) -> bytes:
        return orjson.dumps(completion(call.id, call.created, call.req.model, done.text,
                                       _finish_reason(done),
                                       usage(call.prompt_tokens, done.completion_tokens)))

    def _release(self, call: _Call) -> None:
        """The completion failed: nothing is charged, its units are free again."""
        if call.grant is not None and not call.grant.settled:
            self.billing.release(call.grant)

    async def _charge(self, call: _Call, done: Done, body: bytes) -> Reply | OpenAIError | None:
        """Record the usage event. ``None``: charged (answer ``body``); a :class:`Reply`: the
        stored answer of an identical request that was charged first; an error otherwise.
        Without a key (``--no-auth``) nothing is charged."""
        self._tokens.labels(call.model.name).inc(done.completion_tokens)
        if call.grant is None:
            return None
        units = call.prompt_tokens + done.completion_tokens
        try:
            (result,) = await self.billing.charge_many([call.grant], [units], [body])
        except Exception as exc:  # the ledger is unreachable: nothing was charged
            _log.error("completion %s not charged: %s: %s", call.id, type(exc).__name__, exc)
            self._release(call)
            return OpenAIError(503, "the usage ledger is unavailable; the completion was not "
                               "charged, retry it", code="unavailable",
                               headers={"Retry-After": "1"})
        # Charged: the units held beyond those used are free again. Not charged: all are.
        answer = self.billing.answer(call.grant, units, result, body)
        if isinstance(answer, ProtocolError):
            return _openai(answer)
        if result.outcome is Outcome.charged:
            self.billing.on_charged(call.model.name, call.grant.who.plan.name, units)
        return None if answer.body == body else answer

    def _replay(self, reply: Reply, req: CompletionRequest) -> Reply | EventStream:
        """The recorded answer to a repeated Idempotency-Key (streamed if asked so)."""
        if not req.stream:
            return reply

        async def replayed() -> AsyncIterator[bytes]:
            answer = orjson.loads(reply.body)
            usage_ = answer.pop("usage", None)
            yield sse(answer)
            if req.include_usage and usage_ is not None:
                yield sse(usage_chunk(answer["id"], answer["created"], answer["model"], usage_))
            yield SSE_DONE

        return EventStream(replayed(), lambda: None,
                           headers={"content-type": "text/event-stream",
                                    "cache-control": "no-cache", "idempotent-replayed": "true"})


class _Replay(OpenAIError):
    """Not an error: the stored answer of an Idempotency-Key, raised out of admission."""

    def __init__(self, answer: Reply | EventStream) -> None:
        super().__init__(200, "replay")
        self.answer = answer


async def _drain(out: asyncio.Queue) -> AsyncIterator[bytes]:
    """The pump's events until its end (``None``); what queued up meanwhile goes out as one
    write, so a client that reads slower than tokens come costs fewer sends."""
    while True:
        pieces = [await out.get()]
        while pieces[-1] is not None and not out.empty():
            pieces.append(out.get_nowait())
        data = b"".join(p for p in pieces if p is not None)
        if data:
            yield data
        if pieces[-1] is None:
            return


def _sse_error(error: OpenAIError) -> bytes:
    # An "error" object in a data event: the openai clients raise it as an APIError.
    return b"data: " + error.body() + b"\n\n"


async def _finished(gen: Generation) -> Done:
    while True:
        event = await gen.events.get()
        if isinstance(event, Done):
            return event
        assert isinstance(event, Chunk)


def _finish_reason(done: Done) -> str:
    # OpenAI's reasons are "stop" and "length"; a stream cut because its client left ends
    # with "abort" (vLLM's word), seen only in the stored answer of a keyed request.
    return {"stop": "stop", "length": "length"}.get(done.reason, "abort")
