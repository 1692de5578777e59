"""One typed Settings for the whole service.

Precedence: command-line flags (passed as init values) > ``MODELFLEET_*``
environment > YAML file (``--config`` or ``MODELFLEET_CONFIG``) > defaults.
This is the only module that reads ``os.environ``; everything else is handed a
``Settings`` (or the environment a child process should get) explicitly.

Environment names: the short ones of the design (``MODELFLEET_HOST``,
``MODELFLEET_PORT``, ``MODELFLEET_DATA_DIR``, ``MODELFLEET_DATABASE_URL``,
``MODELFLEET_REDIS_URL``, ``MODELFLEET_ADMIN_PASSWORD``,
``MODELFLEET_ALLOWED_LOCAL_MEDIA_PATH``) and any other key as
``MODELFLEET_<SECTION>__<KEY>`` (for example ``MODELFLEET_SERVER__CORS_ORIGINS``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from modelfleet.errors import ConfigError
from modelfleet.fleet.endpoints import check_layout, layout_of, parse_address

EngineName = Literal["vllm", "sglang", "llamacpp", "tgi", "builtin", "simulator", "external"]
# Bounds shared by Settings and the runtime config API.
MaxModels = Annotated[int, Field(ge=1, le=1000)]
HealthInterval = Annotated[float, Field(ge=0, le=3600)]  # 0: no health checks
MonitorInterval = Annotated[float, Field(ge=1, le=3600)]
StartTimeout = Annotated[float, Field(gt=0, le=86400)]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
RoutingName = Literal["least_outstanding", "round_robin", "power_of_two", "prefix_aware", "session"]
# An instance's part in disaggregated serving (seed 000): encode (media), prefill,
# decode, or pd (everything).
RoleName = Literal["pd", "encode", "prefill", "decode"]

# Short environment names of DESIGN §9 mapped onto their place in the tree.
_SHORT_ENV = {
    "MODELFLEET_HOST": ("server", "host"),
    "MODELFLEET_PORT": ("server", "port"),
    "MODELFLEET_ADMIN_PASSWORD": ("auth", "admin_password"),
    "MODELFLEET_ALLOWED_LOCAL_MEDIA_PATH": ("media", "allowed_local_media_path"),
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    cors_origins: list[str] = []
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    # Fleet-wide admission (seed 001): None means no fleet gate.
    max_concurrent_requests: int | None = Field(None, ge=1)
    max_queue: int | None = Field(None, ge=0)
    queue_timeout_s: float = Field(300, gt=0)
    max_header_bytes: int = Field(32 * 1024, ge=1024)
    # Host names accepted besides localhost while bound to loopback (DNS rebinding guard).
    allowed_hosts: list[str] = []


class AuthSettings(_Section):
    admin_user: str = "admin"
    admin_password: str | None = None
    jwt_ttl_s: int = Field(3600, ge=60)
    # The JWT signing secret; unset: a random one kept in data_dir/jwt_secret.
    jwt_secret: str | None = Field(None, min_length=32)
    # Routes served without a token when auth is on.
    public_metrics: bool = True
    public_docs: bool = True


class MediaSettings(_Section):
    """What the gateway may fetch for image parts of chat requests (``gateway/media.py``)."""

    allowed_local_media_path: str | None = None
    # Exact host names or ``*.example.com`` patterns allowed even on private addresses.
    allowed_domains: list[str] = []
    max_bytes: int = Field(20_000_000, ge=1)
    fetch_timeout_s: float = Field(10.0, gt=0)
    max_redirects: int = Field(5, ge=0)
    max_pixels: int = Field(50_000_000, ge=1)
    max_images: int = Field(16, ge=0)


class TimeoutSettings(_Section):
    """Relay timeouts, in seconds. First byte is scaled by the request's max_tokens."""

    connect: float = Field(5.0, gt=0)
    first_byte: float = Field(30.0, gt=0)
    first_byte_per_token: float = Field(0.5, ge=0)
    idle: float = Field(60.0, gt=0)
    start: StartTimeout = 300.0


class Limits(_Section):
    max_concurrent: int | None = Field(None, ge=1)
    max_queue: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    default_temperature: float | None = Field(None, ge=0, le=2)


class RequestDefaults(_Section):
    """Sampling parameters a request gets when it does not set them (seed 002 keeps them
    in a model's ``config``)."""

    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    repetition_penalty: float | None = Field(None, gt=0)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = None
    stop: str | list[str] | None = None


