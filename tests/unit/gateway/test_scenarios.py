import pytest

from modelfleet.errors import InvalidRequestError
from modelfleet.gateway.scenarios import DEFAULT_SCENARIOS, render_prompt, scenarios


def test_scenarios_seed_004_names_are_known() -> None:
    assert set(DEFAULT_SCENARIOS) == {"base", "qa", "summarize", "rewrite"}


def test_scenarios_base_is_the_input_as_is_and_the_default() -> None:
    text = "请用中文介绍你自己 {not a placeholder}"
    assert render_prompt(text) == text
    assert render_prompt(text, "base") == text


@pytest.mark.parametrize("name", ["qa", "summarize", "rewrite"])
def test_scenarios_templates_wrap_the_input_once(name: str) -> None:
    prompt = render_prompt("牛顿三大定律是什么？", name)
    assert prompt.count("牛顿三大定律是什么？") == 1
    assert prompt != "牛顿三大定律是什么？"
    assert "{" not in prompt


def test_scenarios_inputs_with_braces_are_not_formatted() -> None:
    assert render_prompt("{inputs} {0} {x}", "qa").count("{inputs} {0} {x}") == 1


def test_scenarios_extra_templates_add_and_override() -> None:
    extra = {"translate": "Translate to English: {inputs}", "qa": "Q: {inputs}"}
    assert render_prompt("你好", "translate", extra) == "Translate to English: 你好"
    assert render_prompt("why", "qa", extra) == "Q: why"
    assert set(scenarios(extra)) == {"base", "qa", "summarize", "rewrite", "translate"}
    assert render_prompt("x", "rewrite", extra) == render_prompt("x", "rewrite")


def _format_error(inputs: str, scenario: str | None, extra: dict[str, str] | None = None
                  ) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        render_prompt(inputs, scenario, extra)
    assert info.value.status == 400 and info.value.code == "PROMPT_FORMAT_FAILED"
    return info.value


def test_scenarios_unknown_scenario_is_prompt_format_failed() -> None:
    err = _format_error("hi", "poem")
    assert err.param == "scenario" and "poem" in err.message and "summarize" in err.message


@pytest.mark.parametrize("inputs", ["", "   \n\t"])
def test_scenarios_empty_inputs_is_prompt_format_failed(inputs: str) -> None:
    assert _format_error(inputs, "qa").param == "inputs"


@pytest.mark.parametrize("template", [
    "Answer {inputs", "Answer {question}: {inputs}", "{0} {inputs}", "no placeholder",
    "{inputs.upper}",
])
def test_scenarios_broken_template_is_prompt_format_failed(template: str) -> None:
    err = _format_error("hi", "bad", {"bad": template})
    assert err.details == {"scenario": "bad"}
