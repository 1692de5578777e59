"""The simulator engine: ``python -m modelfleet.engines.simulator``."""

from __future__ import annotations

import sys

from modelfleet.engines.base import (
    CHAT,
    COMPLETION,
    EMBEDDING,
    VISION,
    EngineAdapter,
    LaunchSpec,
    cuda_devices,
    flag_args,
)
from modelfleet.settings import ModelConfig, Profile


class SimulatorAdapter(EngineAdapter):
    name = "simulator"
    supports_profiling = True

    def launch(
        self, cfg: ModelConfig, host: str, port: int, profile: Profile | None, role: str = "pd"
    ) -> LaunchSpec:
        argv = [sys.executable, "-m", "modelfleet.engines.simulator", "--host", host,
                "--port", str(port), "--served-model-name", cfg.name, "--role", role]
        args = {**cfg.args, **(profile.args if profile else {})}
        gpus = cuda_devices(profile)
        env = {"CUDA_VISIBLE_DEVICES": ",".join(gpus)} if gpus else {}
        return LaunchSpec(argv=argv + flag_args(args), env=env)

    def abort_path(self, cfg: ModelConfig) -> str | None:
        return "/abort_requests"

    def capabilities(self, cfg: ModelConfig) -> set[str]:
        return {CHAT, COMPLETION, EMBEDDING, VISION}
