"""``stackc-llama-server``: llama.cpp's server, run from a ``llama-server`` command line on any CPU.

``stackc up`` and the real-engine tests run exactly the command line the llamacpp engine
compiles. A prebuilt ``llama-server`` binary is tied to the CPU it was built for (one built for
AVX-512 dies with SIGILL elsewhere), so this runner takes the same flags and environment
variables and serves through ``xllamacpp``: llama.cpp's own C++ server in a portable wheel
(x86-64 with AVX2, with or without AVX-512; arm64). Flag names and ``LLAMA_ARG_*`` variables are
llama-server's (build b10434); an option it does not map is refused, never ignored.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence

PROG = "stackc-llama-server"
REAL_BINARY_HINT = "put llama.cpp's own llama-server on the PATH for every option"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{PROG}: error: {message} ({REAL_BINARY_HINT})\n")


def _parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0], allow_abbrev=False)

    def option(*flags: str, env: str | None = None, **kwargs: object) -> None:
        if env and env in environ:
            kwargs["default"] = environ[env]
        parser.add_argument(*flags, **kwargs)  # type: ignore[arg-type]

    def switch(on: Sequence[str], off: Sequence[str], env: str, default: bool) -> None:
        dest = on[-1].lstrip("-").replace("-", "_")
        if environ.get(env):
            default = environ[env].lower() in ("1", "true", "on", "enabled")
        parser.add_argument(*on, dest=dest, action="store_true", default=default)
        if off:
            parser.add_argument(*off, dest=dest, action="store_false")

    option("-m", "--model", env="LLAMA_ARG_MODEL")
    option("-hf", "-hfr", "--hf-repo", env="LLAMA_ARG_HF_REPO")
    option("-hff", "--hf-file", env="LLAMA_ARG_HF_FILE")
    option("--host", env="LLAMA_ARG_HOST", default="127.0.0.1")
    option("--port", env="LLAMA_ARG_PORT", type=int, default=8080)
    option("-a", "--alias", env="LLAMA_ARG_ALIAS")
    option("-c", "--ctx-size", env="LLAMA_ARG_CTX_SIZE", type=int)
    option("-np", "--parallel", env="LLAMA_ARG_N_PARALLEL", type=int)
    option("-t", "--threads", env="LLAMA_ARG_THREADS", type=int)
    option("-ngl", "--gpu-layers", "--n-gpu-layers", env="LLAMA_ARG_N_GPU_LAYERS", type=int)
    option("-b", "--batch-size", env="LLAMA_ARG_BATCH", type=int)
    option("-ub", "--ubatch-size", env="LLAMA_ARG_UBATCH", type=int)
    option("-n", "--predict", "--n-predict", env="LLAMA_ARG_N_PREDICT", type=int)
    option("-to", "--timeout", env="LLAMA_ARG_TIMEOUT", type=int)
    option("--threads-http", env="LLAMA_ARG_THREADS_HTTP", type=int)
    option("-s", "--seed", type=int)
    option("-lv", "--verbosity", "--log-verbosity", type=int)
    option("--api-key", env="LLAMA_API_KEY")
    option("--api-key-file", env="LLAMA_ARG_API_KEY_FILE")
    option("--api-prefix", env="LLAMA_ARG_API_PREFIX")
    option("--chat-template-file")
    switch(("--metrics",), (), "LLAMA_ARG_ENDPOINT_METRICS", False)
    switch(("--props",), (), "LLAMA_ARG_ENDPOINT_PROPS", False)
    switch(("--embedding", "--embeddings"), (), "LLAMA_ARG_EMBEDDINGS", False)
    switch(("--cache-prompt",), ("--no-cache-prompt",), "LLAMA_ARG_CACHE_PROMPT", True)
    switch(("--slots",), ("--no-slots",), "LLAMA_ARG_ENDPOINT_SLOTS", True)
    switch(("--jinja",), ("--no-jinja",), "LLAMA_ARG_JINJA", True)
    switch(("-cb", "--cont-batching"), ("-nocb", "--no-cont-batching"), "LLAMA_ARG_CONT_BATCHING", True)
    return parser


def _api_keys(args: argparse.Namespace) -> list[str]:
    keys = [key for key in (args.api_key or "").split(",") if key]
    if args.api_key_file:
        with open(args.api_key_file, encoding="utf-8") as handle:
            keys += [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    return keys


def params(argv: Sequence[str], environ: Mapping[str, str]) -> object:
    """xllamacpp ``CommonParams`` for a llama-server command line (exit 2 on what it can't run)."""
    import xllamacpp

    parser = _parser(environ)
    args = parser.parse_args(argv)
    if args.hf_repo or args.hf_file:
        parser.error("--hf-repo/--hf-file: this runner loads a local GGUF file only; download it and pass -m FILE")
    if not args.model:
        parser.error("-m/--model FILE is required")
    result = xllamacpp.CommonParams()
    result.model.path = args.model
    result.hostnames = [args.host]
    result.port = args.port
    result.endpoint_metrics = args.metrics
    result.endpoint_slots = args.slots
    result.endpoint_props = args.props
    result.cache_prompt = args.cache_prompt
    result.use_jinja = args.jinja
    result.cont_batching = args.cont_batching
    result.embedding = args.embeddings
    result.api_keys = _api_keys(args)
    if args.alias:
        result.model_alias = {name for name in args.alias.split(",") if name}
    if args.chat_template_file:
        with open(args.chat_template_file, encoding="utf-8") as handle:
            result.chat_template = handle.read()
    if args.api_prefix:
        result.api_prefix = args.api_prefix
    if args.threads is not None:
        result.cpuparams.n_threads = args.threads
        result.cpuparams_batch.n_threads = args.threads
    if args.timeout is not None:
        result.timeout_read = result.timeout_write = args.timeout
    if args.seed is not None:
        result.sampling.seed = args.seed
    for name, attribute in (("ctx_size", "n_ctx"), ("parallel", "n_parallel"), ("gpu_layers", "n_gpu_layers"),
                            ("batch_size", "n_batch"), ("ubatch_size", "n_ubatch"), ("predict", "n_predict"),
                            ("threads_http", "n_threads_http"), ("verbosity", "verbosity")):
        value = getattr(args, name)
        if value is not None:
            setattr(result, attribute, value)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    try:
        import xllamacpp  # the engine itself: an optional dependency (the `local` extra)
    except ImportError:
        print(f"{PROG}: error: the xllamacpp package is not installed: install stackc's `local` extra "
              f"(pip install -e '.[local]' in a checkout), or {REAL_BINARY_HINT}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        configured = params(sys.argv[1:] if argv is None else argv, os.environ)
    except OSError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    try:
        server = xllamacpp.Server(configured)
    except (RuntimeError, ValueError) as error:
        print(f"{PROG}: error: cannot start: {error}", file=sys.stderr)
        return 1
    print(f"{PROG}: listening on {server.listening_address}", file=sys.stderr, flush=True)
    stop.wait()
    del server  # joins llama.cpp's server threads: in-flight requests end cleanly
    return 0


if __name__ == "__main__":
    sys.exit(main())
