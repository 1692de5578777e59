"""The alert condition grammar: what it reads, what it refuses, and how it says so."""

from __future__ import annotations

import pytest

from modelfleet.errors import InvalidRequestError
from modelfleet.observability.alert_rules import METRICS, Condition, parse_condition

GOOD = [
    # seed 002's example
    ("gpu_utilization > 90", Condition("gpu_utilization", None, ">", 90.0, 0.0)),
    ('ttft_p95{model="qwen"} > 2', Condition("ttft_p95", "qwen", ">", 2.0, 0.0)),
    ("ttft_p95{model='org/qwen-7b'} > 2", Condition("ttft_p95", "org/qwen-7b", ">", 2.0)),
    ('ttft_p95 { model = "q" } > 2', Condition("ttft_p95", "q", ">", 2.0)),
    ("error_rate > 0.05 for 2m", Condition("error_rate", None, ">", 0.05, 120.0)),
    ("latency_p95 >= 1.5", Condition("latency_p95", None, ">=", 1.5)),
    ("latency_p95>=1500ms", Condition("latency_p95", None, ">=", 1.5)),
    ("tpot_mean < 0.25s for 30s", Condition("tpot_mean", None, "<", 0.25, 30.0)),
    ("error_rate <= 5%", Condition("error_rate", None, "<=", 0.05)),  # % of a ratio
    ("gpu_utilization > 90%", Condition("gpu_utilization", None, ">", 90.0)),
    ("gpu_temperature == 80", Condition("gpu_temperature", None, "==", 80.0)),
    ("queue_waiting != 0 for 1h", Condition("queue_waiting", None, "!=", 0.0, 3600.0)),
    ("running_requests > 12 for 500ms", Condition("running_requests", None, ">", 12.0, 0.5)),
    ("requests_per_second < .5", Condition("requests_per_second", None, "<", 0.5)),
    ("  disk_percent > 95  ", Condition("disk_percent", None, ">", 95.0)),
    ("""ttft_p50{model='say"hi"'} > 1""", Condition("ttft_p50", 'say"hi"', ">", 1.0)),
]


@pytest.mark.parametrize(("text", "parsed"), GOOD)
def test_parse_condition_reads_good_conditions(text: str, parsed: Condition) -> None:
    assert parse_condition(text) == parsed


def test_condition_text_round_trips_to_the_same_condition() -> None:
    for text, parsed in GOOD:
        assert parse_condition(parsed.text()) == parsed, text


BAD = [
    # (condition, words the message must contain, position)
    ("gpu_utilisation > 90", ["unknown metric 'gpu_utilisation'",
                              "did you mean 'gpu_utilization'", "error_rate"], 0),
    ("__import__('os')", ["unknown metric '__import__'", "known metrics"], 0),
    ("drop table > 1", ["unknown metric 'drop'"], 0),
    ("!!!", ["expected a metric name at position 0"], 0),
    ("", ["expected a metric name", "found the end"], 0),
    ("gpu_utilization", ["expected an operator", "found the end"], 15),
    ("gpu_utilization >", ["expected a number at position 17", "found the end"], 17),
    ("gpu_utilization => 1", ["expected an operator", "found '='"], 16),
    ("gpu_utilization >> 1", ["expected a number", "found '>'"], 17),
    ("gpu_utilization = 1", ["expected an operator", "found '='"], 16),
    ("error_rate > -1", ["expected a number", "'-'"], 13),
    ("error_rate > 5ms", ["error_rate is a ratio", "'ms' does not fit"], 14),
    ("gpu_temperature > 80%", ["gpu_temperature is °C", "'%' does not fit"], 20),
    ("queue_waiting > 3s", ["queue_waiting is a count", "'s' does not fit"], 17),
    ("error_rate > 5", ["ratio from 0 to 1", "write 5%"], 13),
    ("gpu_utilization > 101", ["is over 100"], 18),
    ("gpu_utilization > 90 junk", ["expected a unit (%, ms, s), 'for' or the end",
                                   "found 'junk'"], 21),
    ("gpu_utilization > 90 %%", ["'for <duration>' or the end", "found '%'"], 22),
    ("error_rate > 0.1 for", ["expected a duration"], 20),
    ("error_rate > 0.1 for 2", ["expected a duration unit (ms, s, m, h)"], 22),
    ("error_rate > 0.1 for 2d", ["expected a duration unit", "found 'd'"], 22),
    ("error_rate > 0.1 for 9999h", ["'for' is at most 7 days"], 21),
    ("error_rate > 0.1 for 2m x", ["expected the end of the condition", "found 'x'"], 24),
    ("error_rate > 0.1 for 0s %", ["expected the end of the condition", "found '%'"], 24),
    ('gpu_utilization{model="q"} > 1', ["measured for the whole host"], 15),
    ('ttft_p95{gpu="0"} > 1', ["expected the label 'model'", "found 'gpu'"], 9),
    ('ttft_p95{model="q" > 1', ["expected '}'", "found '>'"], 19),
    ('ttft_p95{model="q} > 1', ['expected a closing "'], 22),
    ("ttft_p95{model=q} > 1", ["expected a quoted model name"], 15),
    ('ttft_p95{model=""} > 1', ['"" is not a model name'], 15),
    ('ttft_p95{model="a b"} > 1', ['"a b" is not a model name'], 15),
    ("ttft_p95 > 1e3", ["expected a unit", "found 'e3'"], 12),
    ("ttft_p95 > 1; rm -rf /", ["expected a unit (%, ms, s), 'for' or the end",
                                "found ';'"], 12),
    ("ttft_p95 > .", ["expected a number", "found '.'"], 11),
    ("ttft_p95 ≥ 1", ["expected an operator", "found '≥'"], 9),
]


@pytest.mark.parametrize(("text", "words", "position"), BAD)
def test_parse_condition_refuses_with_position_and_expectation(
    text: str, words: list[str], position: int
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_condition(text)
    err = caught.value
    assert err.status == 422 and err.param == "condition"
    for word in words:
        assert word in err.message, (word, err.message)
    assert err.details is not None and err.details["position"] == position, err.details
    assert f"at position {position}" in err.message
    assert err.details["expected"]


def test_parse_condition_caps_the_input_length() -> None:
    huge = "error_rate > 0.1" + " " * 10_000
    with pytest.raises(InvalidRequestError) as caught:
        parse_condition(huge)
    assert caught.value.status == 422
    assert "10016 characters long; at most 200" in caught.value.message
    assert len(caught.value.message) < 100  # the input is not echoed back
    parse_condition(("error_rate > 0.1" + " " * 200)[:200])  # 200 is still fine


def test_parse_condition_refuses_what_is_not_a_string() -> None:
    with pytest.raises(InvalidRequestError, match="expected a string"):
        parse_condition(42)  # type: ignore[arg-type]


def test_metrics_say_which_exist_per_model() -> None:
    host = {name for name, m in METRICS.items() if not m.per_model}
    assert host == {"gpu_utilization", "gpu_temperature", "gpu_memory_percent", "cpu_percent",
                    "memory_percent", "disk_percent"}
    assert METRICS["error_rate"].unit == "ratio" and METRICS["ttft_p95"].unit == "seconds"


@pytest.mark.parametrize(("op", "value", "holds"), [
    (">", 2.0, False), (">", 2.1, True), (">=", 2.0, True), ("<", 2.0, False),
    ("<=", 2.0, True), ("==", 2.0, True), ("!=", 2.0, False), ("!=", 1.0, True),
])
def test_condition_holds(op: str, value: float, holds: bool) -> None:
    assert Condition("latency_p95", None, op, 2.0).holds(value) is holds
