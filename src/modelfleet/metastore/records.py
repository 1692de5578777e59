"""The records the metastore holds, validated on every read.

Each model forbids unknown fields and bounds every string, list and dict, so a record
written by a newer, older or hostile process is refused as a whole (see ``decode``)
instead of reaching the fleet half understood. Times are wall-clock seconds
(``time.time()``): records are compared across hosts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from modelfleet.errors import InvalidRequestError

# The largest JSON form of one record, in bytes; a larger one is refused on read and write.
MAX_RECORD_BYTES = 64 * 1024

NodeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
InstanceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:/@-]{1,200}$")]
# A model's name as the config spells it: no whitespace (ModelConfig.name's bound).
ModelName = Annotated[str, StringConstraints(pattern=r"^\S{1,200}$")]
Word = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:/@+-]{0,64}$")]
Key = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(max_length=256)]
Host = Annotated[str, StringConstraints(pattern=r"^[^\s/]{1,255}$")]
HttpUrl = Annotated[str, StringConstraints(pattern=r"^https?://\S{1,500}$")]
# An engine's address: an HTTP base URL, or a Unix socket by absolute path.
Address = Annotated[str, StringConstraints(pattern=r"^(https?://\S{1,500}|unix:/\S{1,500})$")]
Time = Annotated[float, Field(ge=0, allow_inf_nan=False)]
RoleKey = Annotated[str, StringConstraints(pattern=r"^(pd|encode|prefill|decode)$")]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeviceInfo(_Record):
    id: Annotated[str, StringConstraints(pattern=r"^(cpu|cuda:[0-9]{1,3})$")]
    name: Text | None = None
    memory_mb: Annotated[int, Field(ge=0)]
    free_mb: Annotated[int, Field(ge=0)] | None = None
    utilization: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None


class NodeRecord(_Record):
    """A gateway or agent process, renewed by its heartbeat."""

    id: NodeId
    kind: Literal["gateway", "agent"]
    host: Host
    control_url: HttpUrl | None = None  # where an agent serves logs and control
    devices: Annotated[list[DeviceInfo], Field(max_length=64)] = []
    capacity: Annotated[
        dict[Key, Annotated[float, Field(allow_inf_nan=False)]], Field(max_length=32)
    ] = {}
    started_at: Time
    heartbeat_at: Time
    version: Word = ""
    # A gateway's models and when it last served each (wall time), so that no gateway
    # unloads a model for idleness while another one still uses it.
    models_used: Annotated[dict[ModelName, Time], Field(max_length=1024)] = {}


class InstanceRecord(_Record):
    """One engine process serving one model in one role, renewed by its node."""

    id: InstanceId  # unique, e.g. f"{node}/{model}/{role}/{port}"
    model: ModelName
    role: Literal["pd", "encode", "prefill", "decode"] = "pd"
    address: Address
    engine: Word
    state: Literal["starting", "ready", "stopping", "failed"] = "ready"
    node: NodeId
    load: Annotated[int, Field(ge=0)] = 0
    pid: Annotated[int, Field(ge=1)] | None = None
    fence: Annotated[int, Field(ge=0)] = 0  # the fencing token of the start that made it
    started_at: Time
    updated_at: Time


class Assignment(_Record):
    """A model a gateway asks an agent to run, written under the model's start lock."""

    model: ModelName
    config: Annotated[dict[Key, Any], Field(max_length=256)]  # a ModelConfig dump
    roles: Annotated[
        dict[RoleKey, Annotated[int, Field(ge=0, le=64)]], Field(min_length=1, max_length=4)
    ] = {"pd": 1}
    fence: Annotated[int, Field(ge=1)]
    gateway: NodeId
    at: Time


class Event(_Record):
    """A notification to every subscriber; the state it speaks of is in the records."""

    kind: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    data: Annotated[dict[Key, Any], Field(max_length=256)] = {}
    source: Text = ""
    at: Time


R = TypeVar("R", bound=_Record)


def encode(rec: _Record) -> bytes:
    """``rec`` as JSON; ``InvalidRequestError`` past ``MAX_RECORD_BYTES`` (a reader would
    refuse it)."""
    raw = rec.model_dump_json().encode()
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidRequestError(f"{type(rec).__name__} is {len(raw)} bytes; at most "
                         f"{MAX_RECORD_BYTES} are stored")
    return raw


def decode(cls: type[R], raw: bytes | str) -> R:
    """Parse and validate one stored record; ``ValueError`` says why it is refused."""
    if len(raw) > MAX_RECORD_BYTES:
        raise ValueError(f"{len(raw)} bytes, over {MAX_RECORD_BYTES}")
    try:
        return cls.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        where = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
        raise ValueError(f"{exc.error_count()} error(s), first at {where or '(root)'}: "
                         f"{errors[0]['msg'] if errors else exc}") from None
