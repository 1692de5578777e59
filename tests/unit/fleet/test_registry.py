from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from modelfleet.errors import ConflictError, InvalidRequestError, ModelNotFoundError
from modelfleet.fleet.model import ModelState
from modelfleet.fleet.registry import Fleet
from modelfleet.settings import ModelConfig, Settings


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    async with aiohttp.ClientSession() as session:
        settings = Settings(data_dir=tmp_path, models=[  # type: ignore[list-item]
            {"name": "a", "engine": "simulator", "model": "a", "aliases": ["alpha"]},
            {"name": "e", "engine": "builtin", "model": str(tmp_path), "task": "embed"},
        ])
        f = Fleet(settings, session)
        yield f
        await f.close()


async def test_fleet_resolves_names_aliases_and_capabilities(fleet: Fleet) -> None:
    assert fleet.get("alpha") is fleet.get("a")
    with pytest.raises(ModelNotFoundError):
        fleet.get("nope")
    assert fleet.resolve(None, "chat").name == "a"  # the only chat model
    assert fleet.resolve(None, "rerank").name == "e"
    with pytest.raises(InvalidRequestError, match="more than one"):
        fleet.resolve(None, "embedding")
    with pytest.raises(InvalidRequestError, match="does not support"):
        fleet.resolve("e", "chat")


async def test_fleet_add_update_remove(fleet: Fleet) -> None:
    with pytest.raises(ConflictError) as info:
        fleet.add(ModelConfig(name="b", engine="simulator", model="b", aliases=["alpha"]))
    assert info.value.code == "MODEL_ALREADY_EXISTS"
    b = fleet.add(ModelConfig(name="b", engine="simulator", model="b", aliases=["bee"]))
    assert fleet.get("bee") is b
    fleet.update(ModelConfig(name="b", engine="simulator", model="b", aliases=["buzz"]))
    assert fleet.get("buzz") is b
    with pytest.raises(ModelNotFoundError):
        fleet.get("bee")
    await b.start()
    with pytest.raises(ConflictError, match="before changing its engine"):
        fleet.update(ModelConfig(name="b", engine="builtin", model="/m"))
    await fleet.remove("buzz")
    assert b.state is ModelState.STOPPED and "b" not in fleet.models
    with pytest.raises(ModelNotFoundError):
        fleet.get("b")
