"""Access control attacked against a running gateway: tokens, keys, roles, every route,
steering fields, Host, header size, and secrets kept out of the logs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import openai
import pytest
import yaml

from modelfleet.api.app import create_app
from modelfleet.auth.policy import required_role
from modelfleet.gateway.proxy import INFERENCE_ROUTES
from modelfleet.settings import Settings
from tests.helpers import (
    Gateway,
    free_port,
    http_ok,
    simulator_model,
    start_gateway,
    wait_until,
)

CANARY_PASSWORD = "canary-Pa55word-7f3e91"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Any:
    gateway = start_gateway(
        tmp_path_factory.mktemp("auth"),
        [simulator_model("sim-a"), simulator_model("sim-b")],
        auth={"admin_password": CANARY_PASSWORD}, log_level="debug")
    yield gateway
    gateway.stop()


def _token(gw: Gateway, username: str = "admin", password: str = CANARY_PASSWORD) -> str:
    r = httpx.post(gw.url + "/api/auth/token", json={"username": username, "password": password},
                   timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    return str(body["access_token"])


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _secret(gw: Gateway) -> str:
    return (gw.data_dir / "jwt_secret").read_text().strip()


def test_public_routes_and_missing_token(gw: Gateway) -> None:
    for path in ("/health", "/health/full", "/check_health"):
        assert httpx.get(gw.url + path, timeout=10).status_code == 200, path
    r = httpx.get(gw.url + "/v1/models", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert r.headers["www-authenticate"].startswith("Bearer")
    with pytest.raises(openai.AuthenticationError):
        gw.client().chat.completions.create(model="sim-a", messages=HI)  # api_key "unused"
    r = httpx.get(gw.url + "/v1/models", headers={"Authorization": "Basic YTpi"}, timeout=10)
    assert r.status_code == 401


def test_sign_in_and_use_the_token(gw: Gateway) -> None:
    bad = httpx.post(gw.url + "/api/auth/token", json={"username": "admin", "password": "no"},
                     timeout=10)
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "AUTHENTICATION_FAILED"
    nobody = httpx.post(gw.url + "/api/auth/token", timeout=10,
                        json={"username": "nobody", "password": CANARY_PASSWORD})
    assert nobody.status_code == 401
    form = httpx.post(gw.url + "/api/v1/auth/token", timeout=10,
                      data={"username": "admin", "password": CANARY_PASSWORD})
    assert form.status_code == 200 and form.json()["access_token"]
    token = _token(gw)
    client = gw.client(api_key=token)
    assert client.chat.completions.create(model="sim-a", messages=HI).choices
    me = httpx.get(gw.url + "/api/auth/me", headers=_h(token), timeout=10).json()
    assert me["role"] == "admin" and me["kind"] == "user" and me["name"] == "admin"


def _forged(gw: Gateway, **change: Any) -> str:
    now = int(time.time())
    claims = {"sub": "x", "name": "admin", "role": "admin", "iat": now, "exp": now + 600,
              "iss": "modelfleet", "aud": "modelfleet"}
    admin_id = httpx.get(gw.url + "/api/auth/me", headers=_h(_token(gw)), timeout=10).json()["id"]
    claims["sub"] = admin_id
    key = change.pop("key", _secret(gw))
    alg = change.pop("alg", "HS256")
    claims.update(change)
    return jwt.encode(claims, key, algorithm=alg)


def test_jwt_attacks_are_refused(gw: Gateway) -> None:
    now = int(time.time())
    good = _forged(gw)  # made with the real secret: accepted (the control)
    assert httpx.get(gw.url + "/v1/models", headers=_h(good), timeout=10).status_code == 200
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    body = jwt.utils.base64url_encode(
        b'{"sub":"x","role":"admin","iat":%d,"exp":%d,"iss":"modelfleet","aud":"modelfleet"}'
        % (now, now + 600)).decode()
    attacks = {
        "expired": _forged(gw, exp=now - 10, iat=now - 100),
        "alg none": f"{header}.{body}.",
        "wrong signature": _forged(gw, key="another-secret-of-at-least-32-bytes!"),
        "wrong audience": _forged(gw, aud="someone-else"),
        "wrong issuer": _forged(gw, iss="someone-else"),
        "HS512": _forged(gw, alg="HS512"),
        "no exp": jwt.encode({"sub": "x", "role": "admin", "iat": now, "iss": "modelfleet",
                              "aud": "modelfleet"}, _secret(gw), algorithm="HS256"),
        "role forged to root": _forged(gw, role="root"),
    }
    for name, token in attacks.items():
        r = httpx.get(gw.url + "/v1/models", headers=_h(token), timeout=10)
        assert r.status_code == 401, (name, r.text)
    expired = httpx.get(gw.url + "/v1/models", headers=_h(attacks["expired"]), timeout=10)
    assert expired.json()["error"]["code"] == "TOKEN_EXPIRED"


@pytest.mark.parametrize("value", [
    "' OR '1'='1", "mf-' OR 1=1 --", "mf-abc'; DROP TABLE api_keys; --", "x" * 5000,
    "mf-" + "A" * 43, "%00", "\\x00", "eyJ.eyJ.sig", "admin' --", "1 UNION SELECT secret_hash",
])
def test_sql_looking_bearer_values_are_refused(gw: Gateway, value: str) -> None:
    r = httpx.get(gw.url + "/v1/models", headers={"Authorization": f"Bearer {value}"},
                  timeout=10)
    assert r.status_code == 401, r.text
    # the keys table is intact: a real key still works afterwards
    assert httpx.get(gw.url + "/api/keys", headers=_h(_token(gw)), timeout=10).status_code == 200


def _flatten(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(full path, route) of every route, included routers opened."""
    for route in routes:
        context = getattr(route, "include_context", None)
        if context is not None:
            yield from _flatten(context.included_router.routes, prefix + context.prefix)
        else:
            yield prefix + getattr(route, "path", ""), route


