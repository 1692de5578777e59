"""Text generation: a causal LM decoded token by token with a KV cache.

:class:`TextGenerator` holds the model and tokenizer (loaded once, read-only after), turns
requests into prompt ids, checks them against the context, and runs
:meth:`TextGenerator.generate` in a worker thread per prompt. The ``n`` choices of a
prompt decode together as the rows of one batch (same prompt, so no padding): one prefill,
then one forward per step with ``past_key_values``. Before each step the request's cancel
flag is checked, so an abort costs at most one step.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modelfleet.engines.builtin.config import DEFAULT_MAX_TOKENS
from modelfleet.engines.builtin.detokenizer import IncrementalDetokenizer
from modelfleet.engines.builtin.protocol import ChatRequest, SamplingParams
from modelfleet.engines.builtin.runtime import ChoiceFinished, JobContext, TextDelta
from modelfleet.engines.builtin.sampling import LogitsShaper, make_generator, sample
from modelfleet.engines.builtin.validate import bad

# Used when a tokenizer ships without a chat template: plain "role: content" lines.
FALLBACK_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
# Keyword names of apply_chat_template that chat_template_kwargs may not override.
_RESERVED_TEMPLATE_KWARGS = {
    "conversation",
    "tools",
    "tokenize",
    "add_generation_prompt",
    "continue_final_message",
    "chat_template",
    "return_dict",
    "return_tensors",
    "documents",
}
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
_DEFAULT_KEYS = ("temperature", "top_p", "top_k", "repetition_penalty")


@dataclass(frozen=True)
class GenerationJob:
    """One prompt to continue ``params.n`` times; its choices are numbered from
    ``first_index`` (completions with several prompts number them prompt-major)."""

    prompt_ids: list[int]
    params: SamplingParams
    max_tokens: int
    first_index: int = 0


class TextGenerator:
    """A causal LM, its tokenizer and the limits requests are checked against.

    ``generate`` may run in several threads at once: the model is only read (inference
    mode), and every request has its own KV cache, generator and detokenizers.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        device: torch.device,
        max_model_len: int,
        sampling_defaults: dict[str, Any] | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_model_len = max_model_len
        self.sampling_defaults = sampling_defaults or {}
        output = model.get_output_embeddings()
        self.vocab_size = (
            int(output.weight.shape[0]) if output is not None else int(model.config.vocab_size)
        )
        self.eos_ids = self._eos_ids()
        # Only the last position's logits are needed; models that can skip the others
        # (all recent transformers LMs) save a [prompt_len, vocab] matmul at prefill.
        forward_params = inspect.signature(model.forward).parameters
        self._forward_extra = {"logits_to_keep": 1} if "logits_to_keep" in forward_params else {}

    @classmethod
    def load(
        cls, path: str, device: str, dtype: torch.dtype, max_model_len: int | None = None
    ) -> TextGenerator:
        """Load ``path`` (a local directory; nothing is downloaded) onto ``device``."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
        model.to(device).eval()
        derived = next(
            (
                getattr(model.config, k)
                for k in _CONTEXT_KEYS
                if isinstance(getattr(model.config, k, None), int)
            ),
            2048,
        )
        generator = cls(
            model,
            tokenizer,
            torch.device(device),
            max_model_len or derived,
            _generation_defaults(Path(path)),
        )
        generator.warm_up()
        return generator

    def _eos_ids(self) -> set[int]:
        """End-of-sequence ids: the tokenizer's, the config's and the generation config's
        (chat models often end turns with a token that only the latter names)."""
        generation_config = getattr(self.model, "generation_config", None)
        ids: set[int] = set()
        for source in (
            self.tokenizer.eos_token_id,
            getattr(self.model.config, "eos_token_id", None),
            getattr(generation_config, "eos_token_id", None),
        ):
            if isinstance(source, int):
                ids.add(source)
            elif isinstance(source, list | tuple):
                ids.update(i for i in source if isinstance(i, int))
        return ids

    def warm_up(self) -> None:
        """One tiny forward pass, so the first request is not the one paying for lazy
        initialisation, and a broken checkpoint fails before the port opens."""
        with torch.inference_mode():
            token = min(self.eos_ids, default=0)
            self.model(input_ids=torch.tensor([[token]], device=self.device), use_cache=True)

    # Prompts.
    def render_chat(self, request: ChatRequest) -> str:
        """The prompt text of a chat request, from the tokenizer's chat template."""
        kwargs = {
            k: v
            for k, v in request.chat_template_kwargs.items()
            if k not in _RESERVED_TEMPLATE_KWARGS
        }
        try:
            text = self.tokenizer.apply_chat_template(
                request.messages,
                tools=request.tools,
                tokenize=False,
                add_generation_prompt=request.add_generation_prompt
                and not request.continue_final_message,
                continue_final_message=request.continue_final_message,
                chat_template=None if self.tokenizer.chat_template else FALLBACK_TEMPLATE,
                **kwargs,
            )
        except Exception as exc:  # jinja2 errors, raise_exception() in templates, bad kwargs
            raise bad(f"the chat template rejected the messages: {exc}", "messages") from exc
        return str(text)

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        """Token ids of ``text``. Chat prompts use ``add_special_tokens=False``: the
        template already wrote the BOS it wants."""
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, ids: list[int]) -> str:
        return str(
            self.tokenizer.decode(
                ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
            )
        )

    def budget(self, prompt_len: int, params: SamplingParams, param: str = "messages") -> int:
        """The completion length for a prompt: the request's ``max_tokens``, else what the
        context leaves capped at 256. Raises the 400 vLLM gives when it does not fit, or
        when a token id named by the parameters is outside the vocabulary."""
        for token in [*params.stop_token_ids, *params.logit_bias]:
            if token >= self.vocab_size:
                raise bad(
                    f"token id {token} is outside the vocabulary ({self.vocab_size})",
                    "logit_bias" if token in params.logit_bias else "stop_token_ids",
                )
        if prompt_len == 0:
            raise bad("the prompt is empty (no tokens)", param)
        room = self.max_model_len - prompt_len
        wanted = params.max_tokens
        if room <= 0 and wanted != 0:
            raise bad(
                f"This model's maximum context length is {self.max_model_len} tokens. "
                f"However, your prompt has {prompt_len} tokens. Please reduce the length "
                "of the prompt.",
                param,
            )
        if wanted is None:
            return min(DEFAULT_MAX_TOKENS, room)
        if wanted > room:
            raise bad(
                f"This model's maximum context length is {self.max_model_len} tokens. "
                f"However, you requested {prompt_len + wanted} tokens ({prompt_len} in "
                f"the prompt, {wanted} in the completion). Please reduce the length of "
                "the prompt or completion.",
                "max_tokens",
            )
        return wanted

    # Decoding.
    def generate(self, job: GenerationJob, handle: JobContext) -> None:
        """Decode ``job`` in the calling (worker) thread, emitting a :class:`TextDelta` per
        new text piece and a :class:`ChoiceFinished` per choice; returns when every choice
        is finished or the request is cancelled (the rest finish with reason ``abort``)."""
        params, n = job.params, job.params.n
        end_ids = set() if params.ignore_eos else self.eos_ids
        stop_ids = set(params.stop_token_ids)
        decoders = [
            IncrementalDetokenizer(
                self.tokenizer,
                params.stop,
                skip_special_tokens=params.skip_special_tokens,
                include_stop=params.include_stop_str_in_output,
            )
            for _ in range(n)
        ]
        done = [False] * n

        def finish(i: int, reason: str, stop_reason: str | int | None, tokens: int) -> None:
            rest = decoders[i].flush()
            if rest:
                handle.emit(TextDelta(job.first_index + i, rest))
            handle.emit(ChoiceFinished(job.first_index + i, reason, stop_reason, tokens))
            done[i] = True

        step = 0
        with torch.inference_mode():
            shaper = LogitsShaper(
                params,
                job.prompt_ids,
                n,
                self.vocab_size,
                len(self.tokenizer),
                self.device,
                sorted(end_ids | stop_ids),
            )
            generator = make_generator(params.seed, self.device)
            inputs = torch.tensor([job.prompt_ids] * n, dtype=torch.long, device=self.device)
            past = None
            while step < job.max_tokens and not handle.cancel.is_set():
                out = self.model(
                    input_ids=inputs, past_key_values=past, use_cache=True, **self._forward_extra
                )
                past = out.past_key_values
                tokens = sample(shaper.shape(out.logits[:, -1, :], step), params, generator)
                shaper.observe(tokens)
                step += 1
                handle.count_tokens(done.count(False))
                for i, token in enumerate(tokens.tolist()):
                    if done[i]:
                        continue
                    if token in end_ids or token in stop_ids:
                        finish(i, "stop", token if token in stop_ids else None, step)
                        continue
                    piece = decoders[i].push(token)
                    if piece:
                        handle.emit(TextDelta(job.first_index + i, piece))
                    if decoders[i].stopped is not None:
                        finish(i, "stop", decoders[i].stopped, step)
                    elif step >= job.max_tokens:
                        finish(i, "length", None, step)
                if all(done):
                    return
                # Finished rows keep decoding (their output is ignored): the batch stays
                # rectangular, which is cheaper than re-slicing the cache for small n.
                inputs = tokens.unsqueeze(1)
        for i in range(n):
            if not done[i]:
                finish(i, "abort" if handle.cancel.is_set() else "length", None, step)


def _generation_defaults(model_dir: Path) -> dict[str, Any]:
    """Sampling defaults a checkpoint's ``generation_config.json`` states explicitly
    (vLLM's ``--generation-config auto``); request fields override them."""
    try:
        data = json.loads((model_dir / "generation_config.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        k: data[k]
        for k in _DEFAULT_KEYS
        if isinstance(data.get(k), int | float) and not isinstance(data.get(k), bool)
    }
