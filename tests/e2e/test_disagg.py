"""Disaggregated serving through a running gateway, with real simulator processes in
every role (encode, prefill, decode, pd): launched by the gateway (``roles``) and
started by hand (``endpoints``, seed 000's address lists on Unix sockets). Each
simulator's ``/stats`` proves where a request went and what it skipped: encoders run
media, pd and prefill reuse their hashes, decode takes the prefill's KV handle."""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from tests.helpers import Gateway, free_port, simulator_model, start_gateway, wait_until

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet".split()


def _png(colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, format="PNG")
    return out.getvalue()


def _sim(role: str, where: list[str], name: str, *extra: str) -> subprocess.Popen[bytes]:
    """A simulator started by hand, as an operator starts engines for seed 000."""
    return subprocess.Popen([sys.executable, "-m", "modelfleet.engines.simulator", *where,
                             "--role", role, "--served-model-name", name, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(10)


def _stats(address: str) -> dict[str, Any]:
    if address.startswith("ipc://"):
        transport = httpx.HTTPTransport(uds=address.removeprefix("ipc://"))
        with httpx.Client(transport=transport) as client:
            return client.get("http://localhost/stats", timeout=10).json()  # type: ignore[no-any-return]
    return httpx.get(address + "/stats", timeout=10).json()  # type: ignore[no-any-return]


def by_role(gw: Gateway, model: str) -> dict[str, list[dict[str, Any]]]:
    """Each instance's simulator stats, by role, in a stable order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for inst in sorted(gw.info(model)["instances"], key=lambda i: i["address"]):
        out.setdefault(inst["role"], []).append(_stats(inst["address"]))
    return out


def delta(after: Any, before: Any) -> Any:
    """What changed between two stats snapshots (numbers subtracted, dicts by key)."""
    if isinstance(after, dict):
        return {k: delta(v, before.get(k, 0) if isinstance(before, dict) else 0)
                for k, v in after.items()}
    if isinstance(after, int | float) and not isinstance(after, bool):
        return after - before
    return after


def changes(gw: Gateway, model: str, before: dict[str, list[dict[str, Any]]]
            ) -> dict[str, list[dict[str, Any]]]:
    after = by_role(gw, model)
    return {role: [delta(a, b) for a, b in zip(after[role], before[role], strict=True)]
            for role in after}


def _image_chat(url: str, question: str = "what is in this picture") -> list[dict[str, Any]]:
    return [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": question}]}]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    (folder / "work.png").write_bytes(_png())
    return folder


@pytest.fixture(scope="module")
def hand_started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Engines started by hand on ports: two prefills (one answers every request with
    500), a decode, and a pd for a plain external model."""
    ports = {name: free_port() for name in ("bad", "good", "decode", "plain")}
    procs = [
        _sim("prefill", ["--port", str(ports["bad"])], "static", "--error-rate", "1",
             "--error-status", "500"),
        _sim("prefill", ["--port", str(ports["good"])], "static"),
        _sim("decode", ["--port", str(ports["decode"])], "static"),
        _sim("pd", ["--port", str(ports["plain"])], "plain"),
    ]
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    try:
        for url in urls.values():
            wait_until(lambda u=url: _up(u), timeout=30)  # type: ignore[misc]
        yield urls
    finally:
        _stop(procs)


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, media: Path,
       hand_started: dict[str, str]) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("disagg")
    gateway = start_gateway(tmp, [
        simulator_model("epd", roles={"encode": 1, "pd": 1}, auto_start=True),
        simulator_model("epdd", roles={"encode": 1, "prefill": 1, "decode": 1},
                        auto_start=True),
        simulator_model("pdd", roles={"prefill": 1, "decode": 1}, auto_start=True,
                        args={"decode_ms_per_token": 30}),
        {"name": "static", "engine": "external", "model": "static", "auto_start": True,
         "routing": "round_robin", "endpoints": [
             {"address": hand_started["bad"], "role": "prefill"},
             {"address": hand_started["good"].removeprefix("http://"), "role": "prefill"},
             {"address": hand_started["decode"], "role": "decode"}]},
        {"name": "plain", "engine": "external", "model": hand_started["plain"],
         "auto_start": True},
    ], media={"allowed_local_media_path": str(media)})
    try:
        wait_until(lambda: all(gateway.info(m)["status"] == "ready"
                               for m in ("epd", "epdd", "pdd", "static", "plain")), timeout=60)
        yield gateway
    finally:
        gateway.stop()


def test_epd_image_from_a_file_is_encoded_once(gw: Gateway, media: Path) -> None:
    before = by_role(gw, "epd")
    resp = gw.client().chat.completions.create(
        model="epd", messages=_image_chat(f"file://{media}/work.png"), max_tokens=4)
    assert resp.choices[0].message.content == " ".join(WORDS[:4])
    seen = changes(gw, "epd", before)
    encoder, pd = seen["encode"][0], seen["pd"][0]
    assert encoder["requests_by_role"]["encode"] == 1 and encoder["images_encoded"] == 1
    # the pd instance was told the image's hash and did not encode it again
    assert pd["requests_by_role"]["pd"] == 1
    assert (pd["images"], pd["mm_hashes_reused"], pd["images_encoded"]) == (1, 1, 0)


def test_epd_streams_an_image_from_a_data_url(gw: Gateway) -> None:
    before = by_role(gw, "epd")
    url = "data:image/png;base64," + base64.b64encode(_png("blue")).decode()
    stream = gw.client().chat.completions.create(
        model="epd", messages=_image_chat(url), max_tokens=5, stream=True,
        stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        usage = chunk.usage or usage
    assert text.split() == WORDS[:5] and usage is not None and usage.completion_tokens == 5
    seen = changes(gw, "epd", before)
    assert seen["encode"][0]["images_encoded"] == 1
    assert seen["pd"][0]["mm_hashes_reused"] == 1 and seen["pd"][0]["images_encoded"] == 0


def test_text_only_requests_skip_the_encoder(gw: Gateway) -> None:
    before = by_role(gw, "epd")
    client = gw.client()
    client.chat.completions.create(model="epd", max_tokens=2,
                                   messages=[{"role": "user", "content": "hello there"}])
    client.completions.create(model="epd", prompt="once upon a time", max_tokens=2)
    seen = changes(gw, "epd", before)
    assert seen["encode"][0]["requests_by_role"]["encode"] == 0
    assert seen["pd"][0]["requests_by_role"]["pd"] == 2


@pytest.mark.parametrize("stream", [False, True])
def test_epdd_encodes_prefills_then_decodes_with_the_kv_handle(
        gw: Gateway, media: Path, stream: bool) -> None:
    before = by_role(gw, "epdd")
    # a prompt of its own: nothing of it is in the decode instance's prefix cache
    question = ("streamed " if stream else "whole ") + "describe it " * 20
    messages = _image_chat(f"file://{media}/work.png", question)
    client = gw.client()
    if stream:
        chunks = list(client.chat.completions.create(
            model="epdd", messages=messages, max_tokens=3, stream=True,
            stream_options={"include_usage": True}))
        usage = chunks[-1].usage
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        resp = client.chat.completions.create(model="epdd", messages=messages, max_tokens=3)
        usage, text = resp.usage, resp.choices[0].message.content or ""
    assert text.split() == WORDS[:3] and usage is not None
    seen = changes(gw, "epdd", before)
    encoder, prefill, decode = seen["encode"][0], seen["prefill"][0], seen["decode"][0]
    assert encoder["images_encoded"] == 1
    # prefill: one prefill-only step, with the encoder's hashes
    assert prefill["requests_by_role"]["prefill"] == 1
    assert prefill["mm_hashes_reused"] == 1 and prefill["images_encoded"] == 0
    assert prefill["generation_tokens_total"] == 1
    # decode: the prompt's KV came with the handle; nothing was recomputed or encoded
    assert decode["requests_by_role"]["decode"] == 1 and decode["kv_missing"] == 0
    assert decode["kv_transferred_tokens"] == usage.prompt_tokens - 1
    assert decode["images_encoded"] == 0
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == decode["kv_transferred_tokens"]


@pytest.mark.parametrize("stream", [False, True])
def test_pd_completions_go_through_prefill_and_decode(gw: Gateway, stream: bool) -> None:
    before = by_role(gw, "pdd")
    # 40 tokens (3 blocks of 16), a prompt of its own: nothing of it cached at decode
    prompt = " ".join(f"{stream}{i}" for i in range(40))
    client = gw.client()
    if stream:
        text = "".join(c.choices[0].text for c in client.completions.create(
            model="pdd", prompt=prompt, max_tokens=4, stream=True) if c.choices)
    else:
        text = client.completions.create(model="pdd", prompt=prompt, max_tokens=4
                                         ).choices[0].text
    assert text.split() == WORDS[:4]
    seen = changes(gw, "pdd", before)
    assert seen["prefill"][0]["requests_by_role"]["prefill"] == 1
    assert seen["prefill"][0]["prompt_tokens_total"] == 40
    # the handle covers 3 blocks (48 tokens) of a 40-token prompt: all but the last token
    assert seen["decode"][0]["kv_transferred_tokens"] == 39
    assert seen["decode"][0]["kv_missing"] == 0


def test_a_failed_prefill_is_retried_on_another_prefill(
        gw: Gateway, hand_started: dict[str, str]) -> None:
    good_before, decode_before = _stats(hand_started["good"]), _stats(hand_started["decode"])
    client = gw.client()
    for i in range(4):
        resp = client.completions.create(model="static", prompt=f"request {i} " * 10,
                                         max_tokens=2)
        assert resp.choices[0].text.strip() == "alpha bravo"
    good = delta(_stats(hand_started["good"]), good_before)
    decode = delta(_stats(hand_started["decode"]), decode_before)
    assert good["requests_by_role"]["prefill"] == 4  # every request prefilled there
    assert decode["requests_by_role"]["decode"] == 4 and decode["kv_missing"] == 0
    assert "retrying the prefill stage of static on another instance" in gw.log()
    # each prefill attempt left a record for its instance, the failed ones too
    text = httpx.get(gw.url + "/metrics", params={"format": "text"}, timeout=10).text
    for name in ("bad", "good"):
        assert f"  Address: {hand_started[name]}\n" in text
    block = text.split(f"  Address: {hand_started['bad']}\n")[1].split("Server Type")[0]
    assert "Avg e2e time requests: n/a" not in block
    errors = gw.get("/stats")["models"]["static"]["errors"]
    assert errors == {}  # the client's requests all succeeded


def test_request_ids_go_upstream_and_come_back(gw: Gateway) -> None:
    raw = gw.client().chat.completions.with_raw_response.create(
        model="epd", max_tokens=1, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Request-Id": "trace-42"})
    assert raw.headers["x-request-id"] == "trace-42"
    assert raw.parse().id == "chatcmpl-trace-42"  # the engine named its answer after it
    raw = gw.client().completions.with_raw_response.create(
        model="plain", prompt="x", max_tokens=1, extra_headers={"X-Request-Id": "bad id!"})
    fresh = raw.headers["x-request-id"]
    assert len(fresh) == 32 and raw.parse().id == f"cmpl-{fresh}"


def test_abort_mid_stream_ends_it_with_request_aborted(gw: Gateway) -> None:
    decode = next(i["address"] for i in gw.info("pdd")["instances"] if i["role"] == "decode")
    before = _stats(decode)
    stream = gw.client().chat.completions.create(
        model="pdd", max_tokens=300, stream=True, extra_headers={"X-Request-Id": "job-7"},
        messages=[{"role": "user", "content": "write a long story"}])
    assert stream.response.headers["x-request-id"] == "job-7"
    chunks = iter(stream)
    received = [next(chunks) for _ in range(3)]
    assert received[-1].choices[0].delta.content
    answer = gw.post("/abort", json={"request_ids": ["chatcmpl-job-7", "never-seen"]})
    assert answer.status_code == 200
    result = answer.json()
    assert (result["aborted"], result["not_found"]) == (["chatcmpl-job-7"], ["never-seen"])
    with pytest.raises(openai.APIError, match="aborted") as err:
        for _ in chunks:
            pass
    assert isinstance(err.value.body, dict) and err.value.body["code"] == "REQUEST_ABORTED"
    # the engine stopped: its request ended as aborted, long before 300 tokens
    wait_until(lambda: delta(_stats(decode), before)["aborted"] == 1, timeout=10)
    assert delta(_stats(decode), before)["generation_tokens_total"] < 100
    assert gw.get("/stats")["models"]["pdd"]["requests"]["aborted"] >= 1
    # gone from the registry: a second abort finds nothing
    again = gw.post("/abort", json={"request_id": "job-7"}).json()
    assert (again["aborted"], again["not_found"]) == ([], ["job-7"])
    bad = gw.post("/abort", json={})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "request_id"


def test_profiling_reaches_every_engine_that_has_a_profiler(
        gw: Gateway, hand_started: dict[str, str]) -> None:
    before = _stats(hand_started["decode"])["profiles_started"]
    started = gw.post("/start_profile").json()["instances"]
    by_address = {item["address"]: item for item in started}
    assert by_address[hand_started["plain"]]["status"] == "skipped"  # a plain external URL
    roles = {(item["model"], item["role"]) for item in started if item["status"] == "ok"}
    assert {("epdd", "encode"), ("epdd", "prefill"), ("epdd", "decode"), ("epd", "pd"),
            ("static", "prefill"), ("static", "decode")} <= roles
    assert _stats(hand_started["decode"])["profiles_started"] == before + 1
    for inst in gw.info("epdd")["instances"]:
        assert _stats(inst["address"])["profiles_started"] >= 1
    stopped = gw.post("/stop_profile").json()["instances"]
    assert {i["address"] for i in stopped} == set(by_address)
    assert _stats(hand_started["decode"])["profiles_stopped"] >= 1


def test_instance_summary_shows_every_role(gw: Gateway) -> None:
    gw.client().completions.create(model="pdd", prompt="warm", max_tokens=1)
    text = httpx.get(gw.url + "/metrics", params={"format": "text"}, timeout=10).text
    for kind in ("E_INSTANCE", "P_INSTANCE", "D_INSTANCE", "PD_INSTANCE"):
        assert f"Server Type: {kind}" in text
    prom = httpx.get(gw.url + "/metrics", timeout=10).text
    assert 'role="prefill"' in prom and 'role="encode"' in prom


# -- seed 000's first launch command, engines on Unix sockets --------------------------

def test_seed000_launch_with_unix_sockets(tmp_path: Path) -> None:
    model_path = tmp_path / "models" / "Qwen2.5-VL-7B-Instruct"
    images = tmp_path / "image"
    images.mkdir()
    (images / "work.png").write_bytes(_png("green"))
    encoder, pd, proxy = (str(tmp_path / n) for n in ("encoder_0", "prefill_decode_0", "proxy"))
    procs = [_sim("encode", ["--uds", encoder], str(model_path)),
             _sim("pd", ["--uds", pd], str(model_path))]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELFLEET_")}
    env["MODELFLEET_DATA_DIR"] = str(tmp_path / "data")
    log = tmp_path / "gateway.log"
    gateway = None
    try:
        wait_until(lambda: os.path.exists(encoder) and os.path.exists(pd), timeout=30)
        gateway = subprocess.Popen(
            [sys.executable, "-m", "modelfleet", "serve", "--model", str(model_path),
             "--proxy-addr", proxy, "--port", str(port), "--host", "127.0.0.1",
             "--encode-addr-list", encoder, "--pd-addr-list", pd,
             "--allowed-local-media-path", f"{images}/"],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ready(url, "Qwen2.5-VL-7B-Instruct"), timeout=60)
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        # seed 000's chat example, the model named by its path
        resp = client.chat.completions.create(model=str(model_path), messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": f"file://{images}/work.png"}},
                {"type": "text", "text": "What is the text in the illustrate?"}]}])
        assert resp.object == "chat.completion" and resp.choices[0].finish_reason == "length"
        assert resp.model == str(model_path)
        assert _stats(f"ipc://{encoder}")["images_encoded"] == 1
        assert _stats(f"ipc://{pd}")["mm_hashes_reused"] == 1
        # seed 000's completion example, through the proxy's own Unix socket
        with httpx.Client(transport=httpx.HTTPTransport(uds=proxy)) as local:
            done = local.post("http://localhost/v1/completions", timeout=30, json={
                "model": str(model_path), "max_tokens": 8, "temperature": 0.7, "stream": False,
                "prompt": "Once upon a time, there was a wise assistant who"})
        assert done.status_code == 200 and done.json()["object"] == "text_completion"
        assert _stats(f"ipc://{encoder}")["requests_by_role"]["encode"] == 1  # text: skipped
        text = httpx.get(url + "/metrics", params={"format": "text"}, timeout=10).text
        assert f"Server Type: E_INSTANCE\n  Address: ipc://{encoder}" in text
        assert f"Server Type: PD_INSTANCE\n  Address: ipc://{pd}" in text
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(20)
        assert not os.path.exists(proxy)  # the gateway removed its socket
    finally:
        if gateway is not None and gateway.poll() is None:
            gateway.kill()
            gateway.wait()
        _stop(procs)


def _ready(url: str, name: str) -> bool:
    try:
        info = httpx.get(f"{url}/api/models/{name}/info", timeout=2)
    except httpx.HTTPError:
        return False
    return info.status_code == 200 and info.json()["model"]["status"] == "ready"


def test_seed000_refuses_a_layout_that_cannot_serve(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelfleet", "serve", "--model", "/m/q", "--port",
         str(free_port()), "--decode-addr-list", str(tmp_path / "d0")],
        capture_output=True, text=True, timeout=60,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("MODELFLEET_")},
             "MODELFLEET_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "the address lists: decode instances need prefill instances" in " ".join(
        result.stdout.split())
