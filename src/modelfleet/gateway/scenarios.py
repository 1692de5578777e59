"""Prompt scenarios of the TGI-style ``POST /v1/generate`` (seed 004).

A scenario is a template with one ``{inputs}`` placeholder (``str.format``
syntax: literal braces are written ``{{`` and ``}}``). The rendered text is
sent as the single user message of a chat request, so the engine applies the
model's own chat template: clients never add ``<|im_start|>`` and the like.

Seed 004 names four scenarios; ``base`` (the default) is the input as-is.
Deployments may add or override templates by passing a mapping (from
settings, later); it is merged over :data:`DEFAULT_SCENARIOS`.

Contract of :func:`render_prompt`: it returns the prompt text or raises
``InvalidRequestError`` with code ``PROMPT_FORMAT_FAILED`` (400) when the
scenario is unknown, the inputs are empty, or the template cannot be
rendered. It never raises anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Formatter

from modelfleet.errors import InvalidRequestError

PROMPT_FORMAT_FAILED = "PROMPT_FORMAT_FAILED"
BASE = "base"

DEFAULT_SCENARIOS: Mapping[str, str] = {
    BASE: "{inputs}",
    "qa": (
        "Answer the following question accurately and concisely. "
        "Reply in the language of the question.\n\n"
        "Question: {inputs}\nAnswer:"
    ),
    "summarize": (
        "Summarize the following text in a few sentences, keeping its key points. "
        "Reply in the language of the text.\n\n{inputs}"
    ),
    "rewrite": (
        "Rewrite the following text so that it reads clearly and fluently, keeping its "
        "meaning and its language. Reply with the rewritten text only.\n\n{inputs}"
    ),
}


def prompt_format_error(message: str, *, param: str | None = None,
                        scenario: str | None = None) -> InvalidRequestError:
    """The 400 PROMPT_FORMAT_FAILED of seed 004."""
    details = {"scenario": scenario} if scenario is not None else None
    return InvalidRequestError(message, code=PROMPT_FORMAT_FAILED, param=param, details=details)


def scenarios(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every known scenario: the defaults, with ``extra`` added over them."""
    return {**DEFAULT_SCENARIOS, **(extra or {})}


def render_prompt(inputs: str, scenario: str | None = None,
                  extra: Mapping[str, str] | None = None) -> str:
    """The prompt for ``inputs`` under ``scenario`` (``base`` when None).

    Raises PROMPT_FORMAT_FAILED (400) for an unknown scenario, blank inputs or
    a template that does not render (a stray brace, a placeholder other than
    ``{inputs}``, or no ``{inputs}`` at all, which would drop the user's text).
    """
    name = BASE if scenario is None else scenario
    templates = scenarios(extra)
    template = templates.get(name)
    if template is None:
        known = ", ".join(sorted(templates))
        raise prompt_format_error(
            f"unknown scenario {name!r}; known scenarios: {known}", param="scenario",
            scenario=name)
    if not inputs.strip():
        raise prompt_format_error("inputs is empty: there is nothing to generate from",
                                  param="inputs", scenario=name)
    try:
        fields = {field for _, field, _, _ in Formatter().parse(template) if field is not None}
        if fields != {"inputs"}:
            raise ValueError(f"placeholders {sorted(fields)}, expected only 'inputs'")
        return template.format(inputs=inputs)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        # A template from configuration with a stray brace, another placeholder or none.
        raise prompt_format_error(
            f"the template of scenario {name!r} cannot be rendered: {exc}", scenario=name
        ) from None
