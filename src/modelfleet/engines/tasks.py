"""What a Hugging Face model directory is for: chat, embed or rerank."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

Task = Literal["chat", "embed", "rerank"]


def detect_task(path: str | Path) -> Task:
    """``embed`` for a sentence-transformers dir, ``rerank`` for a sequence
    classifier (cross-encoder), otherwise ``chat`` (a causal language model)."""
    root = Path(path)
    if (root / "modules.json").exists() or (root / "config_sentence_transformers.json").exists():
        return "embed"
    try:
        config = json.loads((root / "config.json").read_text())
    except (OSError, ValueError):
        return "chat"
    architectures = config.get("architectures") or []
    if any(str(a).endswith("ForSequenceClassification") for a in architectures):
        return "rerank"
    return "chat"
