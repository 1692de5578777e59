"""UsersRepo and KeysRepo on both backends: secrets are shown once and stored hashed."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from modelfleet.errors import ConflictError, InvalidRequestError, NotFoundError
from modelfleet.store import Store


async def test_users_create_get_list_and_change(store: Store) -> None:
    admin = await store.users.create("admin", "argon2$one", role="admin")
    await store.users.create("bob", "argon2$two")
    assert admin.id.startswith("user-") and admin.role == "admin" and not admin.disabled
    assert [u.username for u in await store.users.list()] == ["admin", "bob"]
    assert await store.users.count() == 2

    await store.users.set_password(admin.id, "argon2$new")
    found = await store.users.get_by_username("admin")
    assert found is not None and found.password_hash == "argon2$new"
    assert await store.users.get_by_username("nobody") is None

    await store.users.set_disabled(admin.id)
    assert (await store.users.get(admin.id)).disabled and await store.users.count() == 1
    assert "password_hash" not in admin.to_api()


async def test_users_refuse_duplicates_bad_roles_and_unknown_ids(store: Store) -> None:
    await store.users.create("ann", "h")
    with pytest.raises(ConflictError) as caught:
        await store.users.create("ann", "h2")
    assert caught.value.code == "USER_ALREADY_EXISTS"
    with pytest.raises(InvalidRequestError):
        await store.users.create("carl", "h", role="root")
    with pytest.raises(NotFoundError):
        await store.users.get("user-nope")
    with pytest.raises(NotFoundError):
        await store.users.set_password("user-nope", "h")


async def test_key_secret_is_shown_once_and_stored_only_hashed(store: Store) -> None:
    owner = await store.users.create("ann", "h")
    row, secret = await store.keys.create(owner.id, "ci", allowed_models=["m"], rpm=60)
    assert secret.startswith("mf-") and len(secret) == 3 + 43
    assert row.prefix == secret[:10]
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()

    async with store.db.read() as s:
        stored = (await s.execute(text("SELECT * FROM api_keys"))).one()
    assert all(secret not in str(value) for value in stored)
    assert secret not in repr(row.to_api()) and row.secret_hash not in repr(row.to_api())

    found = await store.keys.get_by_secret(secret)
    assert found is not None and found.id == row.id
    assert found.allowed_models == ["m"] and found.rpm == 60
    assert await store.keys.get_by_secret(secret + "x") is None
    assert await store.keys.get_by_secret("") is None


@pytest.mark.parametrize(
    "bearer", ["x' OR '1'='1", "mf-x' OR '1'='1' --", "' OR 1=1; DROP TABLE api_keys; --"]
)
async def test_key_lookup_of_injection_looking_values_finds_nothing(
    store: Store, bearer: str
) -> None:
    await store.keys.create(None, "one")
    assert await store.keys.get_by_secret(bearer) is None
    assert len(await store.keys.list()) == 1  # and the table is intact


async def test_revoked_expired_and_disabled_owner_keys_find_nothing(store: Store) -> None:
    owner = await store.users.create("ann", "h")
    revoked, revoked_secret = await store.keys.create(owner.id, "revoked")
    _, expired_secret = await store.keys.create(
        owner.id, "expired", expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    _, future_secret = await store.keys.create(
        None, "future", expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    _, owned_secret = await store.keys.create(owner.id, "owned")

    first = await store.keys.revoke(revoked.id)
    assert (await store.keys.revoke(revoked.id)).revoked_at == first.revoked_at
    assert await store.keys.get_by_secret(revoked_secret) is None
    assert await store.keys.get_by_secret(expired_secret) is None
    assert await store.keys.get_by_secret(future_secret) is not None
    assert await store.keys.get_by_secret(owned_secret) is not None
    assert await store.keys.count_active() == 2

    await store.users.set_disabled(owner.id)
    assert await store.keys.get_by_secret(owned_secret) is None
    with pytest.raises(NotFoundError):
        await store.keys.revoke("key-nope")


async def test_key_list_touch_and_imported_secrets(store: Store) -> None:
    owner = await store.users.create("ann", "h")
    kept, _ = await store.keys.create(owner.id, "kept")
    gone, _ = await store.keys.create(None, "gone")
    await store.keys.revoke(gone.id)
    assert [k.id for k in await store.keys.list()] == [kept.id]
    assert {k.id for k in await store.keys.list(include_revoked=True)} == {kept.id, gone.id}
    assert [k.id for k in await store.keys.list(owner.id)] == [kept.id]

    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    await store.keys.touch_last_used(kept.id, at)
    await store.keys.touch_last_used("key-nope")  # unknown: no error
    assert (await store.keys.get(kept.id)).last_used_at == at

    imported, secret = await store.keys.create(None, "from-flag", secret="sk-from-the-flag")
    assert secret == "sk-from-the-flag" and imported.prefix == "sk-from-th"
    assert (await store.keys.get_by_secret("sk-from-the-flag")) is not None
    with pytest.raises(ConflictError):
        await store.keys.create(None, "again", secret="sk-from-the-flag")
    with pytest.raises(InvalidRequestError):
        await store.keys.create(None, "short", secret="abc")
