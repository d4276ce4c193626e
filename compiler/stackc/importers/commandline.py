"""Reading an engine's command line back into a model: which engine, which model, which typed flags.

Charts that take a verbatim command (Doubleword, KServe runtimes) say what they serve only there.
Flags stackc types become spec fields; every other flag stays, verbatim and in order, in
``engine_args``; flags stackc sets itself (host, port, metrics) are left to it.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

import attrs

from stackc.records import define

#: flag -> (serving field, converter); the value-taking flags of each engine that the spec types
_VLLM = {
    "--tensor-parallel-size": ("tensor_parallel", int), "-tp": ("tensor_parallel", int),
    "--pipeline-parallel-size": ("pipeline_parallel", int), "-pp": ("pipeline_parallel", int),
    "--max-model-len": ("max_context", int), "--gpu-memory-utilization": ("gpu_memory_fraction", float),
    "--dtype": ("dtype", str), "--quantization": ("quantization", str), "-q": ("quantization", str),
    "--max-num-seqs": ("max_concurrent_sequences", int), "--revision": ("revision", str),
    "--served-model-name": ("served_names", str), "--model": ("model", str), "--port": ("port", int),
    "--host": ("host", str), "--max-lora-rank": ("max_lora_rank", int),
}
_SGLANG = {
    "--model-path": ("model", str), "--model": ("model", str), "--tp-size": ("tensor_parallel", int),
    "--tp": ("tensor_parallel", int), "--pp-size": ("pipeline_parallel", int),
    "--context-length": ("max_context", int), "--mem-fraction-static": ("gpu_memory_fraction", float),
    "--dtype": ("dtype", str), "--quantization": ("quantization", str),
    "--max-running-requests": ("max_concurrent_sequences", int), "--revision": ("revision", str),
    "--served-model-name": ("served_names", str), "--port": ("port", int), "--host": ("host", str),
}
_SWITCHES = {
    "vllm": {"--enable-prefix-caching": ("prefix_caching", True), "--no-enable-prefix-caching": ("prefix_caching", False)},
    "sglang": {"--disable-radix-cache": ("prefix_caching", False), "--enable-metrics": ("metrics", True)},
}
DTYPES = ("auto", "half", "float16", "bfloat16", "float32")
SERVING = ("tensor_parallel", "pipeline_parallel", "max_context", "gpu_memory_fraction", "dtype", "quantization",
           "max_concurrent_sequences", "prefix_caching", "max_lora_rank")


@define
class EngineCommand:
    """What a command line serves: the engine, its model and the flags, sorted into spec fields."""

    engine: str  # vllm, sglang, or command (anything else)
    model: str | None = None
    fields: dict[str, Any] = attrs.field(factory=dict)
    served_names: list[str] = attrs.field(factory=list)
    extra_args: list[str] = attrs.field(factory=list)
    problems: list[str] = attrs.field(factory=list)


def words(command: Sequence[str], args: Sequence[str] = ()) -> list[str]:
    """command + args as argv, unwrapping ``sh -c "…"`` the way a shell would split it."""
    argv = [*command, *args]
    if len(argv) >= 3 and argv[0].rsplit("/", 1)[-1] in ("sh", "bash") and argv[1] == "-c":
        try:
            return shlex.split(argv[2]) + argv[3:]
        except ValueError:
            return argv
    return argv


def parse(argv: Sequence[str]) -> EngineCommand:
    """Recognise vLLM (``vllm serve``, the OpenAI api_server module) and SGLang (``sglang.launch_server``)."""
    argv = list(argv)
    program = argv[0].rsplit("/", 1)[-1] if argv else ""
    if program == "vllm" and argv[1:2] == ["serve"]:
        engine, rest = "vllm", argv[2:]
    elif program.startswith("python") and argv[1:2] == ["-m"] and argv[2:3] == ["vllm.entrypoints.openai.api_server"]:
        engine, rest = "vllm", argv[3:]
    elif program.startswith("python") and argv[1:2] == ["-m"] and argv[2:3] == ["sglang.launch_server"]:
        engine, rest = "sglang", argv[3:]
    else:
        return EngineCommand("command", extra_args=argv)
    found = EngineCommand(engine)
    table = _VLLM if engine == "vllm" else _SGLANG
    switches = _SWITCHES[engine]
    index = 0
    if engine == "vllm" and rest and not rest[0].startswith("-"):
        found.model, index = rest[0], 1
    while index < len(rest):
        word = rest[index]
        flag, _, inline = word.partition("=")
        normal = flag.replace("_", "-") if flag.startswith("--") else flag
        if normal in switches and not inline:
            field, value = switches[normal]
            if field != "metrics":
                found.fields[field] = value
            index += 1
            continue
        if normal not in table:
            found.extra_args.append(word)
            index += 1
            continue
        if inline or "=" in word:
            text, index = inline, index + 1
        elif index + 1 < len(rest):
            text, index = rest[index + 1], index + 2
        else:
            found.problems.append(f"{flag} has no value")
            break
        field, kind = table[normal]
        if field == "served_names":
            found.served_names.append(text)
            # vLLM takes several names after one flag
            while engine == "vllm" and index < len(rest) and not rest[index].startswith("-"):
                found.served_names.append(rest[index])
                index += 1
            continue
        try:
            value = kind(text)
        except ValueError:
            found.problems.append(f"{flag} expects {'a number' if kind is not str else 'a value'}, got {text!r}")
            continue
        if field == "model":
            found.model = text
        elif field == "dtype" and value not in DTYPES:
            found.extra_args += [flag, text]
        elif field not in ("host", "port"):  # stackc chooses where the engine listens
            found.fields[field] = value
    return found
