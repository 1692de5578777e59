"""Users and API keys: who may call the gateway.

Passwords arrive here already hashed (argon2, by the auth layer): the store never holds
one in the clear. API key secrets are ``mf-<43 url-safe chars>``, returned once by
``KeysRepo.create`` and stored only as their SHA-256. An unsalted fast hash is enough
for 256 random bits (no dictionary to try), and it lets a bearer value be found with one
indexed, parameterised equality lookup: the raw value never reaches SQL.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from modelfleet.errors import ConflictError, InvalidRequestError, NotFoundError
from modelfleet.store.db import Database
from modelfleet.store.tables import ROLES, ApiKeyRow, UserRow, utcnow

SECRET_PREFIX = "mf-"
PREFIX_CHARS = 10  # "mf-" and 7 more: enough to tell keys apart in a listing


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


class UsersRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, username: str, password_hash: str, *, role: str = "user") -> UserRow:
        """Add a user; ConflictError (``USER_ALREADY_EXISTS``) when the name is taken."""
        if role not in ROLES:
            raise InvalidRequestError(f"role must be one of {', '.join(ROLES)}", param="role")
        if not username:
            raise InvalidRequestError("username is required", param="username")
        row = UserRow(username=username, password_hash=password_hash, role=role)
        try:
            async with self.db.write() as s:
                s.add(row)
        except IntegrityError as exc:
            raise ConflictError(f"user {username!r} already exists",
                                code="USER_ALREADY_EXISTS", param="username") from exc
        return row

    async def get(self, user_id: str) -> UserRow:
        async with self.db.read() as s:
            row = await s.get(UserRow, user_id)
        if row is None:
            raise NotFoundError(f"user {user_id!r} does not exist", code="USER_NOT_FOUND")
        return row

    async def get_by_username(self, username: str) -> UserRow | None:
        """The user of that name, disabled or not (the caller decides), or None."""
        async with self.db.read() as s:
            return (await s.scalars(select(UserRow).where(UserRow.username == username))).first()

    async def list(self) -> Sequence[UserRow]:
        async with self.db.read() as s:
            return (await s.scalars(select(UserRow).order_by(UserRow.username))).all()

    async def count(self) -> int:
        """How many enabled users exist (auth is on as soon as there is one)."""
        async with self.db.read() as s:
            query = select(func.count()).select_from(UserRow).where(UserRow.disabled.is_(False))
            return int(await s.scalar(query) or 0)

    async def set_password(self, user_id: str, password_hash: str) -> None:
        await self._set(user_id, password_hash=password_hash)

    async def set_role(self, user_id: str, role: str) -> None:
        if role not in ROLES:
            raise InvalidRequestError(f"role must be one of {', '.join(ROLES)}", param="role")
        await self._set(user_id, role=role)

    async def set_disabled(self, user_id: str, disabled: bool = True) -> None:
        await self._set(user_id, disabled=disabled)

    async def _set(self, user_id: str, **values: object) -> None:
        async with self.db.write() as s:
            done = await s.execute(update(UserRow).where(UserRow.id == user_id).values(**values))
            if not getattr(done, "rowcount", 0):
                raise NotFoundError(f"user {user_id!r} does not exist", code="USER_NOT_FOUND")


class KeysRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        owner_id: str | None,
        name: str,
        *,
        allowed_models: Sequence[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        expires_at: datetime | None = None,
        secret: str | None = None,
        role: str = "user",
    ) -> tuple[ApiKeyRow, str]:
        """A new key and its secret, which is never retrievable again.

        ``secret`` imports a key declared elsewhere (a flag, a config file) instead of
        generating one; it is stored hashed all the same.
        """
        if role not in ROLES:
            raise InvalidRequestError(f"role must be one of {', '.join(ROLES)}", param="role")
        if secret is not None and len(secret) < 8:
            raise InvalidRequestError("an API key must be 8 characters or more", param="secret")
        secret = secret or new_secret()
        row = ApiKeyRow(
            name=name,
            prefix=secret[:PREFIX_CHARS],
            secret_hash=hash_secret(secret),
            role=role,
            owner_id=owner_id,
            allowed_models=list(allowed_models) if allowed_models is not None else None,
            rpm=rpm,
            tpm=tpm,
            expires_at=expires_at,
        )
        try:
            async with self.db.write() as s:
                s.add(row)
        except IntegrityError as exc:  # that secret is stored already, or no such owner
            raise ConflictError("the key cannot be stored (duplicate secret or unknown owner)",
                                code="API_KEY_CONFLICT") from exc
        return row, secret

    async def get_by_secret(self, secret: str) -> ApiKeyRow | None:
        """The key whose secret this is, if it is usable now: not revoked, not expired,
        and its owner (if any) not disabled. Anything else is None, never an error."""
        now = utcnow()
        query = (
            select(ApiKeyRow)
            .outerjoin(UserRow, ApiKeyRow.owner_id == UserRow.id)
            .where(
                ApiKeyRow.secret_hash == hash_secret(secret),
                ApiKeyRow.revoked_at.is_(None),
                or_(ApiKeyRow.expires_at.is_(None), ApiKeyRow.expires_at > now),
                or_(UserRow.id.is_(None), UserRow.disabled.is_(False)),
            )
        )
        async with self.db.read() as s:
            return (await s.scalars(query)).first()

    async def get(self, key_id: str) -> ApiKeyRow:
        async with self.db.read() as s:
            row = await s.get(ApiKeyRow, key_id)
        if row is None:
            raise NotFoundError(f"API key {key_id!r} does not exist", code="API_KEY_NOT_FOUND")
        return row

    async def list(
        self, owner_id: str | None = None, *, include_revoked: bool = False
    ) -> Sequence[ApiKeyRow]:
        """Keys, newest first; rows hold no secret (``to_api`` shows neither it nor its hash)."""
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at.desc(), ApiKeyRow.id)
        if owner_id is not None:
            query = query.where(ApiKeyRow.owner_id == owner_id)
        if not include_revoked:
            query = query.where(ApiKeyRow.revoked_at.is_(None))
        async with self.db.read() as s:
            return (await s.scalars(query)).all()

    async def count_active(self) -> int:
        now = utcnow()
        query = select(func.count()).select_from(ApiKeyRow).where(
            ApiKeyRow.revoked_at.is_(None),
            or_(ApiKeyRow.expires_at.is_(None), ApiKeyRow.expires_at > now),
        )
        async with self.db.read() as s:
            return int(await s.scalar(query) or 0)

    async def revoke(self, key_id: str) -> ApiKeyRow:
        """Revoke a key (revoking twice keeps the first time); NotFoundError if unknown."""
        async with self.db.write() as s:
            row = await s.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFoundError(f"API key {key_id!r} does not exist",
                                    code="API_KEY_NOT_FOUND")
            row.revoked_at = row.revoked_at or utcnow()
        return row

    async def touch_last_used(self, key_id: str, at: datetime | None = None) -> None:
        """Record a use; one UPDATE, no read, and no error for an unknown key."""
        async with self.db.write() as s:
            await s.execute(
                update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=at or utcnow())
            )
