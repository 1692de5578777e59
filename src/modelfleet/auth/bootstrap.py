"""The first admin, and the rule that a gateway reachable from the network has auth on.

``auth.admin_password`` (``MODELFLEET_ADMIN_PASSWORD``) creates the user
``auth.admin_user`` at start when it does not exist yet; an existing user keeps
its password (change it through the API or ``modelfleet admin create --reset``).
"""

from __future__ import annotations

import logging

from modelfleet.auth.guard import is_loopback
from modelfleet.auth.passwords import hash_password
from modelfleet.errors import ConfigError
from modelfleet.settings import Settings
from modelfleet.store import Store

log = logging.getLogger("modelfleet.auth")


async def ensure_admin(settings: Settings, store: Store) -> None:
    password = settings.auth.admin_password
    if not password:
        return
    if await store.users.get_by_username(settings.auth.admin_user) is not None:
        return
    await store.users.create(settings.auth.admin_user, await hash_password(password),
                             role="admin")
    log.info("created the admin user %r", settings.auth.admin_user)


async def auth_configured(store: Store) -> bool:
    return bool(await store.users.count() or await store.keys.count_active())


def check_bind(settings: Settings, auth_on: bool) -> None:
    """ConfigError when the server would listen beyond loopback with auth off."""
    host = settings.server.host
    if not auth_on and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without authentication: set "
            "MODELFLEET_ADMIN_PASSWORD (or auth.admin_password), or create a user with "
            "'modelfleet admin create', or bind 127.0.0.1")
