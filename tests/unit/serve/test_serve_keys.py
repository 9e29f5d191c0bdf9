import sqlite3

import pytest

from shoestring.errors import ShoestringError
from shoestring.ledger.db import open_ledger
from shoestring.serve.keys import KeyStore, hash_key
from shoestring.serve.plans import load_plans


@pytest.fixture
def store(db_url):
    return KeyStore(open_ledger(db_url), load_plans())


def test_only_the_hash_of_a_key_is_stored(store, db_url):
    secret, info = store.create(project="acme", plan="pro", label="web")
    assert secret.startswith("ss_") and len(secret) > 40
    dump = "\n".join(sqlite3.connect(db_url[len("sqlite:///"):]).iterdump())
    assert secret not in dump
    assert hash_key(secret) in dump
    assert store.lookup(secret).id == info.id
    assert store.lookup(secret + "x") is None
    assert store.lookup("not-a-key") is None


def test_list_and_revoke(store):
    s1, k1 = store.create(project="acme", plan="pro")
    _s2, k2 = store.create(project="other", plan="free", monthly_quota_units=5)
    assert sorted(k.id for k in store.list()) == sorted([k1.id, k2.id])
    assert [k.id for k in store.list("other")] == [k2.id]
    revoked = store.revoke(k1.prefix)
    assert revoked.revoked_at is not None and not store.lookup(s1).active
    assert store.revoke(k1.id).revoked_at == revoked.revoked_at  # idempotent
    with pytest.raises(ShoestringError, match="no API key"):
        store.revoke("ss_nothing")


def test_bad_create_arguments_are_all_reported(store):
    with pytest.raises(ShoestringError) as err:
        store.create(project="", plan="gold", monthly_quota_units=-1)
    msg = str(err.value)
    assert "unknown plan 'gold'" in msg and "project name" in msg and "quota" in msg


def test_project_budgets(store):
    store.create(project="acme", plan="pro")
    assert store.budget_nano_usd("acme") is None
    store.set_budget("acme", 12.5)
    assert store.budget_nano_usd("acme") == 12_500_000_000
    store.set_budget("acme", None)
    assert store.budget_nano_usd("acme") is None
    with pytest.raises(ShoestringError):
        store.set_budget("acme", -1)


def test_ledger_files_are_private(tmp_path):
    """Key hashes and stored responses: the ledger and its WAL files are 0600."""
    import stat

    from shoestring.ledger.db import open_ledger

    db = tmp_path / "sub" / "ledger.db"
    engine = open_ledger(f"sqlite:///{db}")
    KeyStore(engine, load_plans()).create(project="acme", plan="free")
    files = [p for p in db.parent.iterdir() if p.name.startswith("ledger.db")]
    assert {p.name for p in files} >= {"ledger.db", "ledger.db-wal"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files), \
        {p.name: oct(p.stat().st_mode) for p in files}