def _route_table() -> list[tuple[str, str]]:
    """Every (method, path) the app serves, path parameters filled in."""
    app = create_app(Settings(data_dir=Path("/nonexistent")))
    out = [("POST", path) for path in INFERENCE_ROUTES]
    for path, route in _flatten(app.api.routes):
        if path == "/{path:path}":
            out += [("POST", "/v1/anything"), ("GET", "/v1/anything"), ("POST", "/tokenize")]
            continue
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method == "HEAD":
                continue
            filled = path.replace(":path}", "}").replace("{model_id}", "sim-a")
            filled = filled.replace("{alias}", "sim-a")
            filled = filled.replace("{task_id}", "task-x").replace("{key_id}", "key-x")
            filled = filled.replace("{user_id}", "user-x").replace("{model_alias}", "sim-a")
            out.append((method, filled))
    return out


def test_every_route_is_guarded(gw: Gateway) -> None:
    settings = Settings(data_dir=Path("/nonexistent"))
    table = _route_table()
    assert len(table) > 50
    user = httpx.post(gw.url + "/api/users", headers=_h(_token(gw)), timeout=10,
                      json={"username": "walker", "password": "walker-password", "role": "user"})
    assert user.status_code in (201, 409), user.text
    user_token = _token(gw, "walker", "walker-password")
    public, admin_only = [], []
    for method, path in table:
        role = required_role(method, path, settings.auth)
        r = httpx.request(method, gw.url + path, timeout=30)
        if role is None:
            public.append(path)
            assert r.status_code != 401, (method, path)
            continue
        assert r.status_code == 401, (method, path, r.status_code, r.text[:200])
        if role == "admin":
            admin_only.append(path)
            r = httpx.request(method, gw.url + path, headers=_h(user_token), timeout=30)
            assert r.status_code == 403, (method, path, r.status_code, r.text[:200])
    assert set(public) >= {"/health", "/check_health", "/api/auth/token"}
    assert {"/api/keys", "/api/config", "/api/models"} <= set(admin_only)


