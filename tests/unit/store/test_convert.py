"""Conversions between API bodies, rows' columns and ModelConfig (no database)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from modelfleet.errors import InvalidRequestError
from modelfleet.settings import ModelConfig, Profile
from modelfleet.store.convert import (
    columns_of_api,
    columns_of_config,
    iso_z,
    model_config_of,
    normalise_engine,
)


def test_iso_z_is_utc_seconds_with_z() -> None:
    east = timezone(timedelta(hours=8))
    assert iso_z(datetime(2024, 1, 1, 20, 0, 0, 123456, tzinfo=east)) == "2024-01-01T12:00:00Z"
    assert iso_z(None) is None


@pytest.mark.parametrize(
    ("given", "engine"),
    [("llama.cpp", "llamacpp"), ("vLLM", "vllm"), ("text-generation-inference", "tgi")],
)
def test_normalise_engine_accepts_seed_spellings(given: str, engine: str) -> None:
    assert normalise_engine(given) == engine


def test_columns_of_api_takes_seed_002_names() -> None:
    columns = columns_of_api({
        "name": "m", "framework": "llama.cpp", "config": {"model_path": "/w.gguf", "n_ctx": 8},
        "aliases": ["mm"], "description": None,
    })
    assert columns["engine"] == "llamacpp" and columns["model"] == "/w.gguf"
    assert columns["config"] == {"model_path": "/w.gguf", "n_ctx": 8, "aliases": ["mm"]}
    assert columns["display_name"] == "m" and "description" not in columns


@pytest.mark.parametrize(
    "body",
    [{"model": "/w"}, {"name": "m"}, {"name": "m", "model": "/w", "tags": "a"},
     {"name": "m", "model": "/w", "tags": [1]}, {"name": "m", "model": "/w", "config": []},
     {"name": "m", "model": "/w", "resource_requirements": 5}],
)
def test_columns_of_api_refuses_incomplete_or_mistyped_bodies(body: dict[str, object]) -> None:
    with pytest.raises(InvalidRequestError):
        columns_of_api(body)


def test_config_round_trips_through_columns() -> None:
    cfg = ModelConfig(
        name="q", engine="vllm", model="/q", aliases=["qq"], auto_start=True,
        profiles=[Profile(name="two", devices=["cuda:0", "cuda:1"], args={"tp": 2})],
        args={"max_model_len": 4096}, resource_requirements={"gpu_memory": 1000},
    )
    assert model_config_of(columns_of_config(cfg)) == cfg


def test_unknown_config_keys_become_args_and_explicit_args_win() -> None:
    cfg = model_config_of({
        "name": "m", "engine": "llamacpp", "model": "/w",
        "config": {"model_path": "/w", "n_ctx": 1, "n_gpu_layers": 2, "args": {"n_ctx": 9}},
    })
    assert cfg.args == {"n_ctx": 9, "n_gpu_layers": 2}


def test_sampling_config_keys_become_request_defaults_not_engine_flags() -> None:
    cfg = model_config_of({
        "name": "m", "engine": "simulator", "model": "m",
        "config": {"temperature": 0.8, "top_p": 0.9, "n_ctx": 64,
                   "defaults": {"top_p": 0.5}},
    })
    assert cfg.defaults.temperature == 0.8 and cfg.defaults.top_p == 0.5
    assert cfg.args == {"n_ctx": 64}
    with pytest.raises(ValueError, match="temperature"):
        model_config_of({"name": "m", "engine": "simulator", "model": "m",
                         "config": {"temperature": 7}})
