"""Password hashing with argon2 (argon2-cffi's defaults: argon2id, salted).

Hashing and checking cost tens of milliseconds of CPU by design, so the async
helpers run them in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from modelfleet.errors import InvalidRequestError

_hasher = PasswordHasher()
MIN_LENGTH = 8
MAX_LENGTH = 1024
# Checked when a user does not exist, so that a wrong name costs what a wrong password does.
_DUMMY = _hasher.hash("not a password of anyone")


def check_strength(password: str) -> None:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise InvalidRequestError(
            f"a password must have {MIN_LENGTH} to {MAX_LENGTH} characters", param="password")


async def hash_password(password: str) -> str:
    check_strength(password)
    return await asyncio.to_thread(_hasher.hash, password)


def verify_password_sync(password_hash: str | None, password: str) -> bool:
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(password_hash or _DUMMY, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a None hash (no such user) is checked against a
    dummy, in the same time, and is False."""
    return await asyncio.to_thread(verify_password_sync, password_hash, password)
