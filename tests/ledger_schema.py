"""Compare a database's tables with the ORM classes (a unique module name: tests/ has no packages).

Used by the migration tests: a ledger migrated from empty, and one migrated
from release 0.1, must both have exactly the tables, columns, types,
nullability and indexes the ORM classes describe.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Engine, Float, Integer, MetaData, String, inspect

import shoestring.ledger.run_table  # noqa: F401  (the ORM modules that declare ledger tables)
import shoestring.plan.calibration_store  # noqa: F401
import shoestring.report.admin_tokens  # noqa: F401
import shoestring.serve.tables  # noqa: F401
from shoestring.ledger.db import Base

NOT_ORM = {"schema_version"}  # written by the migrations alone


def _kind(t) -> tuple:
    if isinstance(t, BigInteger):
        return ("bigint",)
    if isinstance(t, Integer):
        return ("int",)
    if isinstance(t, Float):
        return ("float",)
    if isinstance(t, String):
        return ("str", getattr(t, "length", None))
    return (type(t).__name__,)


def orm_schema(metadata: MetaData = Base.metadata) -> dict:
    out = {}
    for table in metadata.sorted_tables:
        cols = {c.name: (_kind(c.type), bool(c.nullable)) for c in table.columns}
        idx = {(tuple(c.name for c in i.columns), bool(i.unique)) for i in table.indexes}
        uniques = {tuple(sorted(c.name for c in con.columns)) for con in table.constraints
                   if con.__class__.__name__ == "UniqueConstraint"}
        out[table.name] = {"columns": cols, "indexes": idx, "unique": uniques}
    return out


def db_schema(engine: Engine) -> dict:
    insp = inspect(engine)
    out = {}
    for name in insp.get_table_names():
        if name in NOT_ORM:
            continue
        cols = {c["name"]: (_kind(c["type"]), bool(c["nullable"]))
                for c in insp.get_columns(name)}
        pk = set(insp.get_pk_constraint(name)["constrained_columns"])
        # Primary keys are NOT NULL whatever the reflection of an SQLite file says.
        cols = {k: (t, n and k not in pk) for k, (t, n) in cols.items()}
        # PostgreSQL also lists the index behind each unique constraint; it is a constraint.
        idx = {(tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(name)
               if not i.get("duplicates_constraint")}
        uniques = {tuple(sorted(u["column_names"])) for u in insp.get_unique_constraints(name)}
        out[name] = {"columns": cols, "indexes": idx, "unique": uniques}
    return out


def schema_differences(engine: Engine) -> list[str]:
    orm, db = orm_schema(), db_schema(engine)
    diffs = [f"table {t} is in the ORM but not in the database" for t in orm.keys() - db.keys()]
    diffs += [f"table {t} is in the database but no ORM class declares it (import its module "
              "in tests/ledger_schema.py)" for t in db.keys() - orm.keys()]
    for t in orm.keys() & db.keys():
        for part in ("columns", "indexes", "unique"):
            a, b = orm[t][part], db[t][part]
            if a != b:
                diffs.append(f"{t}.{part}: ORM {a if not isinstance(a, dict) else dict(sorted((k, v) for k, v in a.items() if b.get(k) != v))} "
                             f"vs database {b if not isinstance(b, dict) else dict(sorted((k, v) for k, v in b.items() if a.get(k) != v))}")
    return diffs
