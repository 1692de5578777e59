"""Password hashing with argon2 (argon2-cffi's defaults: argon2id, salted).

Hashing and checking cost tens of milliseconds of CPU by design, so the async
helpers run them in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING

from modelfleet.errors import InvalidRequestError

if TYPE_CHECKING:
    from argon2 import PasswordHasher

MIN_LENGTH = 8
MAX_LENGTH = 1024


@functools.cache
def _argon() -> tuple[PasswordHasher, str]:
    """The hasher and a dummy hash, checked when a user does not exist (so a wrong
    name costs what a wrong password does). Made on first use: a gateway whose
    callers use API keys never loads argon2."""
    from argon2 import PasswordHasher

    hasher = PasswordHasher()
    return hasher, hasher.hash("not a password of anyone")


def check_strength(password: str) -> None:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise InvalidRequestError(
            f"a password must have {MIN_LENGTH} to {MAX_LENGTH} characters", param="password")


async def hash_password(password: str) -> str:
    check_strength(password)
    return await asyncio.to_thread(_argon()[0].hash, password)


def verify_password_sync(password_hash: str | None, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    if len(password) > MAX_LENGTH:
        return False
    hasher, dummy = _argon()
    try:
        return hasher.verify(password_hash or dummy, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a None hash (no such user) is checked against a
    dummy, in the same time, and is False."""
    return await asyncio.to_thread(verify_password_sync, password_hash, password)
