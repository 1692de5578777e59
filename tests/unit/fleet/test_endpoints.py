"""Instance addresses and the role layouts a model may declare."""

from pathlib import Path

import pytest

from modelfleet.errors import ConfigError
from modelfleet.fleet.endpoints import check_layout, layout_of, parse_address
from modelfleet.settings import ModelConfig, load_settings


@pytest.mark.parametrize(("text", "base_url", "display"), [
    ("http://10.0.0.5:8000", "http://10.0.0.5:8000", "http://10.0.0.5:8000"),
    ("https://gpu-3.example:443/v1/", "https://gpu-3.example:443",
     "https://gpu-3.example:443"),
    ("10.0.0.5:8000", "http://10.0.0.5:8000", "http://10.0.0.5:8000"),
    ("gpu_3:9001", "http://gpu_3:9001", "http://gpu_3:9001"),
    ("[::1]:8000", "http://[::1]:8000", "http://[::1]:8000"),
])
def test_tcp_addresses(text: str, base_url: str, display: str) -> None:
    address = parse_address(text)
    assert (address.base_url, address.display, address.uds) == (base_url, display, None)


@pytest.mark.parametrize("text", ["/tmp/encoder_0", "unix:/tmp/encoder_0",
                                  "ipc:///tmp/encoder_0", "unix:///tmp/encoder_0"])
def test_unix_socket_spellings_are_one_address(text: str) -> None:
    address = parse_address(text)
    assert address.uds == "/tmp/encoder_0"
    assert address.display == "ipc:///tmp/encoder_0"  # as seed 000 shows it
    assert address.base_url == parse_address("/tmp/encoder_0").base_url


def test_each_socket_has_its_own_base_url() -> None:
    # Routing, records and health tell instances apart by base_url.
    urls = {parse_address(f"/tmp/prefill_{i}").base_url for i in range(50)}
    assert len(urls) == 50
    assert all(u.startswith("http://uds-") and u.endswith(".localhost") for u in urls)


@pytest.mark.parametrize("text", ["", "nohost", "host:port", "host:99999", "ipc://relative",
                                  "unix:tmp/x", "ftp://h:1", "http://h:1?x=1",
                                  "/" + "x" * 200, "a b:80"])
def test_bad_addresses_say_what_is_wrong(text: str) -> None:
    with pytest.raises(ValueError, match="address"):
        parse_address(text)


def test_layout_of_endpoints_roles_and_replicas() -> None:
    assert layout_of(3, None) == {"pd": 3}
    assert layout_of(3, {"encode": 1, "pd": 2, "prefill": 0}) == {"encode": 1, "pd": 2}
    assert layout_of(1, None, ["encode", "pd", "pd"]) == {"encode": 1, "pd": 2}


@pytest.mark.parametrize("layout", [
    {"pd": 1}, {"encode": 1, "pd": 1}, {"encode": 2, "prefill": 1, "decode": 3},
    {"prefill": 1, "decode": 1},
])
def test_servable_layouts(layout: dict[str, int]) -> None:
    check_layout(layout)


@pytest.mark.parametrize(("layout", "message"), [
    ({"encode": 1}, "at least one pd or decode"),
    ({}, "at least one pd or decode"),
    ({"prefill": 2}, "at least one pd or decode"),
    ({"decode": 1}, "decode instances need prefill"),
    ({"encode": 1, "decode": 1}, "decode instances need prefill"),
    ({"pd": 1, "prefill": 1}, "prefill instances need decode"),
    ({"pd": 1, "prefill": 1, "decode": 1}, "cannot be combined"),
    ({"pd": 1, "verify": 1}, "unknown roles"),
])
def test_unservable_layouts(layout: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_layout(layout)


def _cfg(**kw: object) -> ModelConfig:
    return ModelConfig(name="m", model="/models/m", **kw)  # type: ignore[arg-type]


def test_model_config_refuses_bad_layouts_and_misplaced_endpoints() -> None:
    assert _cfg(engine="simulator", roles={"encode": 1, "pd": 2}).roles == {"encode": 1, "pd": 2}
    for kw, message in [
        ({"engine": "simulator", "roles": {"decode": 1}}, "need prefill"),
        ({"engine": "vllm", "roles": {"encode": 1, "pd": 0}}, "at least one pd or decode"),
        ({"engine": "vllm", "endpoints": [{"address": "h:1"}]}, "engine must be external"),
        ({"engine": "external", "roles": {"pd": 1}}, "launches nothing"),
        ({"engine": "external", "roles": {"pd": 1},
          "endpoints": [{"address": "h:1"}]}, "not both"),
        ({"engine": "external", "endpoints": [{"address": "/tmp/a", "role": "encode"}]},
         "at least one pd or decode"),
        ({"engine": "external", "endpoints": [{"address": "/tmp/a"},
                                              {"address": "ipc:///tmp/a"}]}, "twice"),
        ({"engine": "external", "endpoints": [{"address": "h:1", "role": "verify"}]},
         "role"),
        ({"engine": "external", "endpoints": [{"address": "not an address"}]}, "address"),
    ]:
        with pytest.raises(ValueError, match=message):
            _cfg(**kw)


def test_a_bad_layout_in_a_config_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "modelfleet.yaml"
    path.write_text("models:\n  - {name: vl, engine: vllm, model: /m, roles: {decode: 2}}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(config=path)
    assert "model 'vl'" in err.value.message
    assert "decode instances need prefill instances" in err.value.message
