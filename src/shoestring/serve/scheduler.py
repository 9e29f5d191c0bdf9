"""Continuous batching of text generations over one GPT and its KV cache.

Iteration-level scheduling (Yu et al. 2022, *Orca: A Distributed Serving
System for Transformer-Based Generative Models*, OSDI, section 4.2): the
batch is re-formed at every decoding step rather than once per request. A
thread repeats

1. retire sequences whose client went away (they are billed what they produced);
2. admit waiting requests, oldest first, while a cache slot is free and the
   token budget allows: their prompts run once, together (one prefill pass,
   right-padded), into their slots, and each samples its first token;
3. decode one token for every running sequence in ONE forward pass (rows at
   different lengths, each with its own positions and mask:
   :class:`shoestring.models.kv_cache.CacheStep`), sample each row with its
   own settings and generator, and retire those that hit ``max_tokens`` or a
   stop sequence, freeing their slot for the next step.

A request therefore joins the running batch at the next step, and a finished
one leaves at once; nobody waits for the longest generation of a batch.

Memory is bounded up front: ``max_running`` cache slots of ``block_size``
tokens are allocated at start (:meth:`KVCache.bytes_needed`), at most
``max_total_tokens`` (prompt + max_tokens, summed over running sequences) are
admitted, and at most ``max_waiting`` requests queue; beyond that
:meth:`Scheduler.submit` raises :class:`Overloaded` (HTTP 503).

Results cross from the scheduler thread to the event loop once per step
(``call_soon_threadsafe`` with every sequence's new text), not once per token.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from shoestring.models.kv_cache import KVCache
from shoestring.models.sampling import SamplingParams, next_tokens
from shoestring.models.text_stream import TextStream
from shoestring.serve.threads import name_native_thread

_log = logging.getLogger("shoestring.serve")


@dataclass(frozen=True)
class SchedulerLimits:
    """Bounds on one model's generations (see the module docstring)."""

    max_running: int = 16
    max_total_tokens: int | None = None  # None: max_running × block_size (never binds)
    max_waiting: int = 256


