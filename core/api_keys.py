"""API keys: their format, hashing, and the queries that create, find and revoke them.

A key reads `rag_<id>_<secret>`. The id is public and finds the row; only a SHA-256 of the
secret is stored, so neither the database nor a log line ever holds a usable key. A fast hash
is enough here because the secret is 256 random bits: slow hashes (bcrypt, scrypt) exist to
make guessing low-entropy passwords expensive, and nobody can enumerate 2**256 secrets, while
a slow hash would add tens of milliseconds to every request. The stored hash is compared with
`hmac.compare_digest`, so the time a comparison takes says nothing about how much matched.

Operators manage keys through `rag keys` (app/cli/keys.py), which talks to the database directly.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import RagError
from core.models import ApiKey, ApiKeyRole, utcnow

KEY_PREFIX = "rag"
_KEY_PATTERN = re.compile(r"^rag_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id (never its secret) and role."""

    key_id: str
    role: str

    def may(self, role: str) -> bool:
        """Admin keys may do everything a query key may."""
        return self.role == ApiKeyRole.ADMIN or self.role == role


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_key(key: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    match = _KEY_PATTERN.match(key.strip())
    return (match.group(1), match.group(2)) if match else None


def secret_matches(secret: str, stored_sha256: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_sha256)


def create_api_key(session: Session, role: str, name: str = "") -> tuple[ApiKey, str]:
    """Store a new key; returns the row and the key itself, which is never stored or shown again."""
    if role not in ApiKeyRole.ALL:
        raise RagError("validation_error", f"role must be one of {', '.join(ApiKeyRole.ALL)}")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)  # 43 characters of base64url, 256 bits
    row = ApiKey(id=key_id, name=name[:128], role=role, secret_sha256=hash_secret(secret))
    session.add(row)
    session.flush()
    return row, f"{KEY_PREFIX}_{key_id}_{secret}"


def list_api_keys(session: Session) -> Sequence[ApiKey]:
    return session.scalars(select(ApiKey).order_by(ApiKey.created_at)).all()


def revoke_api_key(session: Session, key_id: str) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise RagError("api_key_not_found", f"no API key with id {key_id!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def key_count(session: Session) -> int:
    """Keys ever created, revoked ones included: once an operator has made a key the service
    stays closed, so revoking the last key (say, a leaked one) never opens it to everyone."""
    return int(session.scalar(select(func.count()).select_from(ApiKey)) or 0)


def active_key(session: Session, key_id: str) -> ApiKey | None:
    row = session.get(ApiKey, key_id)
    return row if row is not None and row.revoked_at is None else None


def authenticate(session: Session, key: str) -> Principal | None:
    """The principal of a valid, unrevoked key, else None (uncached; see app/auth.py)."""
    parsed = parse_key(key)
    if parsed is None:
        return None
    row = active_key(session, parsed[0])
    if row is None or not secret_matches(parsed[1], row.secret_sha256):
        return None
    return Principal(row.id, row.role)