def test_keys_roles_and_allowed_models(gw: Gateway) -> None:
    admin = _h(_token(gw))
    r = httpx.post(gw.url + "/api/keys", headers=admin, timeout=10,
                   json={"name": "ci", "allowed_models": ["sim-a"], "rpm": 1000})
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["key"]
    assert secret.startswith("mf-") and created["role"] == "user" and "store" in created["message"]
    listed = httpx.get(gw.url + "/api/keys", headers=admin, timeout=10).json()["items"]
    assert secret not in str(listed) and any(k["id"] == created["id"] for k in listed)
    client = gw.client(api_key=secret)
    assert client.chat.completions.create(model="sim-a", messages=HI).choices
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(model="sim-b", messages=HI)
    assert denied.value.body["code"] == "MODEL_NOT_ALLOWED"  # type: ignore[index]
    r = httpx.post(gw.url + "/api/models/sim-b/generate", headers=_h(secret), timeout=30,
                   json={"prompt": "x"})
    assert r.status_code == 403
    # a user key may read but not manage
    assert httpx.get(gw.url + "/api/models", headers=_h(secret), timeout=10).status_code == 200
    r = httpx.post(gw.url + "/api/models", headers=_h(secret), timeout=10,
                   json={"name": "x", "framework": "simulator", "model": "x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "ADMIN_REQUIRED"
    assert httpx.get(gw.url + "/api/keys", headers=_h(secret), timeout=10).status_code == 403
    # an admin key may manage
    r = httpx.post(gw.url + "/api/keys", headers=admin, timeout=10,
                   json={"name": "ops", "role": "admin", "expires_in_days": 1})
    ops = r.json()["key"]
    assert httpx.get(gw.url + "/api/keys", headers=_h(ops), timeout=10).status_code == 200
    # revocation applies at once
    r = httpx.delete(gw.url + f"/api/keys/{created['id']}", headers=admin, timeout=10)
    assert r.status_code == 200
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="sim-a", messages=HI)
    # an expired key is refused
    r = httpx.post(gw.url + "/api/keys", headers=admin, timeout=10,
                   json={"name": "old", "expires_at": "2020-01-01T00:00:00Z"})
    assert r.status_code == 201
    old = r.json()["key"]
    assert httpx.get(gw.url + "/v1/models", headers=_h(old), timeout=10).status_code == 401


def test_users_roles(gw: Gateway) -> None:
    admin = _h(_token(gw))
    r = httpx.post(gw.url + "/api/users", headers=admin, timeout=10,
                   json={"username": "ann", "password": "ann-password", "role": "user"})
    assert r.status_code == 201, r.text
    ann_id = r.json()["id"]
    assert "password" not in r.text
    ann = _h(_token(gw, "ann", "ann-password"))
    assert gw.client(api_key=ann["Authorization"][7:]).chat.completions.create(
        model="sim-a", messages=HI).choices
    assert httpx.get(gw.url + "/api/config", headers=ann, timeout=10).status_code == 200
    r = httpx.put(gw.url + "/api/config", headers=ann, json={"log_level": "INFO"}, timeout=10)
    assert r.status_code == 403
    r = httpx.put(gw.url + f"/api/users/{ann_id}", headers=admin, json={"disabled": True},
                  timeout=10)
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert httpx.get(gw.url + "/v1/models", headers=ann, timeout=10).status_code == 401


def test_steering_fields_are_refused(gw: Gateway) -> None:
    h = _h(_token(gw))
    for extra in ({"api_base": "http://169.254.169.254"}, {"base_url": "http://evil"},
                  {"metadata": {"api_key": "sk-x"}},
                  {"messages": [{"role": "user", "content": "hi", "api_base": "x"}]}):
        body = {"model": "sim-a", "messages": HI, **extra}
        r = httpx.post(gw.url + "/v1/chat/completions", headers=h, json=body, timeout=10)
        assert r.status_code == 400, (extra, r.text)
        assert r.json()["error"]["code"] == "FORBIDDEN_PARAMETER"
    words = [{"role": "user", "content": "what is an api_key or a base_url?"}]
    r = httpx.post(gw.url + "/v1/chat/completions", headers=h, timeout=30,
                   json={"model": "sim-a", "messages": words})
    assert r.status_code == 200, r.text
    r = httpx.post(gw.url + "/v1/generate", headers=h, timeout=30,
                   json={"model_id": "sim-a", "inputs": "x", "parameters": {"api_key": "k"}})
    assert r.status_code == 400, r.text


def test_host_check_and_header_size(gw: Gateway) -> None:
    port = gw.url.rsplit(":", 1)[1]
    for host in ("evil.example", "evil.example:80", "127.0.0.1.nip.io"):
        r = httpx.get(gw.url + "/health", headers={"Host": host}, timeout=10)
        assert r.status_code == 403 and r.json()["error"]["code"] == "HOST_NOT_ALLOWED", host
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert httpx.get(gw.url + "/health", headers={"Host": host}, timeout=10).status_code \
            == 200
    start = time.monotonic()
    r = httpx.get(gw.url + "/v1/models", headers={"X-Big": "a" * 40_000}, timeout=10)
    assert r.status_code == 431 and time.monotonic() - start < 1
    r = httpx.post(gw.url + "/v1/chat/completions", headers=_h(_token(gw)), timeout=10,
                   json={"model": "sim-a", "messages": HI * 5000})
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]


