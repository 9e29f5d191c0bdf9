"""What happens after a batch's forward pass.

Where the batch ran (the inference thread, or the event loop for a cheap
model), for every request of the batch: encode its response, and charge the
metered ones together (:meth:`Billing.charge_batch`): their usage records are
appended to the usage log right there, in one write (synced when durable),
before the batch's results go back to the event loop. So a 200 always means
"recorded", and metering adds no thread hand-off and no wake-up of the event
loop: a metered batch crosses threads exactly as an unmetered one does. Only
requests with an Idempotency-Key wait for the writer thread (the SQL ledger,
where a retry at another replica finds them), and so does a batch that ran on
the event loop when the log is synced (``--durable``): a synced write made by
the thread serving the sockets waited a whole timer tick on the VMs measured
(:meth:`LedgerWriter.writes_here`), so that one goes to the writer's group
commit as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from shoestring.serve.auth import Principal
from shoestring.serve.batching import Deferred, OnLoop
from shoestring.serve.metering import ChargeResult, Outcome, Stored, seconds_to_next_period
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
    request_id: str | None = None
    outputs: tuple[str, ...] | None = None
    grant: Any = None  # a billing.Grant when the request is metered


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


def stored_reply(stored: Stored, digest: str | None, legacy: tuple[str, ...] = ()) -> Reply:
    """The recorded answer to an Idempotency-Key, if this is the same request.

    ``legacy``: other digests of the same request (release 0.1 hashed the raw bytes)."""
    if stored.request_sha256 != digest and stored.request_sha256 not in legacy:
        raise ProtocolError(422, "this Idempotency-Key was used for a different request; "
                            "use a new key for a new request")
    return Reply(200, (stored.response_json or "").encode(), {"Idempotent-Replayed": "true"})


class BatchAnswers:
    """The ``finish`` hook of a model's :class:`~shoestring.serve.batching.Batcher`."""

    def __init__(self, model: ServedModel, billing) -> None:
        self.model, self.billing = model, billing

    def __call__(self, tickets: list[Ticket], outs: list[dict[str, np.ndarray]]
                 ) -> list | OnLoop | Deferred:
        m = self.model
        answers: list = []
        billed: list[int] = []
        for t, out in zip(tickets, outs):
            g = t.grant
            params = {"usage_id": g.usage_id, "units": t.rows} if g is not None else None
            answers.append(encode_response(m.name, m.version, t.request_id,
                                           output_tensors(m, out, t.rows), t.outputs, params))
            if g is not None:
                billed.append(len(answers) - 1)
        if not billed:
            return [Reply(200, a) for a in answers]
        grants = [tickets[j].grant for j in billed]
        units, bodies = [tickets[j].rows for j in billed], [answers[j] for j in billed]
        if not self.billing.charges_here():  # a synced write on the event loop: the writer's
            return Deferred(self.billing.charge_many(grants, units, bodies),
                            lambda results: self._settle(tickets, answers, billed, results),
                            lambda _exc: self._settle(tickets, answers, billed,
                                                      [UNRECORDED] * len(billed)))
        results, keyed = self.billing.charge_batch(grants, units, bodies)
        if keyed is None:  # all recorded already (or failed): answer with the batch
            return OnLoop(lambda: self._settle(tickets, answers, billed, results))

        def then(keyed_results: list[ChargeResult]) -> list:
            filled = iter(keyed_results)
            return self._settle(tickets, answers, billed,
                                [r if r is not None else next(filled) for r in results])

        def otherwise(_exc: BaseException) -> list:  # the keyed ones' commit never finished
            return self._settle(tickets, answers, billed,
                                [r if r is not None else UNRECORDED for r in results])

        return Deferred(keyed, then, otherwise)

    def _settle(self, tickets: list[Ticket], answers: list, billed: list[int],
                results: list) -> list:
        out: list = [Reply(200, a) for a in answers]
        charged: dict[str, int] = {}
        for j, res in zip(billed, results):
            t = tickets[j]
            out[j] = self.billing.answer(t.grant, t.rows, res, answers[j])
            if res.outcome is Outcome.charged:  # not a replayed duplicate, not a failure
                plan = t.grant.who.plan.name
                charged[plan] = charged.get(plan, 0) + t.rows
        for plan, units in charged.items():  # one metric update per batch and plan
            self.billing.on_charged(self.model.name, plan, units)
        return out


UNRECORDED = ChargeResult(Outcome.unrecorded)


def unrecorded_error() -> ProtocolError:
    """The ledger is unreachable: nobody is charged, so nobody gets a 200."""
    return ProtocolError(503, "the usage ledger is unavailable; the request was not charged, "
                         "retry it", {"Retry-After": "1"})
