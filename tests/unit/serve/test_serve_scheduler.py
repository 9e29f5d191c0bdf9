"""Continuous batching: rows decoded together give what each gives alone; requests join at the
next step and leave at once; cancellation, limits, stop sequences and model failures."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch
from torch_threads import one_thread  # noqa: F401 (an autouse fixture)

from shoestring.models.generate import iter_tokens
from shoestring.models.gpt import GPT, GPTConfig
from shoestring.models.sampling import SamplingParams
from shoestring.serve.scheduler import Chunk, Done, Job, Overloaded, Scheduler, \
    SchedulerLimits, TooLarge

VOCAB = 26


def decode(ids: list[int]) -> str:
    return "".join(chr(ord("a") + i) for i in ids)


def tiny(block: int = 48, **options) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=block, vocab_size=VOCAB,
                          **options)).eval()
    with torch.no_grad():  # sharp distributions: a wrong row or position changes the text
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    return model


def alone(model: GPT, job: Job) -> str:
    """The reference: the job by itself, through generate's token loop."""
    g = torch.Generator().manual_seed(job.seed)
    ids = [int(t[0]) for t in iter_tokens(model, torch.tensor([job.prompt]), job.max_tokens,
                                          job.params, g)]
    return decode(ids)


async def collect(gen) -> tuple[str, Done]:
    pieces = []
    while True:
        event = await gen.events.get()
        if isinstance(event, Done):
            return "".join(pieces), event
        assert isinstance(event, Chunk)
        pieces.append(event.text)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def started(model: GPT, rows: list[int] | None = None, lock=None, **limits) -> Scheduler:
    s = Scheduler(model, decode, limits=SchedulerLimits(**limits), lock=lock,
                  on_step=None if rows is None else lambda n, _t: rows.append(n))
    s.start(asyncio.get_running_loop())
    return s


JOBS = [Job([1, 2, 3], 12, SamplingParams(0.9, top_p=0.9), seed=1),
        Job([4], 20, SamplingParams(0.0), seed=2),
        Job([5, 6, 7, 8, 9, 10, 11], 5, SamplingParams(1.2, top_k=5), seed=3),
        Job([12, 13], 16, SamplingParams(0.7), seed=4)]


@pytest.mark.parametrize("options", [{}, {"pos": "rope", "n_kv_head": 1}], ids=["gpt2", "llama"])
def test_sequences_batched_together_get_the_text_they_get_alone(options):
    model = tiny(**options)

    async def main():
        rows: list[int] = []
        s = started(model, rows, max_running=8)
        try:
            gens = [s.submit(j) for j in JOBS]
            results = await asyncio.gather(*(collect(g) for g in gens))
        finally:
            s.stop()
        return results, rows

    results, rows = run(main())
    for job, (text, done) in zip(JOBS, results):
        assert done.reason == "length" and done.completion_tokens == job.max_tokens
        assert text == done.text == alone(model, job)
    assert max(rows) == 4  # all four decoded in one forward pass
    assert rows[-1] == 1  # the longest ran on alone once the others had left


def test_a_generation_without_chunks_gets_only_its_done_with_the_same_text():
    # A client that does not stream needs no event per token: the Done carries the text,
    # identical to what the chunks of a streamed twin add up to.
    model = tiny()

    async def both():
        s = started(model, max_running=8)
        try:
            quiet = [s.submit(j, chunks=False) for j in JOBS]
            streamed = [s.submit(j) for j in JOBS]
            got_quiet = []
            for g in quiet:
                first = await g.events.get()
                assert isinstance(first, Done) and g.events.empty()
                got_quiet.append(first)
            got_streamed = await asyncio.gather(*(collect(g) for g in streamed))
            return got_quiet, got_streamed
        finally:
            s.stop()

    got_quiet, got_streamed = run(both())
    for job, done, (text, sdone) in zip(JOBS, got_quiet, got_streamed):
        assert done.text == text == sdone.text == alone(model, job)
        assert done.completion_tokens == job.max_tokens


def test_a_new_request_joins_the_running_batch_at_the_next_step():
    model = tiny()
    rows: list[int] = []
    gate = threading.Event()

    def on_step(n: int, _seconds: float) -> None:
        rows.append(n)
        if len(rows) == 3:  # hold the scheduler after its third step until the test says
            gate.wait(30)

    async def main():
        s = Scheduler(model, decode, limits=SchedulerLimits(max_running=4), on_step=on_step)
        s.start(asyncio.get_running_loop())
        try:
            first = s.submit(Job([1], 40, SamplingParams(0.0), seed=0))
            while len(rows) < 3:
                await asyncio.sleep(0.001)
            second = s.submit(Job([2, 3], 4, SamplingParams(0.0), seed=0))
            gate.set()
            return await asyncio.gather(collect(first), collect(second))
        finally:
            gate.set()
            s.stop()

    (_, done1), (_, done2) = run(main())
    assert done1.completion_tokens == 40 and done2.completion_tokens == 4
    # Joined at the very next step, its prompt in the same forward pass as the running
    # sequence's next token (that pass gave its first token), and left after 3 more.
    assert rows[:8] == [1, 1, 1, 2, 2, 2, 2, 1]


