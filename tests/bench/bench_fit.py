"""The fit check against real engines: predictions beside start-up logs published in GitHub issues.

Run: python tests/bench/bench_fit.py   (exit 1 when a row misses)

Each row is a spec stackc checks the ordinary way (``stackc plan``), and what the engine logged
when it started with the same model, devices and settings (the source URL says where). A measured
success must be predicted within 15 % or 2 GiB of KV cache per device, whichever is larger; a
measured failure must be predicted as no-fit with the fix that worked in the hint.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

from stackc import pipeline
from stackc.plugins import load_registry


class Row(NamedTuple):
    source: str
    what: str
    spec: str  # the [models.m] table's body
    kv_gib: float  # "Available KV cache memory" / "kv_cache_size" the engine logged, per device
    fix: str | None = None  # a measured failure: the field the hint must name
    engine: str = "vllm"
    note: str = ""  # what the evidence says about a row the model cannot explain (printed with the row)


ROWS = (
    Row("https://github.com/vllm-project/vllm/issues/10517 (comment by kaspersiminski, 2024-12-02, the 20k run)",
        "Llama 3.1 8B, RTX 3090, 0.9, max_model_len 20000 (vLLM V0: profiles max_model_len tokens)",
        'model = "meta-llama/Llama-3.1-8B-Instruct"\naccelerators = { count = 1, memory = "24Gi" }\n'
        'serving = { max_context = 20000, gpu_memory_fraction = 0.9 }\n'
        'engine_options = { max_num_batched_tokens = 20000 }', 3.81),
    Row("https://github.com/vllm-project/vllm/issues/10517 (comment by kaspersiminski, 2024-12-02, the 29k run)",
        "same, max_model_len 29000: 'larger than the maximum number of tokens that can be stored in KV cache "
        "(23648)'",
        'model = "meta-llama/Llama-3.1-8B-Instruct"\naccelerators = { count = 1, memory = "24Gi" }\n'
        'serving = { max_context = 29000, gpu_memory_fraction = 0.9 }\n'
        'engine_options = { max_num_batched_tokens = 29000 }', 2.89, "max_context"),
    Row("https://github.com/vllm-project/vllm/issues/13061",
        "DeepSeek-R1-Distill-Qwen-14B, 2 × RTX 4090, TP 2, 0.98, default context 131072: 'larger than ... "
        "(81536)'",
        'model = "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"\naccelerators = { count = 2, memory = "24Gi" }\n'
        'serving = { tensor_parallel = 2, gpu_memory_fraction = 0.98 }\n'
        'engine_options = { max_num_batched_tokens = 2048 }', 8.69, "max_context"),
    Row("https://github.com/vllm-project/vllm/issues/21348",
        "Qwen3-235B-A22B-FP8, 4 × H100, TP 4, default 0.9, vLLM of July 2025 (LMCache connector loaded)",
        'model = "Qwen/Qwen3-235B-A22B-FP8"\naccelerators = { count = 4, type = "H100-80GB" }\n'
        'serving = { tensor_parallel = 4 }\nimage = "vllm/vllm-openai:v0.10.0"', 8.11,
        note="the issue names no version; vLLM's releases of that month, 0.9.2 and 0.10.0, take the memory "
             "snapshot before NCCL starts and hold the same communicators, so either gives the same NCCL term "
             "(0.86 GiB: two communicators of 24 ring channels and the custom all-reduce, docs/fit.md, 'The "
             "Qwen3-235B row, term by term'); with it the row is within bounds, without it 0.55 GiB beyond. "
             "The rest of the gap (1.7 GiB) is not identified from the log: it holds the KV cache alone"),
    Row("https://github.com/vllm-project/vllm/issues/21348 (the same issue's SGLang run)",
        "Qwen3-235B-A22B-FP8, 4 × H100, SGLang --tp 4 --mem-fraction-static 0.93: 'K size: 8.23 GB, V size: "
        "8.23 GB' per rank",
        'model = "Qwen/Qwen3-235B-A22B-FP8"\naccelerators = { count = 4, type = "H100-80GB" }\n'
        'serving = { tensor_parallel = 4, gpu_memory_fraction = 0.93 }', 16.46, engine="sglang"),
    Row("https://github.com/vllm-project/vllm/issues/23278",
        "gpt-oss-120b, 1 × H100, defaults: 'Available KV cache memory: -2.14 GiB'",
        'model = "openai/gpt-oss-120b"\naccelerators = { count = 1, type = "H100-80GB" }', -2.14,
        "tensor_parallel"),
    Row("https://github.com/vllm-project/vllm/issues/27508 (comment by matheusfvesco, 2025-10-31)",
        "gpt-oss-120b, 1 × H100, 0.95, max_num_batched_tokens 1024, default context 131072: 'Available KV cache "
        "memory: 1.71 GiB', then too little for one sequence of the model's context",
        'model = "openai/gpt-oss-120b"\naccelerators = { count = 1, type = "H100-80GB" }\n'
        'serving = { gpu_memory_fraction = 0.95 }\nengine_options = { max_num_batched_tokens = 1024 }', 1.71,
        "max_context"),
)


def predict(row: Row) -> tuple[object, list]:
    text = f'version = 1\n[stack]\nname = "bench"\n[models.m]\nengine = "{row.engine}"\n{row.spec}\n'
    registry = load_registry()
    checked = pipeline.check(["row.toml"], registry, texts=[("row.toml", text)], fit=False)
    [result], diagnostics = pipeline.plan_fit(checked, registry)
    return result.fit, diagnostics


def judge(row: Row) -> tuple[bool, str]:
    fit, diagnostics = predict(row)
    kv = fit.kv_cache_gib_per_device
    if row.fix is None:
        allowed = max(2.0, 0.15 * row.kv_gib)
        good = fit.status == "fits" and kv is not None and abs(kv - row.kv_gib) <= allowed
        return good, f"predicted {fit.status}, KV {kv} GiB (measured {row.kv_gib}, ±{allowed:.2f})"
    hints = " | ".join(d.hint or "" for d in diagnostics if d.code in ("E140", "E141"))
    good = fit.status == "no-fit" and f"{row.fix} = " in hints
    return good, f"predicted {fit.status}, KV {kv} GiB (measured {row.kv_gib}, failed); hint: {hints or '-'}"


def main() -> int:
    misses = 0
    for row in ROWS:
        good, detail = judge(row)
        misses += not good
        print(f"{'ok  ' if good else 'MISS'} {row.what}\n     {detail}\n     {row.source}")
        if row.note:
            print(f"     note: {row.note}")
    print(f"{len(ROWS) - misses} of {len(ROWS)} rows within bounds")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
