"""Turn an ``Authorization: Bearer`` header into a Principal, or refuse it.

A bearer value is an API key (``mf-…``, or a secret imported from elsewhere) or
a JWT. Keys are found by the SHA-256 of the value in one parameterised query
(the raw value never reaches SQL); values that cannot be either (too long,
characters outside the token alphabet) are refused before any lookup. Found
keys and users are cached for a few seconds; revoking a key or disabling a
user drops it from this gateway's cache at once (other replicas follow within
the cache's lifetime).

Auth is on as soon as any user or active key exists (or an admin password is
configured); until then every request is the local operator (``ANONYMOUS``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Iterable

from modelfleet.auth.principal import ANONYMOUS, Principal
from modelfleet.auth.tokens import TokenIssuer
from modelfleet.errors import AuthenticationError
from modelfleet.store import Store
from modelfleet.store.keys_repo import hash_secret
from modelfleet.store.tables import ApiKeyRow

log = logging.getLogger("modelfleet.auth")

MAX_BEARER = 2048
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._~+/=-]+$")
CACHE_S = 5.0
TOUCH_EVERY_S = 60.0


def bearer_of(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The bearer value of raw ASGI headers; None without an Authorization header."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthenticationError("use 'Authorization: Bearer <token or API key>'")
            return token.strip()
    return None


class Authenticator:
    def __init__(self, store: Store, issuer: TokenIssuer, *, admin_configured: bool = False):
        self.store = store
        self.issuer = issuer
        self.enabled = admin_configured
        self._keys: dict[str, tuple[float, Principal | None]] = {}  # by secret hash
        self._users: dict[str, tuple[float, bool]] = {}  # user id → (when, usable)
        self._touched: dict[str, float] = {}
        self._background: set[asyncio.Task[None]] = set()
        # Key lookups under way, by secret hash: when a cached key expires under load,
        # the requests that find it expired wait for one query instead of each sending one.
        self._loading: dict[str, asyncio.Future[Principal | None]] = {}
        self._generation = 0  # bumped by forget(): a lookup begun before is not cached

    async def refresh(self) -> bool:
        """Recount users and keys: auth is on while any exists."""
        users = await self.store.users.count()
        keys = await self.store.keys.count_active()
        self.enabled = self.enabled or bool(users or keys)
        return self.enabled

    def forget(self) -> None:
        """Drop the caches (a key was revoked, a user disabled or removed)."""
        self._generation += 1
        self._keys.clear()
        self._users.clear()
        self._loading.clear()

    async def authenticate(self, bearer: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        if bearer is None:
            raise AuthenticationError("authentication required: send 'Authorization: Bearer "
                                      "<token or API key>'")
        if len(bearer) > MAX_BEARER or not _TOKEN_CHARS.match(bearer):
            raise AuthenticationError("the token or API key is not valid")
        if bearer.count(".") == 2 and bearer.startswith("eyJ"):
            return await self._user(bearer)
        return await self._key(bearer)

    async def _user(self, token: str) -> Principal:
        claims = self.issuer.decode(token)
        now = time.monotonic()
        cached = self._users.get(claims.user_id)
        if cached is None or now - cached[0] > CACHE_S:
            row = None
            try:
                row = await self.store.users.get(claims.user_id)
            except Exception:  # noqa: BLE001 - NotFoundError: the user was removed
                row = None
            cached = (now, row is not None and not row.disabled)
            self._users[claims.user_id] = cached
        if not cached[1]:
            raise AuthenticationError("the token's user no longer exists or is disabled",
                                      code="INVALID_TOKEN")
        return Principal(kind="user", id=claims.user_id, name=claims.username,
                         role=claims.role, user_id=claims.user_id)

    async def _key(self, secret: str) -> Principal:
        digest = hash_secret(secret)
        now = time.monotonic()
        cached = self._keys.get(digest)
        if cached is None or now - cached[0] > CACHE_S:
            loading = self._loading.get(digest)
            if loading is None:
                loading = asyncio.ensure_future(self._load_key(digest, secret, now))
                self._loading[digest] = loading
                loading.add_done_callback(lambda done: self._loaded(digest, done))
            # Shielded: a caller that gives up does not cancel the others' lookup.
            principal = await asyncio.shield(loading)
        else:
            principal = cached[1]
        if principal is None:
            raise AuthenticationError("the API key is not valid", code="INVALID_API_KEY")
        self._touch(principal.id, now)
        return principal

    async def _load_key(self, digest: str, secret: str, now: float) -> Principal | None:
        generation = self._generation
        row = await self.store.keys.get_by_secret(secret)
        principal = self._principal_of(row) if row is not None else None
        if generation == self._generation:  # not forgotten meanwhile
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[digest] = (now, principal)
        return principal

    def _loaded(self, digest: str, done: asyncio.Future[Principal | None]) -> None:
        if self._loading.get(digest) is done:
            del self._loading[digest]
        if not done.cancelled():
            done.exception()  # retrieved here too, in case every waiter has left

    @staticmethod
    def _principal_of(row: ApiKeyRow) -> Principal:
        return Principal(
            kind="key", id=row.id, name=row.name, role=row.role, user_id=row.owner_id,
            rpm=row.rpm, tpm=row.tpm,
            allowed_models=tuple(row.allowed_models) if row.allowed_models is not None else None)

    def _touch(self, key_id: str, now: float) -> None:
        """Record the key's use, at most once a minute, off the request path."""
        if now - self._touched.get(key_id, -TOUCH_EVERY_S) < TOUCH_EVERY_S:
            return
        self._touched[key_id] = now
        task = asyncio.ensure_future(self._touch_now(key_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _touch_now(self, key_id: str) -> None:
        try:
            await self.store.keys.touch_last_used(key_id)
        except Exception as exc:  # noqa: BLE001 - bookkeeping only
            log.warning("could not record the use of key %s: %s", key_id, exc)


def fingerprint(secret: str) -> str:
    """A short, non-reversible name for a secret, for logs."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]
