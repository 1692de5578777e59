"""The generation loop, detokenizer and worker pool, in process, on a random tiny Llama."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from modelfleet.engines.builtin.detokenizer import IncrementalDetokenizer
from modelfleet.engines.builtin.generator import GenerationJob, TextGenerator
from modelfleet.engines.builtin.protocol import ChatRequest, SamplingParams
from modelfleet.engines.builtin.runtime import ChoiceFinished, Engine, TextDelta
from modelfleet.errors import InvalidRequestError


@pytest.fixture(scope="module")
def gen(tiny_llama_dir: Path) -> TextGenerator:
    torch.set_num_threads(1)
    return TextGenerator.load(str(tiny_llama_dir), "cpu", torch.float32)


class FakeHandle:
    """What ``generate`` needs of a RequestHandle, recording events; optionally sets the
    cancel flag once ``cancel_at`` tokens have been generated."""

    def __init__(self, cancel_at: int | None = None):
        self.cancel = threading.Event()
        self.events: list[Any] = []
        self.tokens = 0
        self.cancel_at = cancel_at

    def emit(self, event: Any) -> None:
        self.events.append(event)

    def count_tokens(self, k: int = 1) -> None:
        self.tokens += k
        if self.cancel_at is not None and self.tokens >= self.cancel_at:
            self.cancel.set()

    def texts(self, n: int = 1) -> list[str]:
        return [
            "".join(e.text for e in self.events if isinstance(e, TextDelta) and e.index == i)
            for i in range(n)
        ]

    def finished(self) -> dict[int, ChoiceFinished]:
        return {e.index: e for e in self.events if isinstance(e, ChoiceFinished)}


def run(
    gen: TextGenerator,
    prompt: str = "hello world",
    max_tokens: int = 20,
    handle: FakeHandle | None = None,
    **params: Any,
) -> FakeHandle:
    handle = handle or FakeHandle()
    ids = gen.encode(prompt, add_special_tokens=True)
    gen.generate(GenerationJob(ids, SamplingParams(**params), max_tokens), handle)
    return handle


def test_greedy_is_deterministic_and_matches_hf_generate(gen: TextGenerator) -> None:
    first = run(gen, temperature=0, ignore_eos=True)
    second = run(gen, temperature=0, ignore_eos=True)
    assert first.texts() == second.texts()
    assert first.finished()[0].reason == "length" and first.finished()[0].tokens == 20
    ids = gen.encode("hello world", add_special_tokens=True)
    with torch.inference_mode():
        out = gen.model.generate(
            torch.tensor([ids]), max_new_tokens=20, min_new_tokens=20, do_sample=False
        )
    expected = gen.tokenizer.decode(
        out[0, len(ids) :], skip_special_tokens=True, clean_up_tokenization_spaces=False
    )
    assert first.texts()[0] == expected


def test_seed_makes_sampling_reproducible(gen: TextGenerator) -> None:
    a = run(gen, temperature=1.0, seed=7, ignore_eos=True, max_tokens=30)
    b = run(gen, temperature=1.0, seed=7, ignore_eos=True, max_tokens=30)
    c = run(gen, temperature=1.0, seed=8, ignore_eos=True, max_tokens=30)
    assert a.texts() == b.texts()
    assert a.texts() != c.texts()


def test_n_choices_decode_together(gen: TextGenerator) -> None:
    handle = run(gen, temperature=1.0, seed=3, n=3, ignore_eos=True, max_tokens=12)
    finished = handle.finished()
    assert sorted(finished) == [0, 1, 2]
    assert all(f.reason == "length" and f.tokens == 12 for f in finished.values())
    assert handle.tokens == 36
    assert len(set(handle.texts(3))) > 1


def test_stop_string_is_cut_and_reported(gen: TextGenerator) -> None:
    full = run(gen, temperature=0, ignore_eos=True, max_tokens=40).texts()[0]
    # A stop string from the middle of the greedy output, first occurring at `at`.
    stop = next(
        full[i : i + 3]
        for i in range(4, len(full) - 3)
        if "\ufffd" not in full[i : i + 3] and full.find(full[i : i + 3]) == i
    )
    at = full.find(stop)
    handle = run(gen, temperature=0, ignore_eos=True, max_tokens=40, stop=[stop])
    assert handle.texts()[0] == full[:at]
    assert (handle.finished()[0].reason, handle.finished()[0].stop_reason) == ("stop", stop)
    kept = run(
        gen,
        temperature=0,
        ignore_eos=True,
        max_tokens=40,
        stop=[stop],
        include_stop_str_in_output=True,
    )
    assert kept.texts()[0] == full[: at + len(stop)]


def test_max_tokens_gives_length(gen: TextGenerator) -> None:
    handle = run(gen, temperature=1.0, ignore_eos=True, max_tokens=7)
    assert handle.finished()[0].reason == "length"
    assert handle.finished()[0].tokens == 7 == handle.tokens


def test_eos_min_tokens_and_stop_token_ids(gen: TextGenerator) -> None:
    eos = gen.tokenizer.eos_token_id
    forced = {eos: 100.0}
    handle = run(gen, logit_bias=forced)
    assert handle.texts() == [""] and handle.finished()[0].reason == "stop"
    assert handle.finished()[0].tokens == 1 and handle.finished()[0].stop_reason is None
    assert run(gen, logit_bias=forced, min_tokens=3).finished()[0].tokens == 4
    assert (
        run(gen, logit_bias=forced, ignore_eos=True, max_tokens=5).finished()[0].reason == "length"
    )
    token = gen.encode("hello", add_special_tokens=False)[0]
    stopped = run(gen, logit_bias={token: 100.0}, stop_token_ids=[token]).finished()[0]
    assert (stopped.reason, stopped.stop_reason, stopped.tokens) == ("stop", token, 1)


def test_cancel_stops_within_one_step(gen: TextGenerator) -> None:
    handle = run(
        gen, handle=FakeHandle(cancel_at=3), temperature=1.0, ignore_eos=True, max_tokens=500
    )
    assert handle.tokens == 3
    assert handle.finished()[0].reason == "abort"


def test_budget(gen: TextGenerator) -> None:
    assert gen.budget(10, SamplingParams()) == 256
    assert gen.budget(gen.max_model_len - 5, SamplingParams()) == 5
    assert gen.budget(10, SamplingParams(max_tokens=20)) == 20
    with pytest.raises(InvalidRequestError, match="maximum context length") as info:
        gen.budget(gen.max_model_len, SamplingParams())
    assert info.value.status == 400
    with pytest.raises(InvalidRequestError, match="maximum context length") as info:
        gen.budget(10, SamplingParams(max_tokens=gen.max_model_len))
    assert info.value.param == "max_tokens"
    with pytest.raises(InvalidRequestError, match="outside the vocabulary"):
        gen.budget(10, SamplingParams(logit_bias={10**6: 1.0}))


def test_chat_template_renders_with_generation_prompt(gen: TextGenerator) -> None:
    req = ChatRequest([{"role": "user", "content": "hi"}], SamplingParams())
    assert gen.render_chat(req) == "<|user|>hi</s><|assistant|>"


def test_detokenizer_handles_multibyte_characters(gen: TextGenerator) -> None:
    # The emoji and the euro sign are not in the tokenizer's training text, so they are
    # split into byte tokens that decode to U+FFFD on their own.
    text = "héllo wörld: 日本語 ✓ 🎉€ done"
    ids = gen.encode(text, add_special_tokens=False)
    assert any(gen.tokenizer.decode([i]) == "\ufffd" for i in ids)
    detok = IncrementalDetokenizer(gen.tokenizer, [])
    pieces = [detok.push(i) for i in ids]
    pieces.append(detok.flush())
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)


def test_detokenizer_holds_back_a_split_stop_string(gen: TextGenerator) -> None:
    ids = gen.encode("hello world, how are you", add_special_tokens=False)
    detok = IncrementalDetokenizer(gen.tokenizer, ["lo wo", "zzz"])
    out = []
    for token in ids:
        out.append(detok.push(token))
        if detok.stopped:
            break
    assert "".join(out) == "hel" and detok.stopped == "lo wo"
    assert detok.flush() == ""


async def test_engine_abort_is_counted(gen: TextGenerator) -> None:
    engine = Engine(max_concurrency=2)
    job = GenerationJob(
        gen.encode("hello", add_special_tokens=True),
        SamplingParams(temperature=1.0, ignore_eos=True),
        3000,
    )
    handle = engine.submit("req-1", [lambda h: gen.generate(job, h)], prompt_tokens=1)
    reasons = []
    async for event in handle.events():
        if isinstance(event, TextDelta):
            handle.abort()
        elif isinstance(event, ChoiceFinished):
            reasons.append(event.reason)
    assert reasons == ["abort"]
    stats = engine.stats.snapshot()
    assert (stats["aborted"], stats["running"], stats["waiting"], stats["completed"]) == (
        1,
        0,
        0,
        0,
    )
    assert stats["generation_tokens_total"] < 100
    assert engine.shutdown(wait_s=1)


async def test_requests_wait_for_a_free_worker() -> None:
    """With one worker, a second request waits until the first job returns.

    The first job blocks on an event, so the check does not depend on how fast
    the machine generates.
    """
    engine = Engine(max_concurrency=1)
    started, release = threading.Event(), threading.Event()

    def blocking(handle: object) -> str:
        started.set()
        release.wait(10)
        return "first"

    first = engine.submit("a", [blocking], prompt_tokens=1)
    second = engine.submit("b", [lambda h: "second"], prompt_tokens=1)
    assert await asyncio.to_thread(started.wait, 10)
    snapshot = engine.stats.snapshot()
    assert (snapshot["running"], snapshot["waiting"]) == (1, 1)
    release.set()
    assert await first.result() == "first"
    assert await second.result() == "second"
    snapshot = engine.stats.snapshot()
    assert (snapshot["running"], snapshot["waiting"], snapshot["completed"]) == (0, 0, 2)
    assert snapshot["prompt_tokens_total"] == 2
    assert engine.shutdown(wait_s=1)


TINY_CHAT = Path(__file__).parents[4] / "src" / "modelfleet" / "assets" / "tiny-chat"


@pytest.mark.skipif(not (TINY_CHAT / "config.json").is_file(), reason="tiny-chat asset absent")
def test_trained_tiny_chat_matches_hf_generate_and_stops_at_eos() -> None:
    gen = TextGenerator.load(str(TINY_CHAT), "cpu", torch.float32)
    req = ChatRequest([{"role": "user", "content": "What is 2 plus 3?"}], SamplingParams())
    ids = gen.encode(gen.render_chat(req), add_special_tokens=False)
    handle = FakeHandle()
    gen.generate(GenerationJob(ids, SamplingParams(temperature=0), 64), handle)
    with torch.inference_mode():
        out = gen.model.generate(torch.tensor([ids]), max_new_tokens=64, do_sample=False)
    new = out[0, len(ids) :]
    expected = gen.tokenizer.decode(new, skip_special_tokens=True)
    assert handle.texts()[0] == expected and expected
    finished = handle.finished()[0]
    assert finished.reason == "stop" and finished.tokens == len(new)
