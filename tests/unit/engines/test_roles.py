"""What adapters say about disaggregated serving: roles on the command line, profilers,
abort routes; and the simulator's socket flags."""

import sys

import pytest

from modelfleet.engines import adapter_for
from modelfleet.engines.simulator import parse_args
from modelfleet.settings import ModelConfig


def test_simulator_adapter_passes_the_role() -> None:
    cfg = ModelConfig(name="sim", engine="simulator", model="sim",
                      args={"prefill_ms_per_token": 2})
    spec = adapter_for("simulator").launch(cfg, "127.0.0.1", 9001, None, role="prefill")
    assert spec.argv == [sys.executable, "-m", "modelfleet.engines.simulator", "--host",
                         "127.0.0.1", "--port", "9001", "--served-model-name", "sim",
                         "--role", "prefill", "--prefill-ms-per-token", "2"]


@pytest.mark.parametrize(("engine", "profiles", "abort"), [
    ("simulator", True, "/abort_requests"),
    ("vllm", True, None),  # vLLM serves /abort_requests only with --tokens-only
    ("sglang", True, None),
    ("builtin", False, None),
    ("llamacpp", False, None),
    ("tgi", False, None),
    ("external", False, None),
])
def test_profilers_and_abort_routes(engine: str, profiles: bool, abort: str | None) -> None:
    cfg = ModelConfig(name="m", engine=engine, model="/models/m")  # type: ignore[arg-type]
    adapter = adapter_for(engine)
    assert adapter.can_profile(cfg) is profiles
    assert adapter.abort_path(cfg) == abort


def test_external_endpoints_are_engines_that_profile_and_abort() -> None:
    cfg = ModelConfig(name="m", engine="external", model="/models/m",
                      endpoints=[{"address": "/tmp/encoder_0", "role": "encode"},
                                 {"address": "/tmp/prefill_decode_0"}])
    adapter = adapter_for("external")
    assert adapter.can_profile(cfg)
    assert adapter.abort_path(cfg) == "/abort_requests"


def test_simulator_listens_on_a_port_or_a_socket() -> None:
    assert parse_args(["--port", "9001"]).uds is None
    assert parse_args(["--uds", "/tmp/encoder_0", "--role", "encode"]).uds == "/tmp/encoder_0"
    for argv in ([], ["--port", "1", "--uds", "/tmp/x"]):
        with pytest.raises(SystemExit):
            parse_args(argv)
