"""Admin tokens of the team dashboard (``shoestring ui``): created once, stored hashed.

The dashboard shows billing data, so beyond loopback every request must carry
an admin token. Like API keys (serve/keys.py), a token is 32 random bytes
(``sst_`` + 43 URL-safe characters) and only its SHA-256 is stored: a secret
that random cannot be brute-forced from its hash, so a fast hash is enough
(OWASP Password Storage Cheat Sheet keeps slow hashes for human passwords).
The secret is returned once by :meth:`AdminTokens.create` and never stored,
logged or shown again; comparison is by hash lookup, never by the secret.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from shoestring.errors import ShoestringError
from shoestring.ledger.db import Base

TOKEN_PREFIX = "sst_"
SHOWN_CHARS = 11      # "sst_" + 7 characters: enough to tell tokens apart in a listing


class AdminTokenRow(Base):
    """A dashboard admin token; only the SHA-256 of the secret is stored."""

    __tablename__ = "ui_admin_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[str] = mapped_column(String(40))
    revoked_at: Mapped[str | None] = mapped_column(String(40), nullable=True)


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class AdminTokens:
    """Create, list, revoke and check admin tokens in the ledger at ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, label: str = "") -> tuple[str, dict[str, Any]]:
        """(secret, info): the secret is shown to the caller once and not kept."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = AdminTokenRow(id=secrets.token_hex(8), token_hash=hash_token(secret),
                            prefix=secret[:SHOWN_CHARS], label=label, created_at=_now())
        with Session(self.engine) as s, s.begin():
            s.add(row)
            info = _info(row)
        return secret, info

    def list(self) -> list[dict[str, Any]]:
        with Session(self.engine) as s:
            return [_info(r) for r in s.scalars(select(AdminTokenRow)
                                                .order_by(AdminTokenRow.created_at))]

    def revoke(self, token_id: str) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(update(AdminTokenRow).where(
                AdminTokenRow.id == token_id, AdminTokenRow.revoked_at.is_(None))
                .values(revoked_at=_now())).rowcount
        if not done:
            raise ShoestringError(f"no active admin token with id {token_id!r}",
                                  hint="see 'shoestring ui token list'")

    def check(self, secret: str | None) -> bool:
        """Is ``secret`` an active token? (Looked up by hash.)"""
        if not secret or not secret.startswith(TOKEN_PREFIX):
            return False
        with self.engine.connect() as conn:
            found = conn.execute(select(AdminTokenRow.id).where(
                AdminTokenRow.token_hash == hash_token(secret),
                AdminTokenRow.revoked_at.is_(None))).first()
        return found is not None

    def any_active(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(AdminTokenRow.id)
                                .where(AdminTokenRow.revoked_at.is_(None))).first() is not None


def _info(r: AdminTokenRow) -> dict[str, Any]:
    return {"id": r.id, "prefix": r.prefix, "label": r.label, "created_at": r.created_at,
            "revoked_at": r.revoked_at, "active": r.revoked_at is None}
