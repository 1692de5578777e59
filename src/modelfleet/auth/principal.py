"""Who a request comes from, once authenticated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ROLES = ("admin", "user")


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["user", "key", "anonymous"]
    id: str  # the user's id, or the key's
    name: str
    role: str  # admin or user
    user_id: str | None = None  # the key's owner, or the user
    rpm: int | None = None
    tpm: int | None = None
    allowed_models: tuple[str, ...] | None = None  # None: every model

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def key_id(self) -> str | None:
        return self.id if self.kind == "key" else None

    def may_use(self, names: list[str]) -> bool:
        """Whether this caller may use a model known by ``names`` (its name and aliases)."""
        return self.allowed_models is None or any(n in self.allowed_models for n in names)


# Auth is off (no user or key exists yet, loopback only): the local operator.
ANONYMOUS = Principal(kind="anonymous", id="anonymous", name="anonymous", role="admin")
# A public route while auth is on: nobody in particular.
PUBLIC = Principal(kind="anonymous", id="public", name="public", role="public")
