from shoestring.serve.ratelimit import RateLimiter, TokenBucket, retry_after_header


def test_a_bucket_allows_its_burst_then_its_rate():
    b = TokenBucket(rate=2.0, burst=3, tokens=3.0, stamp=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(0.0) == 0.5  # one token refills in 1/rate seconds
    assert b.take(0.5) == 0.0
    assert b.take(100.0) == 0.0 and b.tokens == 2.0  # refill stops at the burst


def test_the_limiter_keeps_one_bucket_per_key():
    now = [0.0]
    lim = RateLimiter(lambda: now[0])
    assert lim.take("a", 1.0, 1) == 0.0
    assert lim.take("a", 1.0, 1) > 0
    assert lim.take("b", 1.0, 1) == 0.0  # another key is not affected
    now[0] = 1.0
    assert lim.take("a", 1.0, 1) == 0.0


def test_retry_after_is_whole_seconds_at_least_one():
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(2.2) == "3"
