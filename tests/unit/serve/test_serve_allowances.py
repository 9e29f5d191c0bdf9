"""Leased allowances: a request too large for what is left does not block smaller ones."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from shoestring.ledger.db import open_ledger
from shoestring.serve.allowances import Allowances, Exhausted
from shoestring.serve.ledger_sql import LedgerSql


def test_a_request_larger_than_what_is_left_does_not_refuse_one_that_fits(tmp_path):
    # Completions reserve prompt + max_tokens, which varies per request: a refused large
    # request must leave room for the next, smaller one (a real SQLite ledger).
    sql = LedgerSql(open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}"), "replica-a")
    with ThreadPoolExecutor(1) as pool:
        allowances = Allowances(sql, pool)

        async def main() -> None:
            with pytest.raises(Exhausted):
                await allowances.take("key:k", "2026-11", 55, 40)
            await allowances.take("key:k", "2026-11", 25, 40)
            with pytest.raises(Exhausted):  # 15 left: refused at once, locally or not
                await allowances.take("key:k", "2026-11", 25, 40)
            await allowances.take("key:k", "2026-11", 15, 40)
            with pytest.raises(Exhausted):
                await allowances.take("key:k", "2026-11", 1, 40)

        asyncio.run(main())
