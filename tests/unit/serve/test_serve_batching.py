import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from shoestring.serve.batching import Batcher, LinearFit, Shed, fit_linear


def test_fit_linear_recovers_a_line_and_stays_non_negative():
    f = fit_linear([(n, 0.002 * n + 0.001) for n in range(1, 9)])
    assert f.a == pytest.approx(0.002) and f.b == pytest.approx(0.001)
    assert fit_linear([(1, 0.005), (8, 0.001)]).a == 0.0  # noise with a negative slope
    assert fit_linear([(4, 0.01), (4, 0.03)]) == LinearFit(0.0, 0.02)
    assert fit_linear([]) == LinearFit(0.0, 0.0)


class Recorder:
    """A model that doubles its input and remembers each batch's size."""

    def __init__(self, delay_s: float = 0.0):
        self.sizes: list[int] = []
        self.delay_s = delay_s

    def __call__(self, x):
        import time

        if self.delay_s:
            time.sleep(self.delay_s)
        self.sizes.append(len(x))
        return {"y": np.asarray(x) * 2}


def test_concurrent_requests_share_batches_and_get_their_own_rows():
    model = Recorder()

    async def main():
        b = Batcher(model, ThreadPoolExecutor(1), max_batch=8, max_delay_s=0.05)
        b.start()
        xs = [np.full((1, 2), i, dtype=np.float32) for i in range(20)]
        outs = await asyncio.gather(*(b.submit(x, 1) for x in xs))
        await b.stop()
        return xs, outs

    xs, outs = asyncio.run(main())
    for x, out in zip(xs, outs):
        assert np.array_equal(out["y"], x * 2)
    assert sum(model.sizes) == 20
    assert max(model.sizes) == 8 and len(model.sizes) <= 4  # batched, never above the cap


def test_multi_row_requests_are_never_split():
    model = Recorder()

    async def main():
        b = Batcher(model, ThreadPoolExecutor(1), max_batch=4, max_delay_s=0.01)
        b.start()
        outs = await asyncio.gather(*(b.submit(np.ones((3, 1)), 3) for _ in range(3)))
        await b.stop()
        return outs

    outs = asyncio.run(main())
    assert all(o["y"].shape == (3, 1) for o in outs)
    assert model.sizes == [3, 3, 3]


def test_warm_up_runs_every_batch_size_and_fits_the_timing():
    model = Recorder()
    b = Batcher(model, ThreadPoolExecutor(1), max_batch=6)
    b.warm_up(lambda n: np.zeros((n, 2)), repeats=1)
    assert model.sizes == [1, 2, 3, 4, 5, 6]
    assert b.fit.a >= 0 and b.fit.b >= 0


def test_model_errors_reach_every_request_of_the_batch():
    def broken(_x):
        raise RuntimeError("bad weights")

    async def main():
        b = Batcher(broken, ThreadPoolExecutor(1), max_batch=4, max_delay_s=0.01)
        b.start()
        res = await asyncio.gather(*(b.submit(np.ones((1, 1)), 1) for _ in range(3)),
                                   return_exceptions=True)
        await b.stop()
        return res

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(main()))


def test_adaptive_mode_caps_batches_and_sheds_beyond_the_target():
    now = [0.0]
    b = Batcher(Recorder(), ThreadPoolExecutor(1), max_batch=64, max_delay_s=0.001,
                adaptive=True, target_s=0.050, clock=lambda: now[0])
    b._warm = [(n, 0.001 * n + 0.0025) for n in range(1, 65)]  # t(n) = 1 ms·n + 2.5 ms
    b._refit()
    # A batch may take at most target/2 - max_delay = 24 ms: n <= 21.
    assert b.batch_limit == 21
    b.admit(1)  # an empty queue: predicted 3.5 + 1 ms
    b._queued_rows = 40  # 41 rows: 21 + 20 → 23.5 + 22.5 + delay 1 = 47 ms
    b.admit(1)
    b._queued_rows = 45  # 46 rows: 21 + 21 + 4 → 23.5 + 23.5 + 6.5 + 1 = 54.5 ms > 50
    with pytest.raises(Shed) as err:
        b.admit(1)
    assert err.value.reason == "latency_target" and err.value.retry_after_s > 0.05
    assert "exceeds the target of 50 ms" in err.value.message


def test_a_full_queue_is_shed_in_every_mode():
    b = Batcher(Recorder(), ThreadPoolExecutor(1), max_queue_rows=10)
    b._queued_rows = 10
    with pytest.raises(Shed, match="queue holds 10 rows"):
        b.admit(1)


def test_a_lone_request_runs_at_once_and_batches_form_only_under_load():
    """No waiting when idle; requests arriving while a batch runs form the next batch."""
    model = Recorder(delay_s=0.05)

    async def main():
        b = Batcher(model, ThreadPoolExecutor(1), max_batch=8)  # max_delay 0: the default
        b.start()
        first = asyncio.ensure_future(b.submit(np.ones((1, 1)), 1))
        await asyncio.sleep(0.01)  # the first is running alone; five more arrive
        rest = [asyncio.ensure_future(b.submit(np.ones((1, 1)), 1)) for _ in range(5)]
        await asyncio.gather(first, *rest)
        await b.stop()

    asyncio.run(main())
    assert model.sizes == [1, 5]


def test_cheap_batches_run_on_the_event_loop_and_costly_ones_on_the_executor():
    async def main(inline_s):
        b = Batcher(Recorder(), ThreadPoolExecutor(1), max_batch=4, inline_s=inline_s)
        b.warm_up(lambda n: np.zeros((n, 1)), repeats=1)
        b.start()
        outs = await asyncio.gather(*(b.submit(np.full((1, 1), i), 1) for i in range(10)))
        await b.stop()
        return b, outs

    inline, outs = asyncio.run(main(inline_s=1.0))
    assert inline.inline_batches == 3  # 10 rows in batches of at most 4
    assert [float(o["y"][0, 0]) for o in outs] == [2.0 * i for i in range(10)]
    threaded, _ = asyncio.run(main(inline_s=0.0))
    assert threaded.inline_batches == 0


def test_inline_max_rows_sends_larger_cheap_batches_to_the_executor():
    async def main():
        b = Batcher(Recorder(), ThreadPoolExecutor(1), max_batch=4, inline_s=1.0,
                    inline_max_rows=1)
        b.warm_up(lambda n: np.zeros((n, 1)), repeats=1)
        b.start()
        lone = await b.submit(np.full((1, 1), 7), 1)  # alone: inline
        assert b.inline_batches == 1
        outs = await asyncio.gather(*(b.submit(np.full((1, 1), i), 1) for i in range(8)))
        await b.stop()
        return b, lone, outs

    b, lone, outs = asyncio.run(main())
    assert float(lone["y"][0, 0]) == 14.0
    assert [float(o["y"][0, 0]) for o in outs] == [2.0 * i for i in range(8)]
    # The 8 queued together go to the executor in batches of 4 rows, never inline.
    assert b.inline_batches == 1
