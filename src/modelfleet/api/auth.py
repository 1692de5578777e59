"""Sign-in, API keys and users, under /api and /api/v1.

- ``POST /auth/token``: ``{username, password}`` as JSON (or an OAuth2 password
  form) → ``{access_token, token_type: "bearer", expires_in}``. Ten failed tries
  for one user name within a minute make the next ones wait (429).
- ``GET /auth/me``: who the caller is.
- ``POST /keys`` → the key with its ``key`` secret, shown this once; ``GET /keys``,
  ``GET /keys/{id}``, ``DELETE /keys/{id}`` (revokes it at once).
- ``POST /users``, ``GET /users``, ``PUT /users/{id}`` (password, role, disabled).

The role each route needs is in ``auth/policy.py``.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from modelfleet.api.core import CoreDep
from modelfleet.auth.passwords import hash_password, verify_password
from modelfleet.auth.principal import Principal
from modelfleet.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    RateLimitedError,
)

router = APIRouter(tags=["auth"])

FAILURES_PER_MINUTE = 10
_failures: dict[str, deque[float]] = defaultdict(deque)


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1024)


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("key", min_length=1, max_length=200)
    role: Literal["user", "admin"] = "user"
    allowed_models: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None, max_length=1000)
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    expires_at: datetime | None = None
    expires_in_days: float | None = Field(None, gt=0, le=3650)
    owner_id: str | None = Field(None, max_length=64)


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=1024)
    role: Literal["user", "admin"] = "user"


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str | None = Field(None, min_length=8, max_length=1024)
    role: Literal["user", "admin"] | None = None
    disabled: bool | None = None


def caller(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def _throttle(username: str) -> None:
    now = time.monotonic()
    tries = _failures[username]
    while tries and now - tries[0] > 60:
        tries.popleft()
    if len(tries) >= FAILURES_PER_MINUTE:
        raise RateLimitedError("too many failed sign-ins for this user; wait a minute",
                               retry_after=60 - (now - tries[0]))
    if len(_failures) > 10_000:
        _failures.clear()


async def _credentials(request: Request) -> TokenRequest:
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        body = (await request.body())[:8192].decode("utf-8", "replace")
        data: Any = {k: v[0] for k, v in parse_qs(body).items()}
    else:
        try:
            data = await request.json()
        except ValueError:
            raise InvalidRequestError("send {\"username\", \"password\"} as JSON") from None
    try:
        return TokenRequest.model_validate(data)
    except ValueError:
        raise InvalidRequestError("username and password are required",
                                  param="username") from None


@router.post("/auth/token")
async def token(request: Request, core: CoreDep) -> dict[str, Any]:
    creds = await _credentials(request)
    _throttle(creds.username)
    user = await core.store.users.get_by_username(creds.username)
    ok = await verify_password(user.password_hash if user else None, creds.password)
    if user is None or not ok or user.disabled:
        _failures[creds.username].append(time.monotonic())
        raise AuthenticationError("wrong user name or password", code="AUTHENTICATION_FAILED")
    _failures.pop(creds.username, None)
    return {"access_token": core.issuer.issue(user.id, user.username, user.role),
            "token_type": "bearer", "expires_in": core.issuer.ttl_s}


@router.get("/auth/me")
async def me(request: Request) -> dict[str, Any]:
    p = caller(request)
    return {"kind": p.kind, "id": p.id, "name": p.name, "role": p.role, "user_id": p.user_id,
            "rpm": p.rpm, "tpm": p.tpm,
            "allowed_models": list(p.allowed_models) if p.allowed_models is not None else None}


@router.post("/keys", status_code=201)
async def create_key(body: KeyCreate, request: Request, core: CoreDep) -> dict[str, Any]:
    expires = body.expires_at
    if body.expires_in_days is not None:
        expires = datetime.now(UTC) + timedelta(days=body.expires_in_days)
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    owner = body.owner_id or caller(request).user_id
    if owner is not None:
        await core.store.users.get(owner)  # 404 for an unknown owner
    row, secret = await core.store.keys.create(
        owner, body.name, allowed_models=body.allowed_models, rpm=body.rpm, tpm=body.tpm,
        expires_at=expires, role=body.role)
    await core.auth.refresh()
    return {**row.to_api(), "key": secret,
            "message": "store this key now: it cannot be shown again"}


@router.get("/keys")
async def list_keys(core: CoreDep, include_revoked: bool = False) -> dict[str, Any]:
    rows = await core.store.keys.list(include_revoked=include_revoked)
    return {"items": [r.to_api() for r in rows], "total": len(rows)}


@router.get("/keys/{key_id}")
async def get_key(key_id: str, core: CoreDep) -> dict[str, Any]:
    return (await core.store.keys.get(key_id)).to_api()


@router.delete("/keys/{key_id}")
async def revoke_key(key_id: str, core: CoreDep) -> dict[str, Any]:
    row = await core.store.keys.revoke(key_id)
    core.auth.forget()
    return {"success": True, "message": f"key {row.name!r} revoked", **row.to_api()}


@router.post("/users", status_code=201)
async def create_user(body: UserCreate, core: CoreDep) -> dict[str, Any]:
    row = await core.store.users.create(body.username, await hash_password(body.password),
                                        role=body.role)
    await core.auth.refresh()
    return row.to_api()


@router.get("/users")
async def list_users(core: CoreDep) -> dict[str, Any]:
    rows = await core.store.users.list()
    return {"items": [r.to_api() for r in rows], "total": len(rows)}


async def _keep_an_admin(core: CoreDep, user_id: str, body: UserUpdate) -> None:
    """409 when the change would leave no enabled admin (so nobody could manage)."""
    target = await core.store.users.get(user_id)
    losing = body.disabled is True or body.role == "user"
    if not losing or target.role != "admin" or target.disabled:
        return
    admins = [u for u in await core.store.users.list() if u.role == "admin" and not u.disabled]
    if len(admins) <= 1:
        raise ConflictError("this is the last enabled admin; make another admin first",
                            code="LAST_ADMIN")


@router.put("/users/{user_id}")
async def update_user(user_id: str, body: UserUpdate, core: CoreDep) -> dict[str, Any]:
    await _keep_an_admin(core, user_id, body)
    if body.password is not None:
        await core.store.users.set_password(user_id, await hash_password(body.password))
    if body.role is not None:
        await core.store.users.set_role(user_id, body.role)
    if body.disabled is not None:
        await core.store.users.set_disabled(user_id, body.disabled)
    core.auth.forget()
    return (await core.store.users.get(user_id)).to_api()