def test_secrets_never_reach_the_logs(gw: Gateway) -> None:
    admin = _h(_token(gw))
    r = httpx.post(gw.url + "/api/keys", headers=admin, json={"name": "canary"}, timeout=10)
    canary_key = r.json()["key"]
    gw.client(api_key=canary_key).chat.completions.create(model="sim-a", messages=HI)
    httpx.get(gw.url + "/v1/models", headers=_h(canary_key + "x"), timeout=10)  # a failure
    httpx.post(gw.url + "/api/auth/token", timeout=10,
               json={"username": "admin", "password": CANARY_PASSWORD + "-wrong"})
    token = admin["Authorization"][7:]
    texts = [gw.log()] + [p.read_text(errors="replace")
                          for p in (gw.data_dir / "logs").rglob("*") if p.is_file()]
    assert "DEBUG" in gw.log()  # the gateway really logged at debug level
    for text in texts:
        for secret in (CANARY_PASSWORD, canary_key, token, _secret(gw)):
            assert secret not in text


def _serve(tmp: Path, *args: str, env: dict[str, str] | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    config = tmp / "modelfleet.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp / "data"), "models": []}))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MODELFLEET_")}
    return subprocess.run([sys.executable, "-m", "modelfleet", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**clean, **(env or {})})


def test_no_network_bind_without_auth_and_admin_create(tmp_path: Path) -> None:
    refused = _serve(tmp_path, "serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "refusing to listen on 0.0.0.0 without authentication" in refused.stdout

    made = _serve(tmp_path, "admin", "create", "--username", "root",
                  env={"MODELFLEET_ADMIN_PASSWORD": "root-password-1"})
    assert made.returncode == 0 and "created admin 'root'" in made.stdout, made.stdout
    again = _serve(tmp_path, "admin", "create", "--username", "root", "--password", "x" * 9)
    assert again.returncode == 1 and "exists" in again.stdout

    # with a user in the store, the same bind starts, and asks for a token
    port = free_port()
    config = tmp_path / "modelfleet.yaml"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MODELFLEET_")}
    proc = subprocess.Popen([sys.executable, "-m", "modelfleet", "serve", "--host", "0.0.0.0",
                             "--port", str(port), "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(url + "/health"), timeout=60)
        assert httpx.get(url + "/v1/models", timeout=10).status_code == 401
        r = httpx.post(url + "/api/auth/token", timeout=10,
                       json={"username": "root", "password": "root-password-1"})
        assert r.status_code == 200
        # bound beyond loopback: any Host is fine (auth is what protects it)
        r = httpx.get(url + "/health", headers={"Host": "gpu-box.example"}, timeout=10)
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)


def test_cli_and_sdk_carry_the_token(gw: Gateway) -> None:
    from modelfleet.client import AuthenticationError, LLMInferenceClient

    token = _token(gw)
    base = [sys.executable, "-m", "modelfleet", "models", "list", "--url", gw.url]
    denied = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert denied.returncode == 1 and "UNAUTHORIZED" in denied.stdout, denied.stdout
    ok = subprocess.run([*base, "--token", token], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "sim-a" in ok.stdout, ok.stdout + ok.stderr
    env = {**os.environ, "MODELFLEET_TOKEN": token}
    ok = subprocess.run(base, capture_output=True, text=True, timeout=60, env=env)
    assert ok.returncode == 0 and "sim-b" in ok.stdout
    assert LLMInferenceClient(gw.url, api_token=token).list_models().total >= 2
    with pytest.raises(AuthenticationError):
        LLMInferenceClient(gw.url, api_token="mf-wrong").list_models()


def test_cors_per_config(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, [simulator_model("sim-a")],
                       server={"cors_origins": ["http://app.example"]})
    try:
        preflight = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"}
        r = httpx.options(gw.url + "/v1/chat/completions", headers=preflight, timeout=10)
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == "http://app.example"
        r = httpx.options(gw.url + "/v1/chat/completions", timeout=10,
                          headers={**preflight, "Origin": "http://evil.example"})
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
        r = httpx.post(gw.url + "/v1/chat/completions", timeout=30,
                       headers={"Origin": "http://app.example"},
                       json={"model": "sim-a", "messages": HI})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://app.example"
    finally:
        gw.stop()
    gw = start_gateway(tmp_path, [simulator_model("sim-a")])  # no origins: no CORS headers
    try:
        r = httpx.get(gw.url + "/health", headers={"Origin": "http://app.example"}, timeout=10)
        assert "access-control-allow-origin" not in r.headers
    finally:
        gw.stop()
