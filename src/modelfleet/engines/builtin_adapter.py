"""The built-in engine: ``python -m modelfleet.engines.builtin_server``."""

from __future__ import annotations

import sys

from modelfleet.engines.base import (
    CHAT,
    COMPLETION,
    EMBEDDING,
    RERANK,
    EngineAdapter,
    LaunchSpec,
    cuda_devices,
    flag_args,
)
from modelfleet.engines.tasks import detect_task
from modelfleet.settings import ModelConfig, Profile


class BuiltinAdapter(EngineAdapter):
    name = "builtin"

    def task(self, cfg: ModelConfig) -> str:
        return detect_task(cfg.model) if cfg.task == "auto" else cfg.task

    def launch(
        self, cfg: ModelConfig, host: str, port: int, profile: Profile | None, role: str = "pd"
    ) -> LaunchSpec:
        argv = [
            sys.executable, "-m", "modelfleet.engines.builtin_server",
            "--model", cfg.model,
            "--host", host,
            "--port", str(port),
            "--served-model-name", cfg.name,
            "--task", self.task(cfg),
        ]
        args = dict(cfg.args)
        env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        if profile is not None:
            args.update(profile.args)
            cuda = cuda_devices(profile)
            if cuda:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(cuda)
                args.setdefault("device", "cuda")
        argv += flag_args(args)
        return LaunchSpec(argv=argv, env=env)

    def capabilities(self, cfg: ModelConfig) -> set[str]:
        task = self.task(cfg)
        if task == "embed":
            return {EMBEDDING, RERANK}
        if task == "rerank":
            return {RERANK}
        return {CHAT, COMPLETION}
