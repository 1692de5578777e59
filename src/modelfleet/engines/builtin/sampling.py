"""Turning one step's logits into next tokens: penalties, bias, temperature, top-k/top-p.

All functions work on a batch of rows (the ``n`` choices of one request decode
together, one row each) and run inside ``torch.inference_mode`` on the model's device.
Randomness comes only from the request's own ``torch.Generator``, so a seeded request
is reproducible whatever else the engine runs at the same time.
"""

from __future__ import annotations

import torch

from modelfleet.engines.builtin.protocol import SamplingParams


class LogitsShaper:
    """Per-request state for the logit adjustments that depend on tokens seen so far.

    ``seen`` marks tokens of the prompt or the output (for the multiplicative
    ``repetition_penalty``, as in HF and vLLM); ``counts`` counts output tokens only
    (for OpenAI's ``presence_penalty``/``frequency_penalty``). ``usable`` bounds the ids
    that may be sampled: checkpoints often pad the embedding matrix past the tokenizer's
    vocabulary, and those rows are untrained ids the tokenizer cannot decode.
    """

    def __init__(
        self,
        params: SamplingParams,
        prompt_ids: list[int],
        rows: int,
        vocab: int,
        usable: int,
        device: torch.device,
        no_stop_ids: list[int],
    ):
        self.params = params
        self.usable = min(usable, vocab)
        self.no_stop_ids = no_stop_ids
        self.counts: torch.Tensor | None = None
        self.seen: torch.Tensor | None = None
        if params.presence_penalty or params.frequency_penalty:
            self.counts = torch.zeros((rows, vocab), device=device)
        if params.repetition_penalty != 1.0:
            self.seen = torch.zeros((rows, vocab), dtype=torch.bool, device=device)
            ids = torch.tensor(
                [i for i in prompt_ids if i < vocab], device=device, dtype=torch.long
            )
            self.seen[:, ids] = True
        self.bias: torch.Tensor | None = None
        if params.logit_bias:
            self.bias = torch.zeros(vocab, device=device)
            for token, value in params.logit_bias.items():
                self.bias[token] = value

    def shape(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """The adjusted float32 logits ``[rows, vocab]`` for output position ``step``."""
        logits = logits.float()
        if self.usable < logits.shape[-1]:
            logits[:, self.usable :] = -float("inf")
        if self.seen is not None:
            rp = self.params.repetition_penalty
            penalised = torch.where(logits > 0, logits / rp, logits * rp)
            logits = torch.where(self.seen, penalised, logits)
        if self.counts is not None:
            logits = logits - self.params.frequency_penalty * self.counts
            logits = logits - self.params.presence_penalty * (self.counts > 0).float()
        if self.bias is not None:
            logits = logits + self.bias
        if step < self.params.min_tokens and self.no_stop_ids:
            # min_tokens: the end-of-sequence and stop ids may not be picked yet.
            logits[:, self.no_stop_ids] = -float("inf")
        return logits

    def observe(self, tokens: torch.Tensor) -> None:
        """Record the tokens just picked (``[rows]``) for the next step's penalties."""
        if self.counts is not None:
            self.counts.scatter_add_(
                1,
                tokens.unsqueeze(1),
                torch.ones_like(tokens, dtype=self.counts.dtype).unsqueeze(1),
            )
        if self.seen is not None:
            self.seen.scatter_(1, tokens.unsqueeze(1), True)


def sample(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator
) -> torch.Tensor:
    """Next token ids ``[rows]``: argmax at temperature 0, else a draw from the
    temperature-scaled distribution truncated to top-k and the top-p nucleus."""
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / params.temperature
    if params.top_k > 0 and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -float("inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the mass before it already reaches top_p; the first always stays.
        drop = (torch.cumsum(probs, dim=-1) - probs) >= params.top_p
        sorted_logits = sorted_logits.masked_fill(drop, -float("inf"))
        logits = torch.full_like(logits, -float("inf")).scatter(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """The request's own generator: seeded when asked, else from fresh OS entropy."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator
