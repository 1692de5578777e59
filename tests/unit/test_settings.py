from pathlib import Path

import pytest

from modelfleet.errors import ConfigError
from modelfleet.settings import load_settings


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "modelfleet.yaml"
    path.write_text(text)
    return path


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("MODELFLEET_HOST", "MODELFLEET_PORT", "MODELFLEET_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    s = load_settings()
    assert s.server.host == "127.0.0.1"
    assert s.server.port == 8000
    assert s.models == []
    assert "~" not in str(s.data_dir)


def test_settings_precedence_flags_over_env_over_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _yaml(tmp_path, "server: {host: 10.0.0.1, port: 7000}\nlog_level: debug\n")
    monkeypatch.setenv("MODELFLEET_PORT", "7100")
    s = load_settings(config=cfg)
    assert (s.server.host, s.server.port, s.log_level) == ("10.0.0.1", 7100, "debug")
    s = load_settings(config=cfg, **{"server.port": 7200})
    assert s.server.port == 7200


def test_settings_config_from_env_and_nested_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _yaml(tmp_path, "models:\n  - {name: a, engine: simulator, model: a}\n")
    monkeypatch.setenv("MODELFLEET_CONFIG", str(cfg))
    monkeypatch.setenv("MODELFLEET_TIMEOUTS__IDLE", "7.5")
    monkeypatch.setenv("MODELFLEET_ALLOWED_LOCAL_MEDIA_PATH", "/srv/media")
    s = load_settings()
    assert [m.name for m in s.models] == ["a"]
    assert s.timeouts.idle == 7.5
    assert s.media.allowed_local_media_path == "/srv/media"


def test_settings_bad_yaml_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(config=_yaml(tmp_path, "server: [unclosed\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(config=tmp_path / "missing.yaml")


def test_settings_refuses_unknown_keys_and_duplicate_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="field serverr: Extra inputs are not permitted"):
        load_settings(config=_yaml(tmp_path, "serverr: {}\n"))
    dup = "models:\n  - {name: a, model: x, aliases: [b]}\n  - {name: b, model: y}\n"
    with pytest.raises(ConfigError, match="used twice"):
        load_settings(config=_yaml(tmp_path, dup))


def test_settings_errors_name_the_file_the_model_and_the_field(tmp_path: Path) -> None:
    text = ("models:\n  - {name: ok, model: x}\n"
            "  - {name: qwen, model: y, replicas: 0, limits: {max_tokens: -1}}\n"
            "  - {name: other, model: z, engine: nope}\n")
    path = _yaml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(config=path)
    lines = str(info.value).splitlines()
    assert f"{path}: model 'qwen' (models[1]), field replicas: Input should be greater than " \
        "or equal to 1" in lines
    assert any(line.startswith(f"{path}: model 'qwen' (models[1]), field limits.max_tokens")
               for line in lines)
    assert any(line.startswith(f"{path}: model 'other' (models[2]), field engine")
               for line in lines)
    assert len(lines) == 3


def test_settings_model_fields_are_bounded(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="replicas"):
        load_settings(config=_yaml(tmp_path, "models:\n  - {name: a, model: x, replicas: 0}\n"))
    with pytest.raises(ConfigError, match="engine"):
        load_settings(config=_yaml(tmp_path, "models:\n  - {name: a, model: x, engine: nope}\n"))
