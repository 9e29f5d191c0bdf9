"""Key checks are cached, shared by concurrent requests, and refreshed ahead of expiry."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from shoestring.serve.auth import Authenticator
from shoestring.serve.keys import KeyStore
from shoestring.serve.plans import load_plans
from shoestring.serve.protocol import ProtocolError


class CountingKeys:
    """A real key store that counts its lookups."""

    def __init__(self, store: KeyStore) -> None:
        self.store, self.lookups = store, 0
        self.lock = threading.Lock()

    def lookup(self, secret):
        with self.lock:
            self.lookups += 1
        return self.store.lookup(secret)

    def budget_nano_usd(self, project):
        return self.store.budget_nano_usd(project)


@pytest.fixture
def store(db_url):
    from shoestring.ledger.db import open_ledger

    return KeyStore(open_ledger(db_url), load_plans())


def test_concurrent_misses_share_one_lookup_and_busy_keys_never_wait(store):
    secret, info = store.create(project="acme", plan="pro")
    keys, now = CountingKeys(store), [0.0]
    auth = Authenticator(keys, load_plans(), ThreadPoolExecutor(4), 10.0, lambda: now[0])
    header = f"Bearer {secret}"

    async def main():
        who = await asyncio.gather(*(auth.authenticate(header) for _ in range(20)))
        assert {w.key.id for w in who} == {info.id} and keys.lookups == 1
        now[0] = 5.0
        assert auth.cached(header).key.id == info.id and keys.lookups == 1  # fresh enough
        now[0] = 8.0  # past 75% of the 10 s: served from the cache, refreshed behind it
        assert auth.cached(header).key.id == info.id
        assert auth.cached(header).key.id == info.id  # one refresh, not one per request
        await asyncio.sleep(0.2)
        assert keys.lookups == 2
        store.revoke(info.id)
        now[0] = 18.5  # the refreshed entry (from t=8) holds until t=18
        assert auth.cached(header) is None  # expired: must be looked up again
        with pytest.raises(ProtocolError, match="revoked"):
            await auth.authenticate(header)

    asyncio.run(main())


def test_an_unreachable_key_store_is_a_503(store):
    class Down:
        def lookup(self, secret):
            raise RuntimeError("connection refused")

    auth = Authenticator(Down(), load_plans(), ThreadPoolExecutor(1), 2.0, lambda: 0.0)
    with pytest.raises(ProtocolError) as err:
        asyncio.run(auth.authenticate("Bearer ss_x"))
    assert err.value.status == 503 and err.value.headers == {"Retry-After": "1"}