class AlertThresholds(_Section):
    """Seed 002's alert thresholds: the built-in rules' limits."""

    gpu_utilization_high: float = Field(90.0, ge=0, le=100)
    gpu_temperature_high: float = Field(80.0, ge=0, le=150)
    response_time_high: float = Field(2.0, gt=0, le=3600)
    error_rate_high: float = Field(0.05, ge=0, le=1)


class ResourceRequirements(_Section):
    """What one instance needs (seed 002's names); MB. Unset: estimated from the weights."""

    gpu_count: int | None = Field(None, ge=0)
    gpu_memory: int | None = Field(None, ge=0, description="MB on each GPU of the profile")
    memory: int | None = Field(None, ge=0, description="MB of host RAM when on the CPU")
    cpu_cores: float | None = Field(None, ge=0)


class DeviceSpec(_Section):
    """A device declared in the config instead of detected (or where nothing detects it)."""

    id: str = Field(pattern=r"^(cpu|cuda:\d+)$")
    memory_mb: int = Field(ge=0)
    name: str | None = None


class Profile(_Section):
    name: str
    devices: list[str] = []
    args: dict[str, Any] = {}


class Endpoint(_Section):
    """An instance started by hand (static discovery): its address and role.

    Addresses: ``http(s)://host:port``, ``host:port``, or a Unix socket as
    ``/abs/path``, ``unix:/abs/path`` or ``ipc:///abs/path``.
    """

    address: str = Field(min_length=1, max_length=512)
    role: RoleName = "pd"

    @field_validator("address")
    @classmethod
    def _parse(cls, value: str) -> str:
        parse_address(value)  # ValueError names what is wrong
        return value.strip()


class FleetSettings(_Section):
    """This process's place in a fleet of gateways and agents sharing a metastore."""

    # This gateway's or agent's id in the metastore (default: host name and port).
    node_id: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    # The address other hosts reach this one's engines at (engines bind it).
    advertise_host: str | None = Field(None, min_length=1, max_length=253)
    # Node and instance records live this long unless renewed (every third of it).
    ttl_s: float = Field(10.0, ge=1, le=300)
    # Bearer token an agent's control API requires (logs); none: loopback only.
    agent_token: str | None = Field(None, min_length=16, max_length=256)


