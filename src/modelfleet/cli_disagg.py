"""``modelfleet serve`` with seed 000's flags: instances started by hand, by role.

::

    modelfleet serve --model /models/Qwen2.5-VL-7B-Instruct --port 5580 \\
        --encode-addr-list /tmp/encoder_0 --pd-addr-list /tmp/prefill_decode_0 \\
        --proxy-addr /tmp/proxy --allowed-local-media-path /data/images

serves one external model whose instances are those addresses (``endpoints``,
``fleet/endpoints.py``); ``--prefill-addr-list`` and ``--decode-addr-list`` add P/D
instances. A path given to ``--model`` names the model by its last component and is
also an alias and the name the engines serve (``vllm serve PATH`` serves ``PATH``), so
clients may send either. Each list takes several addresses after one flag, as seed 000
writes them (``--pd-addr-list A B``), or the flag repeated.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from pydantic import ValidationError

from modelfleet.settings import ModelConfig

# Flag → the role of the addresses after it.
LIST_FLAGS = {
    "--encode-addr-list": "encode",
    "--pd-addr-list": "pd",
    "--prefill-addr-list": "prefill",
    "--decode-addr-list": "decode",
}


def expand_list_flags(argv: list[str]) -> list[str]:
    """``--pd-addr-list A B`` → ``--pd-addr-list A --pd-addr-list B`` (the CLI parser
    takes one value per flag); every other argument is left as it is."""
    out: list[str] = []
    flag: str | None = None  # the list flag whose values are being read
    given = False
    for arg in argv:
        if flag is not None and arg not in LIST_FLAGS and not arg.startswith("-"):
            out += [flag, arg]
            given = True
            continue
        if flag is not None and not given:
            out.append(flag)  # a list flag with no value: the parser says so
        flag, given = (arg, False) if arg in LIST_FLAGS else (None, False)
        if flag is None:
            out.append(arg)
    if flag is not None and not given:
        out.append(flag)
    return out


def endpoint_model(model: str | None, served_model_name: str | None,
                   lists: dict[str, list[str]]) -> ModelConfig:
    """The external model of seed 000's launch: ``lists`` maps a role to its addresses.
    ValueError without ``model``, or (from validation) when the layout cannot serve."""
    if not model:
        raise ValueError("--model names the model that the listed instances serve")
    path = PurePosixPath(model)
    name = served_model_name or path.name or model
    endpoints = [{"address": a, "role": role} for role, addresses in lists.items()
                 for a in addresses]
    try:
        return ModelConfig(
            name=name, engine="external", model=model,
            aliases=[model] if model != name else [], upstream_model=model,
            endpoints=endpoints, auto_start=True, idle_timeout=0)
    except ValidationError as exc:
        problems = (str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise ValueError("the address lists: " + "; ".join(problems)) from None
