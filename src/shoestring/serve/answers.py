"""What happens after a batch's forward pass.

On the inference thread, for every request of the batch: encode its response
and, when it carries an API key, make its usage event. The batch's events go
to the :class:`LedgerWriter` together; only when their transaction has
committed are the batch's requests answered (on the event loop), so a 200
always means "recorded", and a batch costs one hand-off however many requests
it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from shoestring.serve.auth import Principal
from shoestring.serve.batching import Deferred
from shoestring.serve.ledger_writer import LedgerWriter
from shoestring.serve.metering import ChargeResult, Outcome, Stored, UsageEvent, \
    seconds_to_next_period
from shoestring.serve.metrics import ServerMetrics
from shoestring.serve.model_store import ServedModel
from shoestring.serve.protocol import OutputTensor, ProtocolError, encode_response


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Ticket:
    """What the inference thread needs to answer (and bill) one request."""

    rows: int
    started: float
    request_id: str | None = None
    outputs: tuple[str, ...] | None = None
    who: Principal | None = None
    event_id: str | None = None
    idempotency_key: str | None = None
    request_sha256: str | None = None


def output_tensors(model: ServedModel, out: dict[str, np.ndarray], rows: int
                   ) -> list[OutputTensor]:
    tensors = []
    for spec in model.outputs:
        arr = out[spec.name]
        data = arr.tolist() if spec.datatype == "BYTES" else np.ascontiguousarray(arr).reshape(-1)
        tensors.append(OutputTensor(spec.name, spec.datatype, [rows, *spec.shape], data))
    return tensors


def quota_error(who: Principal, quota: int | None, now: datetime) -> ProtocolError:
    return ProtocolError(429, f"monthly quota of {quota} units for key {who.key.prefix}… "
                         "is used up", {"Retry-After": str(seconds_to_next_period(now))})


def stored_reply(stored: Stored, digest: str | None) -> Reply:
    """The recorded answer to an Idempotency-Key, if this is the same request."""
    if stored.request_sha256 != digest:
        raise ProtocolError(422, "this Idempotency-Key was used for a different request; "
                            "use a new key for a new request")
    return Reply(200, (stored.response_json or "").encode(), {"Idempotent-Replayed": "true"})


class BatchAnswers:
    """The ``finish`` hook of a model's :class:`~shoestring.serve.batching.Batcher`."""

    def __init__(self, model: ServedModel, writer: LedgerWriter | None, metrics: ServerMetrics,
                 now: Callable[[], datetime], clock: Callable[[], float],
                 key_used: dict[tuple[str, str], int]) -> None:
        self.model, self.writer, self.metrics = model, writer, metrics
        self.now, self.clock, self.key_used = now, clock, key_used

    def __call__(self, tickets: list[Ticket], outs: list[dict[str, np.ndarray]]
                 ) -> list | Deferred:
        m = self.model
        answers: list = []
        billed: list[tuple[int, Ticket, UsageEvent]] = []
        now = self.now()
        for t, out in zip(tickets, outs):
            params = {"usage_id": t.event_id, "units": t.rows} if t.who is not None else None
            payload = encode_response(m.name, m.version, t.request_id,
                                      output_tensors(m, out, t.rows), t.outputs, params)
            answers.append(Reply(200, payload))
            if t.who is not None:
                billed.append((len(answers) - 1, t, self._event(t, payload, now)))
        if not billed:
            return answers
        return Deferred(self.writer.submit([ev for *_, ev in billed]),
                        lambda results: self._settle(answers, billed, results),
                        lambda _exc: self._unrecorded(answers, billed))

    @staticmethod
    def _unrecorded(answers: list, billed: list) -> list:
        """The ledger is unreachable: nobody is charged, so nobody gets a 200."""
        error = ProtocolError(503, "the usage ledger is unavailable; the request was not "
                              "charged, retry it", {"Retry-After": "1"})
        for j, *_ in billed:
            answers[j] = error
        return answers

    def _settle(self, answers: list, billed: list, results: list[ChargeResult]) -> list:
        units: dict[str, int] = {}
        for (j, t, ev), res in zip(billed, results):
            answers[j] = self._outcome(t, ev, res, answers[j])
            if res.outcome is Outcome.charged:
                units[ev.plan] = units.get(ev.plan, 0) + ev.units
        for plan, n in units.items():  # one metric update per batch and plan
            self.metrics.usage_units.labels(self.model.name, plan).inc(n)
        return answers

    def _event(self, t: Ticket, payload: bytes, now: datetime) -> UsageEvent:
        who = t.who
        return UsageEvent(
            id=t.event_id, key_id=who.key.id, project=who.key.project, plan=who.plan.name,
            model=self.model.name, version=self.model.version, units=t.rows,
            cost_nano_usd=who.plan.cost_nano_usd(t.rows),
            latency_ms=(self.clock() - t.started) * 1000, created_at=now,
            key_quota=who.quota, project_budget_nano_usd=who.budget_nano_usd,
            idempotency_key=t.idempotency_key, request_sha256=t.request_sha256,
            # Only a keyed request can be replayed, so only its answer is stored.
            response_json=payload.decode() if t.idempotency_key is not None else None)

    def _outcome(self, t: Ticket, ev: UsageEvent, res: ChargeResult, ok: Reply):
        if res.key_used is not None:
            k = (ev.key_id, ev.period)
            self.key_used[k] = max(self.key_used.get(k, 0), res.key_used)
        if res.outcome is Outcome.charged:
            return ok
        if res.outcome is Outcome.duplicate:
            if res.stored is None:
                return ProtocolError(409, "a request with this Idempotency-Key is in progress")
            try:
                return stored_reply(res.stored, t.request_sha256)
            except ProtocolError as exc:
                return exc
        if res.outcome is Outcome.quota_exceeded:
            return quota_error(t.who, t.who.quota, ev.created_at)
        return ProtocolError(429, f"the monthly budget of project {ev.project!r} is spent",
                             {"Retry-After": str(res.retry_after_s)})