class ModelConfig(_Section):
    """One model as the YAML file (and later the store) declares it."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\s/][^\s]*$")
    engine: EngineName = "builtin"
    model: str = Field(min_length=1)
    aliases: list[str] = []
    auto_start: bool = False
    idle_timeout: float = Field(300, ge=0)
    replicas: int = Field(1, ge=1, le=64)
    routing: RoutingName = "least_outstanding"
    limits: Limits = Limits()
    # Served first when requests queue (seed 002): higher first.
    priority: int = 0
    defaults: RequestDefaults = RequestDefaults()
    fallbacks: list[str] = []
    profiles: list[Profile] = []
    resource_requirements: ResourceRequirements = ResourceRequirements()
    args: dict[str, Any] = {}
    # Engine task when the engine serves several (builtin: chat, embed, rerank).
    task: Literal["auto", "chat", "embed", "rerank"] = "auto"
    api_key: str | None = None
    # The name the engine knows the model by, when it is not ``name`` (external servers).
    upstream_model: str | None = None
    startup_timeout: float | None = Field(None, gt=0)
    # Disaggregated serving: instances per role (replaces ``replicas`` when set), for
    # example {encode: 1, pd: 1} (E-PD) or {encode: 1, prefill: 1, decode: 1} (E-P-D).
    roles: dict[RoleName, Annotated[int, Field(ge=0, le=64)]] | None = None
    # Instances started by hand (engine external): addresses and roles.
    endpoints: list[Endpoint] = Field([], max_length=256)
    # Instances registered in the metastore by agents or other gateways serve this model.
    discover: bool = False
    # Agents (node ids) that run this model's engines; empty: this gateway runs them.
    nodes: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]] = Field(
        [], max_length=64)

    @model_validator(mode="after")
    def _check_layout(self) -> ModelConfig:
        """Disaggregated layouts are refused at load when no request could be served."""
        if self.endpoints:
            if self.engine != "external":
                raise ValueError("endpoints are instances started by hand: engine must be "
                                 "external")
            if self.roles is not None:
                raise ValueError("set roles or endpoints, not both: endpoints carry roles")
            bases = [parse_address(e.address).base_url for e in self.endpoints]
            if len(set(bases)) != len(bases):
                raise ValueError("endpoints list the same address twice")
        elif self.roles is not None and self.engine == "external" and not self.discover:
            raise ValueError("an external model launches nothing: list its instances "
                             "in endpoints instead of roles")
        if self.roles is not None or self.endpoints:
            check_layout(layout_of(self.replicas, self.roles,
                                   (e.role for e in self.endpoints)))
        return self


class Settings(BaseSettings):
    """Everything the service is told. Validated once, then passed around."""

    model_config = SettingsConfigDict(
        env_prefix="MODELFLEET_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    config: Path | None = None
    server: ServerSettings = ServerSettings()
    data_dir: Path = Path("~/.local/share/modelfleet")
    database_url: str | None = None
    redis_url: str | None = None
    # Every Redis key and channel of this fleet starts with it (several fleets, one Redis).
    redis_prefix: str = Field("modelfleet:", min_length=1, max_length=64)
    fleet: FleetSettings = FleetSettings()
    auth: AuthSettings = AuthSettings()
    media: MediaSettings = MediaSettings()
    timeouts: TimeoutSettings = TimeoutSettings()
    models: list[ModelConfig] = []
    # Declared devices replace detection (NVML for GPUs, psutil for the CPU).
    devices: list[DeviceSpec] | None = None
    # The module NVML is read through (``pynvml`` when unset): for tests and for exotic
    # NVML builds. ``MODELFLEET_NVML_MODULE`` in the environment.
    nvml_module: str | None = None
    log_level: LogLevel = "info"
    # Runtime knobs that ``/api/config`` also reads and writes (seed 002's names).
    max_concurrent_models: MaxModels = 10
    health_check_interval: HealthInterval = 60.0
    gpu_monitor_interval: MonitorInterval = 30.0
    alert_thresholds: AlertThresholds = AlertThresholds()
    # Seconds between two evaluations of the alert rules.
    alert_interval: float = Field(15.0, gt=0, le=3600)
    # Time series (/api/monitoring): how often the open buckets are written, how long
    # hourly buckets are kept, and minute buckets.
    rollup_interval_s: float = Field(60.0, ge=0.5, le=3600)
    metrics_retention_days: float = Field(30.0, gt=0, le=3650)
    metrics_retention_minutes_days: float = Field(2.0, gt=0, le=365)

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: dict[str, str] = {}
        for m in self.models:
            for name in [m.name, *m.aliases]:
                if name in seen:
                    raise ValueError(f"model name or alias {name!r} is used twice")
                seen[name] = m.name
        return self

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "modelfleet.db"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        init_kwargs = getattr(init_settings, "init_kwargs", {})
        path = init_kwargs.get("config") or os.environ.get("MODELFLEET_CONFIG")
        yaml_source = _YamlSource(settings_cls, Path(path) if path else None)
        return (init_settings, _ShortEnvSource(settings_cls), env_settings, yaml_source)


class _ShortEnvSource(PydanticBaseSettingsSource):
    """``MODELFLEET_HOST`` and friends, placed into their sections."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for env, (section, key) in _SHORT_ENV.items():
            if env in os.environ:
                out.setdefault(section, {})[key] = os.environ[env]
        return out


class _YamlSource(PydanticBaseSettingsSource):
    """The YAML file named by the ``config`` init value or ``MODELFLEET_CONFIG``."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None = None):
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return load_yaml(self.path) if self.path else {}


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a config file; a missing or malformed file is a ConfigError."""
    try:
        text = Path(path).expanduser().read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def load_settings(**flags: Any) -> Settings:
    """Build Settings from flags (None values are ignored) over env, YAML, defaults.

    Nested flags use dotted keys: ``{"server.port": 9000}``.
    """
    init: dict[str, Any] = {}
    for key, value in flags.items():
        if value is None:
            continue
        target = init
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = value
    path = init.get("config") or os.environ.get("MODELFLEET_CONFIG")
    try:
        return Settings(**init)
    except ValidationError as exc:
        raise ConfigError(explain(exc, str(path) if path else "settings", path)) from None


def explain(exc: ValidationError, source: str, path: str | Path | None = None) -> str:
    """Every problem on its own line, naming the file, the model and the field."""
    models: list[Any] = []
    if path:
        try:
            raw = load_yaml(Path(path)).get("models")
            models = raw if isinstance(raw, list) else []
        except ConfigError:
            pass
    lines = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
            index = loc[1]
            entry = models[index] if index < len(models) else None
            name = entry.get("name") if isinstance(entry, dict) else None
            rest = ".".join(str(p) for p in loc[2:])
            where = (f"model {name!r} (models[{index}])" if name else f"models[{index}]") \
                + (f", field {rest}" if rest else "")
        elif loc:
            where = f"field {where}"
        lines.append(f"{source}: {where}: {err['msg']}")
    return "\n".join(lines)


def engine_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a child engine process starts with: ours, plus ``extra``."""
    env = dict(os.environ)
    env.update(extra or {})
    return env
