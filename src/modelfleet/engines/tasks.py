"""What a Hugging Face model directory is for: chat, embed or rerank."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

Task = Literal["chat", "embed", "rerank"]


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def detect_task(model_dir: str | os.PathLike[str]) -> Task:
    """The task a model directory is for.

    A sentence-transformers directory (``modules.json`` or
    ``config_sentence_transformers.json``) embeds, unless it says it is a CrossEncoder
    (sentence-transformers >= 4 saves cross-encoders with the same files); a config whose
    architecture is ``*ForSequenceClassification`` reranks; anything else is a causal LM.
    """
    root = Path(model_dir)
    st_config = root / "config_sentence_transformers.json"
    if st_config.is_file() and read_json(st_config).get("model_type") == "CrossEncoder":
        return "rerank"
    if (root / "modules.json").is_file() or st_config.is_file():
        return "embed"
    architectures = read_json(root / "config.json").get("architectures") or []
    if any(str(a).endswith("ForSequenceClassification") for a in architectures):
        return "rerank"
    return "chat"
