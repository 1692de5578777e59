"""JSON Web Tokens for signed-in users: HS256, our issuer and audience, an expiry.

The signing secret is ``auth.jwt_secret`` when configured, else a random one
made at first start and kept in ``data_dir/jwt_secret`` (mode 0600), so tokens
survive a restart. Decoding accepts only HS256 (``alg: none`` and every other
algorithm are refused) and requires ``exp``, ``iat`` and ``sub``.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from modelfleet.errors import AuthenticationError

ALGORITHM = "HS256"
ISSUER = "modelfleet"
AUDIENCE = "modelfleet"
SECRET_FILE = "jwt_secret"


def load_secret(configured: str | None, data_dir: Path) -> str:
    """The configured secret, or the one kept in ``data_dir`` (made on first use)."""
    if configured:
        return configured
    path = data_dir / SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: str
    username: str
    role: str
    expires_at: float


class TokenIssuer:
    def __init__(self, secret: str, ttl_s: int):
        self.secret = secret
        self.ttl_s = ttl_s

    def issue(self, user_id: str, username: str, role: str) -> str:
        now = int(time.time())
        payload = {"sub": user_id, "name": username, "role": role, "iat": now,
                   "exp": now + self.ttl_s, "iss": ISSUER, "aud": AUDIENCE}
        return jwt.encode(payload, self.secret, algorithm=ALGORITHM)

    def decode(self, token: str) -> Claims:
        """The token's claims; AuthenticationError for anything not issued by us and live."""
        try:
            data: dict[str, Any] = jwt.decode(
                token, self.secret, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                options={"require": ["exp", "iat", "sub"]})
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the token has expired", code="TOKEN_EXPIRED") from None
        except jwt.PyJWTError:
            raise AuthenticationError("the token is not valid", code="INVALID_TOKEN") from None
        role = data.get("role")
        if not isinstance(data.get("sub"), str) or role not in ("admin", "user"):
            raise AuthenticationError("the token is not valid", code="INVALID_TOKEN")
        return Claims(data["sub"], str(data.get("name", "")), role, float(data["exp"]))
