"""``stackc-router``: run the router from a config file, or from ``--backend MODEL=URL`` flags."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

import yaml

from stackc_router import __version__
from stackc_router.config import STRATEGIES, ConfigError, from_backends, parse
from stackc_router.server import Router, sendable_key


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stackc-router", description="OpenAI-compatible, cache-aware LLM router")
    parser.add_argument("--version", action="version", version=f"stackc-router {__version__}")
    parser.add_argument("--config", help="YAML config file")
    parser.add_argument("--backend", action="append", default=[], metavar="MODEL=URL",
                        help="a replica of MODEL (repeatable); instead of --config")
    parser.add_argument("--strategy", choices=STRATEGIES, default="prefix")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        if args.config:
            with open(args.config, encoding="utf-8") as handle:
                config = parse(yaml.safe_load(handle))
        elif args.backend:
            config = from_backends(args.backend, args.strategy, args.host or "127.0.0.1", args.port or 8080)
        else:
            parser.error("give --config FILE or at least one --backend MODEL=URL")
        keys = []
        if config.api_keys_file:
            with open(config.api_keys_file, encoding="utf-8") as handle:
                keys = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
            unsendable = [f"{config.api_keys_file}: key {n} of {len(keys)} is not a token68 (letters, digits, "
                          "-._~+/ and = at its end), so no client can send it as 'Authorization: Bearer KEY'"
                          for n, key in enumerate(keys, 1) if not sendable_key(key)]
            if unsendable:
                raise ConfigError(unsendable)
        _raise_open_file_limit()
        router = Router(config, keys)  # reads the upstream key files: a missing one is a config error
    except ConfigError as error:
        for problem in error.problems:
            print(f"stackc-router: config error: {problem}", file=sys.stderr)
        return 2
    except (OSError, yaml.YAMLError) as error:
        print(f"stackc-router: cannot read config: {error}", file=sys.stderr)
        return 2
    try:
        import uvloop  # optional: a faster event loop when installed

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(router, args.host, args.port))
    return 0


def _raise_open_file_limit() -> None:
    """Up to the hard limit, as Go programs do: the connection cap is derived from it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # an unlimited hard limit is above what the kernel allows
            pass


async def _serve(router: Router, host: str | None, port: int | None) -> None:
    server = await router.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    address = server.sockets[0].getsockname()
    print(f"stackc-router: listening on http://{address[0]}:{address[1]}", file=sys.stderr, flush=True)
    await stop.wait()
    server.close()
    await router.close()
