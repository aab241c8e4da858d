"""The ``serve`` subcommand: settings from options and ``LLMPOOL_SERVER_*``, then serve.

Without an endpoint (``--base-url``, ``LLMPOOL_SERVER_BASE_URL`` or ``OPENAI_BASE_URL``) it
serves against the simulated provider, started in-process as ``llmpool demo`` does, so it
works on a fresh machine with no key. It logs to stderr (``--log-format json`` for one JSON
object per line) and drains on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
import pydantic

from llmpool import _constants as C
from llmpool._cli._command import EXIT_OK, Command, SetupError
from llmpool._extras import require

if TYPE_CHECKING:
    from llmpool.server import ServerConfig

__all__ = ["COMMAND", "settings_from"]

_FEATURE = "llmpool serve"

_DESCRIPTION = """\
Serve streaming chat over WebSocket (/ws/chat/{session_id}) through one connection manager,
with a hard connection cap, /health, /readyz, /metrics (Prometheus) and /metrics.json.
Settings come from these options, then LLMPOOL_SERVER_* and LLMPOOL_* variables
(docs/server.md). Without --base-url (or LLMPOOL_SERVER_BASE_URL / OPENAI_BASE_URL) it serves
against the simulated provider started in-process. SIGTERM or Ctrl-C drains: running turns
finish, then sockets close with 1012.
"""

_EPILOG = """\
examples:
  llmpool serve
  llmpool serve --port 8001 --max-connections 100 --log-format json
  OPENAI_API_KEY=sk-... llmpool serve --base-url https://api.openai.com/v1 --model gpt-4o-mini
  LLMPOOL_SERVER_TOKEN=secret llmpool serve --host 0.0.0.0
  llmpool serve --port 8001 --redis redis://127.0.0.1:6379/0   # one of several instances
"""

# A simulated answer streams one word per 40 ms, so the chat looks like typing.
_SIMULATED_CHUNK_DELAY = 0.04


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default 8000; 0: any free)")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint (default: simulated)")
    parser.add_argument("--api-key", help="the endpoint's key (default OPENAI_API_KEY)")
    parser.add_argument("--model", help="model of every turn (default gpt-4o-mini)")
    parser.add_argument("--api", choices=["responses", "chat"], help="API (default responses)")
    parser.add_argument("--max-connections", type=int, help="connection cap (default 25)")
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="Redis shared by several instances: sessions' conversations and turn locks "
        "(default LLMPOOL_REDIS_URL; none: this process's)",
    )
    parser.add_argument("--log-format", choices=["text", "json"], help="log lines (default text)")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--backend",
        choices=["asyncio", "trio"],
        default="asyncio",
        help="event loop: asyncio (uvicorn, default) or trio (hypercorn)",
    )


def settings_from(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> ServerConfig:
    """The ``ServerConfig`` for these options over the environment.

    Raises:
        SetupError: a setting is invalid (the message names the option or variable), or an
            endpoint is configured without a key.
    """
    from llmpool.server import ServerConfig

    env = os.environ if environ is None else environ
    overrides: dict[str, Any] = {
        field: value
        for field in ("host", "port", "base_url", "api_key", "model", "api", "log_format")
        if (value := getattr(args, field)) is not None
    }
    if args.max_connections is not None:
        overrides["max_connections"] = args.max_connections
    if args.redis is not None:
        overrides["redis_url"] = args.redis
    base = env.get("OPENAI_BASE_URL")
    if base and "base_url" not in overrides and "LLMPOOL_SERVER_BASE_URL" not in env:
        overrides["base_url"] = base
    try:
        config = ServerConfig.from_env(env, **overrides)
    except pydantic.ValidationError as exc:
        raise SetupError(_brief(exc)) from None
    if config.base_url is not None and config.api_key is None:
        key = env.get("OPENAI_API_KEY")
        if not key:
            raise SetupError(
                f"no API key for {config.base_url}: pass --api-key or set "
                "LLMPOOL_SERVER_API_KEY or OPENAI_API_KEY"
            )
        config = config.model_copy(update={"api_key": pydantic.SecretStr(key)})
    return config


def _brief(exc: pydantic.ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        lines.append(f"invalid setting {where}: {error['msg']} (got {error['input']!r})")
    return "; ".join(lines)


def _configure_logging(config: ServerConfig, level: str) -> None:
    from llmpool.server import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    if config.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    for module in ("starlette", "uvicorn", "hypercorn", "prometheus_client"):
        require(module, "server", feature=_FEATURE)
    if args.redis is not None:
        require("coredis", "redis", feature=f"{_FEATURE} --redis")
    if args.backend == "trio":
        require("trio", None, feature=f"{_FEATURE} --backend trio")
    from llmpool.server import create_app, serve

    config = settings_from(args)
    _configure_logging(config, args.log_level)
    log = logging.getLogger("llmpool.server")
    if config.base_url is not None:
        app = create_app(config)
        log.info("endpoint: %s", config.base_url)
        anyio.run(serve, app, backend=args.backend)
        return EXIT_OK
    from llmpool.testing import FaultPlan, SimulatedProvider

    plan = FaultPlan(stream_chunk_delay=_SIMULATED_CHUNK_DELAY)
    with SimulatedProvider(plan, api_key=C.DEMO_SIMULATOR_API_KEY) as sim:
        simulated = config.model_copy(
            update={
                "base_url": sim.base_url,
                "api_key": pydantic.SecretStr(C.DEMO_SIMULATOR_API_KEY),
            }
        )
        log.info("endpoint: the simulated provider at %s", sim.base_url)
        anyio.run(serve, create_app(simulated), backend=args.backend)
    return EXIT_OK


COMMAND = Command(
    name="serve",
    help="serve streaming chat over WebSocket, with health and metrics",
    description=_DESCRIPTION,
    epilog=_EPILOG,
    add_arguments=_add_arguments,
    run=_run,
)
