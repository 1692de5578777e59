"""Pooling models: sentence-transformers embedders and cross-encoder rerankers.

Both classes run in worker threads (see :mod:`.runtime`), under ``torch.inference_mode``,
and report real token counts from their own tokenizer for ``usage``. Both answer
relevance questions through the same two methods, so the rerank and score routes do not
care which kind of model they have: an embedder scores by cosine similarity, a
cross-encoder by reading the pair together.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from modelfleet.errors import UnavailableError

_BATCH = 32


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise UnavailableError("the request was cancelled")


class Embedder:
    """A ``SentenceTransformer``; embeddings are L2-normalised float32 on the CPU."""

    def __init__(self, model: Any):
        self.model = model
        self.tokenizer = model.tokenizer
        self.max_model_len = int(model.max_seq_length or 512)
        self.dimensions = int(model.get_embedding_dimension())

    @classmethod
    def load(cls, path: str, device: str, dtype: torch.dtype) -> Embedder:
        """Load ``path`` (local only) onto ``device``."""
        from sentence_transformers import SentenceTransformer

        model_kwargs = None if dtype == torch.float32 else {"dtype": dtype}
        model = SentenceTransformer(
            path, device=device, local_files_only=True, model_kwargs=model_kwargs
        )
        model.eval()
        return cls(model)

    def _features(self, batch: list[str | list[int]]) -> dict[str, Any]:
        """Model inputs of a batch that is all texts or all token-id lists."""
        if isinstance(batch[0], str):
            return dict(self.model.preprocess(batch))
        # Token ids are used as given (like vLLM), cut to the model's window.
        rows = [list(ids)[: self.max_model_len] for ids in batch]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        return {
            "input_ids": torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
            "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
        }

    def embed(
        self, inputs: list[str | list[int]], cancel: threading.Event | None = None
    ) -> tuple[torch.Tensor, list[int]]:
        """Embeddings ``[len(inputs), dimensions]`` in input order, and each input's
        token count (after truncation to the model's window, as the model saw it)."""
        vectors: list[torch.Tensor | None] = [None] * len(inputs)
        counts = [0] * len(inputs)
        device = self.model.device
        with torch.inference_mode():
            for start in range(0, len(inputs), _BATCH):
                _check(cancel)
                chunk = list(range(start, min(start + _BATCH, len(inputs))))
                # Each forward is homogeneous: texts go through the model's own
                # preprocessing, token ids are padded here.
                for same in _split_kinds(chunk, inputs):
                    features = self._features([inputs[i] for i in same])
                    lengths = features["attention_mask"].sum(dim=1).tolist()
                    features = {
                        k: v.to(device) if isinstance(v, torch.Tensor) else v
                        for k, v in features.items()
                    }
                    out = self.model.forward(features)["sentence_embedding"].float()
                    out = torch.nn.functional.normalize(out, dim=-1).cpu()
                    for row, i in enumerate(same):
                        vectors[i] = out[row]
                        counts[i] = int(lengths[row])
        return torch.stack([v for v in vectors if v is not None]), counts

    def rank(
        self, query: str, documents: list[str], cancel: threading.Event | None = None
    ) -> tuple[list[float], int]:
        """Cosine similarity of the query with each document; tokens embedded."""
        if not documents:
            return [], 0
        vectors, counts = self.embed([query, *documents], cancel)
        return (vectors[1:] @ vectors[0]).tolist(), sum(counts)

    def score_pairs(
        self, pairs: list[tuple[str, str]], cancel: threading.Event | None = None
    ) -> tuple[list[float], int]:
        """Cosine similarity of each pair; tokens embedded."""
        if not pairs:
            return [], 0
        vectors, counts = self.embed([text for pair in pairs for text in pair], cancel)
        return (vectors[0::2] * vectors[1::2]).sum(dim=-1).tolist(), sum(counts)


def _split_kinds(chunk: list[int], inputs: list[str | list[int]]) -> list[list[int]]:
    texts = [i for i in chunk if isinstance(inputs[i], str)]
    ids = [i for i in chunk if not isinstance(inputs[i], str)]
    return [group for group in (ids, texts) if group]


class CrossScorer:
    """A ``CrossEncoder``: relevance of (query, document) read together, in [0, 1] for
    single-label models (the model's own activation, usually a sigmoid)."""

    def __init__(self, model: Any):
        self.model = model
        self.tokenizer = model.tokenizer
        limit = getattr(model, "max_seq_length", None) or self.tokenizer.model_max_length
        self.max_model_len = int(limit if limit and limit < 1_000_000 else 512)

    @classmethod
    def load(cls, path: str, device: str, dtype: torch.dtype) -> CrossScorer:
        """Load ``path`` (local only) onto ``device``."""
        from sentence_transformers import CrossEncoder

        model_kwargs = None if dtype == torch.float32 else {"dtype": dtype}
        return cls(
            CrossEncoder(path, device=device, local_files_only=True, model_kwargs=model_kwargs)
        )

    def score_pairs(
        self, pairs: list[tuple[str, str]], cancel: threading.Event | None = None
    ) -> tuple[list[float], int]:
        """One relevance score per pair; tokens the model read."""
        if not pairs:
            return [], 0
        scores: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(pairs), _BATCH):
                _check(cancel)
                chunk = pairs[start : start + _BATCH]
                out = self.model.predict(
                    chunk, batch_size=_BATCH, show_progress_bar=False, convert_to_tensor=True
                )
                out = out.float().reshape(len(chunk), -1)
                # Two-label models (irrelevant, relevant): the probability of the last.
                column = out[:, 0] if out.shape[1] == 1 else out.softmax(dim=-1)[:, -1]
                scores += column.cpu().tolist()
        encoded = self.tokenizer(
            [q for q, _ in pairs],
            [d for _, d in pairs],
            truncation=True,
            max_length=self.max_model_len,
        )
        return scores, sum(len(ids) for ids in encoded["input_ids"])

    def rank(
        self, query: str, documents: list[str], cancel: threading.Event | None = None
    ) -> tuple[list[float], int]:
        """Relevance of each document to the query; tokens the model read."""
        return self.score_pairs([(query, doc) for doc in documents], cancel)
