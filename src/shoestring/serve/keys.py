"""API keys: created once, stored as SHA-256 hashes, looked up by hash.

A key is ``ss_`` + 43 URL-safe characters (32 random bytes, 256 bits). Keys
that random cannot be guessed or brute-forced from their hash, so a fast hash
is enough; slow password hashes (bcrypt, Argon2) exist for low-entropy human
passwords (OWASP Password Storage Cheat Sheet). The secret is returned once by
:meth:`KeyStore.create` and never stored, logged or shown again.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from shoestring.errors import ShoestringError
from shoestring.serve.plans import NANO_PER_USD, Plan
from shoestring.serve.tables import ApiKeyRow, ProjectRow

KEY_PREFIX = "ss_"
SHOWN_CHARS = 10  # "ss_" + 7 characters: enough to tell keys apart in a listing


def hash_key(secret: str) -> str:
    """Hex SHA-256 of a key, as stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    """What the server knows about a key (never the secret)."""

    id: str
    prefix: str
    project: str
    plan: str
    label: str
    monthly_quota_units: int | None  # a per-key override of the plan's quota
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def quota(self, plan: Plan) -> int | None:
        return self.monthly_quota_units if self.monthly_quota_units is not None \
            else plan.monthly_quota_units

    def to_dict(self) -> dict:
        return {"id": self.id, "prefix": self.prefix, "project": self.project, "plan": self.plan,
                "label": self.label, "monthly_quota_units": self.monthly_quota_units,
                "created_at": self.created_at, "revoked_at": self.revoked_at,
                "active": self.active}


def _info(row: ApiKeyRow) -> KeyInfo:
    return KeyInfo(id=row.id, prefix=row.prefix, project=row.project, plan=row.plan,
                   label=row.label, monthly_quota_units=row.monthly_quota_units,
                   created_at=row.created_at, revoked_at=row.revoked_at)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class KeyStore:
    """Keys and projects in the serving ledger.

    >>> from shoestring.ledger.db import open_ledger
    >>> from shoestring.serve.plans import load_plans
    >>> store = KeyStore(open_ledger("sqlite:///:memory:"), load_plans())
    >>> secret, info = store.create(project="acme", plan="free")
    >>> store.lookup(secret).id == info.id
    True
    """

    def __init__(self, engine: Engine, plans: dict[str, Plan],
                 now: Callable[[], datetime] = _utc_now) -> None:
        self.engine = engine
        self.plans = plans
        self.now = now

    def create(self, *, project: str, plan: str, label: str = "",
               monthly_quota_units: int | None = None) -> tuple[str, KeyInfo]:
        """A new key for ``project`` on ``plan``: returns (secret, info); the secret once only."""
        problems = []
        if plan not in self.plans:
            problems.append(f"unknown plan {plan!r}")
        if not project or len(project) > 200:
            problems.append(f"project name {project!r} must be 1 to 200 characters")
        if monthly_quota_units is not None and monthly_quota_units < 0:
            problems.append(f"monthly quota {monthly_quota_units} must be >= 0")
        if problems:
            raise ShoestringError("; ".join(problems),
                                  hint=f"plans: {', '.join(sorted(self.plans))}; "
                                  "pass --plans FILE for your own")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        stamp = self.now().isoformat(timespec="seconds")
        row = ApiKeyRow(id=secrets.token_hex(8), key_hash=hash_key(secret),
                        prefix=secret[:SHOWN_CHARS], project=project, plan=plan, label=label,
                        monthly_quota_units=monthly_quota_units, created_at=stamp)
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            if s.get(ProjectRow, project) is None:
                s.add(ProjectRow(name=project, created_at=stamp))
            s.add(row)
        return secret, _info(row)

    def lookup(self, secret: str) -> KeyInfo | None:
        """The key whose secret this is (revoked or not), or None."""
        if not secret.startswith(KEY_PREFIX):
            return None
        with Session(self.engine) as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == hash_key(secret)))
            return _info(row) if row is not None else None

    def list(self, project: str | None = None) -> list[KeyInfo]:
        with Session(self.engine) as s:
            q = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
            if project:
                q = q.where(ApiKeyRow.project == project)
            return [_info(r) for r in s.scalars(q)]

    def revoke(self, key_id: str) -> KeyInfo:
        """Revoke a key by its id or its shown prefix; revoking twice is harmless."""
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            rows = list(s.scalars(select(ApiKeyRow).where(
                (ApiKeyRow.id == key_id) | (ApiKeyRow.prefix == key_id))))
            if not rows:
                raise ShoestringError(f"no API key with id or prefix {key_id!r}",
                                      hint="see 'shoestring keys list'")
            if len(rows) > 1:
                raise ShoestringError(f"{len(rows)} keys share the prefix {key_id!r}",
                                      hint="revoke by id (see 'shoestring keys list')")
            if rows[0].revoked_at is None:
                rows[0].revoked_at = self.now().isoformat(timespec="seconds")
            return _info(rows[0])

    def set_budget(self, project: str, monthly_usd: float | None) -> None:
        """Cap a project's monthly spend (None removes the cap)."""
        if monthly_usd is not None and monthly_usd < 0:
            raise ShoestringError(f"budget {monthly_usd} must be >= 0",
                                  hint="pass dollars, e.g. 50")
        nano = None if monthly_usd is None else round(monthly_usd * NANO_PER_USD)
        with Session(self.engine) as s, s.begin():
            row = s.get(ProjectRow, project)
            if row is None:
                s.add(ProjectRow(name=project, monthly_budget_nano_usd=nano,
                                 created_at=self.now().isoformat(timespec="seconds")))
            else:
                row.monthly_budget_nano_usd = nano

    def budget_nano_usd(self, project: str) -> int | None:
        with Session(self.engine) as s:
            row = s.get(ProjectRow, project)
            return None if row is None else row.monthly_budget_nano_usd