@pytest.mark.parametrize("options", [{}, {"pos": "rope", "n_kv_head": 1}], ids=["gpt2", "llama"])
def test_newcomers_prefilled_in_the_running_pass_get_the_text_they_get_alone(options):
    # Sampled jobs join while another decodes: their prompts share its forward pass
    # (right-padded), which must change nobody's text.
    model = tiny(**options)
    rows: list[int] = []
    gate = threading.Event()

    def on_step(n: int, _seconds: float) -> None:
        rows.append(n)
        if len(rows) == 2:
            gate.wait(30)

    async def main():
        s = Scheduler(model, decode, limits=SchedulerLimits(max_running=8), on_step=on_step)
        s.start(asyncio.get_running_loop())
        try:
            first = s.submit(JOBS[1])
            while len(rows) < 2:
                await asyncio.sleep(0.001)
            others = [s.submit(j) for j in (JOBS[0], JOBS[2], JOBS[3])]
            gate.set()
            return await asyncio.gather(*(collect(g) for g in [first, *others]))
        finally:
            gate.set()
            s.stop()

    results = run(main())
    for job, (text, done) in zip([JOBS[1], JOBS[0], JOBS[2], JOBS[3]], results):
        assert done.reason == "length" and text == done.text == alone(model, job)
    assert rows[2] == 4  # the three newcomers joined the running one's pass


def gated(model: GPT, at_step: int, **limits) -> tuple[Scheduler, list[int], threading.Event]:
    """A scheduler that pauses after decode step ``at_step`` until the event is set."""
    rows: list[int] = []
    gate = threading.Event()

    def on_step(n: int, _seconds: float) -> None:
        rows.append(n)
        if len(rows) == at_step:
            gate.wait(30)

    s = Scheduler(model, decode, limits=SchedulerLimits(**limits), on_step=on_step)
    s.start(asyncio.get_running_loop())
    return s, rows, gate


async def until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.001)


def test_cancel_cuts_a_generation_at_the_next_step_and_reports_what_it_produced():
    model = tiny()

    async def main():
        s, rows, gate = gated(model, 2)
        try:
            gen = s.submit(Job([1], 45, SamplingParams(0.0), seed=0))
            await until(lambda: len(rows) == 2)
            gen.cancel()
            gate.set()
            return await collect(gen)
        finally:
            gate.set()
            s.stop()

    text, done = run(main())
    # 1 token from the prefill, 1 per decode step; retired before a third step.
    assert done.reason == "abort" and done.completion_tokens == 3 and done.text == text
    assert len(text) == 3


def test_stop_sequences_end_a_generation_before_the_sequence():
    model = tiny()
    job = Job([1, 2], 30, SamplingParams(0.0), seed=0)
    reference = alone(model, job)
    stop = reference[6:8]

    async def main():
        s = started(model)
        try:
            return await collect(s.submit(Job([1, 2], 30, SamplingParams(0.0), (stop,), 0)))
        finally:
            s.stop()

    text, done = run(main())
    assert done.reason == "stop" and text == done.text == reference[:reference.find(stop)]
    assert done.completion_tokens == len(text) + len(stop)


def test_limits_queue_requests_and_refuse_what_cannot_fit():
    model = tiny(block=16)

    async def main():
        rows: list[int] = []
        frozen = threading.Lock()  # held here, the scheduler stops at its next forward pass
        s = started(model, rows, frozen, max_running=4, max_total_tokens=20, max_waiting=1)
        try:
            with pytest.raises(TooLarge, match="beyond the model's context of 16"):
                s.submit(Job([1] * 10, 7))
            with frozen:
                a = s.submit(Job([1] * 4, 10, SamplingParams(0.0)))  # 14 tokens of 20
                while s.running == 0:
                    await asyncio.sleep(0.001)
                b = s.submit(Job([2] * 4, 10, SamplingParams(0.0)))  # waits: 28 > 20
                with pytest.raises(Overloaded, match="1 generations are waiting"):
                    s.submit(Job([3], 2))
            (_, da), (_, db) = await asyncio.gather(collect(a), collect(b))
        finally:
            s.stop()
        return rows, da, db

    rows, da, db = run(main())
    assert da.completion_tokens == db.completion_tokens == 10
    assert max(rows) == 1  # the token budget kept them apart
    with pytest.raises(TooLarge, match="limit of 12 tokens"):
        Scheduler(model, decode, limits=SchedulerLimits(max_total_tokens=12)).check(
            Job([1] * 6, 8))


def test_a_failing_model_fails_the_running_generations_and_the_next_ones_still_run():
    model = tiny()
    real_forward = model.forward
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real_forward(*args, **kwargs)

    model.forward = flaky

    async def main():
        s = started(model)
        try:
            broken = await collect(s.submit(Job([1], 10, SamplingParams(0.0))))
            fine = await collect(s.submit(Job([1], 10, SamplingParams(0.0))))
        finally:
            s.stop()
        return broken, fine

    (_, broken), (_, fine) = run(main())
    assert broken.reason == "error" and "RuntimeError: boom" in broken.error
    assert fine.reason == "length" and fine.completion_tokens == 10


def test_stop_aborts_waiting_and_running_generations():
    model = tiny()

    async def main():
        s, rows, gate = gated(model, 1, max_running=1)
        running = s.submit(Job([1], 45, SamplingParams(0.0)))
        waiting = s.submit(Job([2], 45, SamplingParams(0.0)))
        await until(lambda: len(rows) == 1)
        stopped = asyncio.get_running_loop().run_in_executor(None, s.stop)
        await until(lambda: s._stopping)
        gate.set()
        await stopped
        return await collect(running), await collect(waiting)

    (_, r), (_, w) = run(main())
    assert r.reason == w.reason == "abort" and r.completion_tokens == 2
    assert w.completion_tokens == 0