class Overloaded(Exception):
    """Too many requests wait already; try again later."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.message, self.retry_after_s = message, retry_after_s


class TooLarge(ValueError):
    """A request that could never run within the limits (a client error)."""


@dataclass(frozen=True)
class Job:
    """What to generate: prompt token ids, at most ``max_tokens`` new ones."""

    prompt: list[int]
    max_tokens: int
    params: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def tokens(self) -> int:
        """Cache positions the job may fill: its share of ``max_total_tokens``."""
        return len(self.prompt) + self.max_tokens


@dataclass(frozen=True, slots=True)
class Chunk:
    """New text of a generation (already safe to show: see TextStream)."""

    text: str


@dataclass(frozen=True)
class Done:
    """The end of a generation. ``reason``: ``length``, ``stop``, ``abort`` (cancelled)
    or ``error`` (the model failed; ``error`` says how)."""

    reason: str
    completion_tokens: int
    text: str
    error: str | None = None


class Generation:
    """A submitted job, seen from the event loop: its events arrive on :attr:`events`."""

    def __init__(self, job: Job, chunks: bool = True) -> None:
        self.job = job
        # False: only the Done event (with the whole text) is delivered, e.g. to a client
        # that does not stream: no event, and no hop to the event loop, per token.
        self.chunks = chunks
        self.events: asyncio.Queue[Chunk | Done] = asyncio.Queue()
        self.cancelled = False
        self.submitted = time.perf_counter()

    def cancel(self) -> None:
        """Stop generating (the client left); a :class:`Done` with reason ``abort`` follows."""
        self.cancelled = True


@dataclass(eq=False)
class _Running:
    gen: Generation
    slot: int
    text: TextStream
    generator: torch.Generator
    last: int = 0
    produced: int = 0


@dataclass
class SchedulerStats:
    steps: int = 0  # decode steps (one forward pass over every running sequence)
    tokens: int = 0  # tokens generated, prefill's first tokens included


class Scheduler:
    """Runs every generation of one model; see the module docstring.

    ``decode`` turns token ids into text; ``lock`` guards the model against other
    users of the same weights (the /v2 path); ``on_step(rows, seconds)`` observes
    each decode step.
    """

    def __init__(self, model: torch.nn.Module, decode: Callable[[list[int]], str], *,
                 vocab_limit: int | None = None, limits: SchedulerLimits = SchedulerLimits(),
                 lock: threading.Lock | None = None, name: str = "model",
                 on_step: Callable[[int, float], None] | None = None) -> None:
        self.model, self.decode, self.vocab_limit = model, decode, vocab_limit
        self.context = model.config.block_size
        self.limits = limits
        self.max_total_tokens = limits.max_total_tokens or limits.max_running * self.context
        self.lock = lock or threading.Lock()
        self.name, self.on_step = name, on_step
        p = model.wte.weight
        self.cache = KVCache(model.config, limits.max_running, device=p.device, dtype=p.dtype)
        self.stats = SchedulerStats()
        self._cond = threading.Condition()
        self._waiting: deque[Generation] = deque()
        self._running: list[_Running] = []
        self._free = list(range(limits.max_running))  # a heap: the lowest slot first
        self._reserved = 0  # tokens of running sequences
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle (event loop thread) ------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name=f"ss-gen-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Abort whatever still runs or waits (each gets ``Done('abort')``), end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def check(self, job: Job) -> None:
        """Raise :class:`TooLarge` if ``job`` could never run here."""
        if job.tokens > self.context:
            raise TooLarge(f"the prompt ({len(job.prompt)} tokens) plus max_tokens "
                           f"({job.max_tokens}) is {job.tokens} tokens, beyond the model's "
                           f"context of {self.context}")
        if job.tokens > self.max_total_tokens:
            raise TooLarge(f"the prompt plus max_tokens is {job.tokens} tokens, beyond this "
                           f"server's limit of {self.max_total_tokens} tokens in generation")

    def submit(self, job: Job, *, chunks: bool = True) -> Generation:
        """Queue ``job``; it joins the running batch at the next step with room.
        ``chunks=False``: deliver only the final :class:`Done` (a client not streaming)."""
        self.check(job)
        gen = Generation(job, chunks)
        with self._cond:
            if self._stopping:
                raise Overloaded("the server is shutting down", 1.0)
            if len(self._waiting) >= self.limits.max_waiting:
                raise Overloaded(f"{len(self._waiting)} generations are waiting for "
                                 f"{self.limits.max_running} running slots (limit "
                                 f"{self.limits.max_waiting}); try again shortly", 1.0)
            self._waiting.append(gen)
            self._cond.notify()
        return gen

    # -- the scheduler thread ---------------------------------------------------------------

    def _run(self) -> None:
        name_native_thread()
        while True:
            with self._cond:
                while not (self._waiting or self._running or self._stopping):
                    self._cond.wait()
                if self._stopping:
                    break
            out: list[tuple[Generation, Chunk | Done]] = []
            try:
                self._iteration(out)
            except Exception as exc:  # a bug: every running generation learns it, none hangs
                _log.exception("generation step failed")
                for seq in list(self._running):
                    self._finish(seq, "error", out, f"{type(exc).__name__}: {exc}")
            self._send(out)
        out = []
        for seq in list(self._running):
            self._finish(seq, "abort", out)
        with self._cond:
            while self._waiting:
                out.append((self._waiting.popleft(), Done("abort", 0, "")))
        self._send(out)

    def _send(self, out: list[tuple[Generation, Chunk | Done]]) -> None:
        if out and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(_deliver, out)
            except RuntimeError:  # the event loop closed (shutdown): nobody is listening
                pass

    def _iteration(self, out: list) -> None:
        for seq in [s for s in self._running if s.gen.cancelled]:
            self._finish(seq, "abort", out)
        decoding = list(self._running)
        joining = self._admit(out)
        if joining and decoding and self._fits_together(decoding, joining):
            # One forward pass for both: the running rows' next token and the newcomers'
            # prompts, right-padded to the longest (the mixed batches of Agrawal et al.
            # 2024, *Sarathi-Serve*, OSDI, section 4.3, without chunking): a request that
            # arrives while others decode costs them no extra pass.
            self._step(decoding + joining, out, prompts=len(decoding))
            return
        if joining:
            self._step(joining, out, prompts=0)
        if decoding:
            self._step(decoding, out, prompts=None)

    def _fits_together(self, decoding: list[_Running], joining: list[_Running]) -> bool:
        """Whether the decoding rows, padded to the longest prompt, stay within the cache
        (their padding is written past their ends, then overwritten)."""
        width = max(len(s.gen.job.prompt) for s in joining)
        return max(self.cache.lengths[s.slot] for s in decoding) + width <= self.cache.capacity

    def _admit(self, out: list) -> list[_Running]:
        """Take waiting requests, oldest first, while a slot and the token budget allow
        (placed in their cache slots; the caller runs their prompts)."""
        joining: list[_Running] = []
        with self._cond:
            while self._waiting:
                gen = self._waiting[0]
                if gen.cancelled:
                    self._waiting.popleft()
                    out.append((gen, Done("abort", 0, "")))
                    continue
                # Oldest first: a long request is not overtaken forever by short ones.
                if not self._free or self._reserved + gen.job.tokens > self.max_total_tokens:
                    break
                self._waiting.popleft()
                joining.append(self._place(gen))
        return joining

    def _place(self, gen: Generation) -> _Running:
        job = gen.job
        slot = heapq.heappop(self._free)
        self._reserved += job.tokens
        # A seed makes the request reproducible; without one, fresh entropy per request.
        seed = job.seed if job.seed is not None else int.from_bytes(os.urandom(8), "little")
        g = torch.Generator()
        g.manual_seed(seed & (2**63 - 1))
        seq = _Running(gen, slot, TextStream(self.decode, job.stop), g)
        self._running.append(seq)
        self.cache.reset(slot)
        return seq

    def _step(self, seqs: list[_Running], out: list, prompts: int | None) -> None:
        """One forward pass and one sampled token for each of ``seqs``. Rows from index
        ``prompts`` on are newcomers fed their whole prompt (right-padded), the rows before
        it their last token; ``prompts=None``: a pure decode step (every row one token)."""
        t0 = time.perf_counter()
        if prompts is None:
            idx = torch.tensor([[s.last] for s in seqs])
            counts: int | list[int] = 1
        else:
            rows = [[s.last] for s in seqs[:prompts]] + [s.gen.job.prompt for s in seqs[prompts:]]
            counts = [len(r) for r in rows]
            width = max(counts)
            idx = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        before = [self.cache.lengths[s.slot] for s in seqs[:prompts or 0]]
        try:
            with self.lock, torch.no_grad():
                logits, _ = self.model(idx, last_only=prompts is not None,
                                       cache=self.cache.step([s.slot for s in seqs], counts))
            tokens = next_tokens(logits[:, -1], [s.gen.job.params for s in seqs],
                                 [s.generator for s in seqs], self.vocab_limit).tolist()
        except Exception as exc:
            if prompts is None or before != [self.cache.lengths[s.slot]
                                             for s in seqs[:prompts]]:
                raise  # decoding rows were advanced or failed: _run fails every running one
            # e.g. out of memory in a prefill: its newcomers fail; decoding rows go on
            # (the failed pass did not advance their cache: lengths move after a whole pass).
            _log.exception("prefill failed")
            for seq in seqs[prompts:]:
                self._finish(seq, "error", out, f"{type(exc).__name__}: {exc}")
            if prompts:
                self._step(seqs[:prompts], out, prompts=None)
            return
        for seq, token in zip(seqs, tokens):
            self._accept(seq, token, out)
        if prompts != 0:  # a pass that advanced the running sequences
            self.stats.steps += 1
            if self.on_step is not None:
                self.on_step(len(seqs), time.perf_counter() - t0)

    def _accept(self, seq: _Running, token: int, out: list) -> None:
        seq.last = token
        seq.produced += 1
        self.stats.tokens += 1
        piece = seq.text.push(token)
        if piece and seq.gen.chunks:
            out.append((seq.gen, Chunk(piece)))
        if seq.text.stopped:
            self._finish(seq, "stop", out)
        elif seq.produced >= seq.gen.job.max_tokens:
            rest = seq.text.finish()
            if rest and seq.gen.chunks:
                out.append((seq.gen, Chunk(rest)))
            self._finish(seq, "length", out)

    def _finish(self, seq: _Running, reason: str, out: list, error: str | None = None) -> None:
        self._running.remove(seq)
        heapq.heappush(self._free, seq.slot)
        self._reserved -= seq.gen.job.tokens
        out.append((seq.gen, Done(reason, seq.produced, seq.text.text, error)))


def _deliver(out: list[tuple[Generation, Chunk | Done]]) -> None:
    for gen, event in out:
        gen.events.put_nowait(event)
