"""The `convot` command: the whole product (`up`) or one service at a time.

Each service module exposes ``async def serve(config: Config) -> None`` that runs until
cancelled and cleans up after itself; this module only parses arguments, validates the
configuration, sets up logging and the event loop, and turns SIGTERM/SIGINT into cancellation.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys

from convot.config import Config, ConfigError, load_config
from convot.logs import setup_logging

log = logging.getLogger("convot.cli")

SERVICES = {
    "gateway": "gateway.server",
    "engine": "engine.worker",
    "admin-api": "admin_api.app",
}


def _run_service(name: str, config: Config) -> int:
    import uvloop

    module = importlib.import_module(SERVICES[name])
    tune_gc()

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await module.serve(config)
        except asyncio.CancelledError:
            log.info("stopped")

    uvloop.run(main())
    return 0


# Full collections (generation 2) walk every live object: with 5,000 sockets one took up to
# 276 ms, and CPython's default (one after every 10 generation-1 passes, growth permitting) ran
# four of them during a 5,000-socket connection storm, 0.67 s of the gateway's CPU.  100
# makes them ten times rarer; generations 0 and 1 keep their defaults, so young pauses stay
# at 1-2 ms (a higher generation-0 threshold sped up the storm too, but its 10-36 ms
# pauses showed in fan-out p99).  docs/performance.md has the measurements.
GC_THRESHOLDS = (700, 10, 100)


def tune_gc() -> None:
    """Everything imported so far lives as long as the process: out of the collector's sight
    (``gc.freeze``, so the rare full collections do not walk it), then :data:`GC_THRESHOLDS`.
    Cycles (a closed socket's protocol objects) are still collected."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _cmd_migrate(config: Config) -> int:
    from convot.migrate import apply_migrations

    url = config.database.migrate_url or config.database.url
    if not url:
        from convot.supervisor import embedded_database

        with embedded_database(config) as (_app_url, owner_url):
            applied = asyncio.run(apply_migrations(owner_url))
    else:
        applied = asyncio.run(apply_migrations(url))
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def _cmd_demo(config: Config) -> int:
    from convot.demo import create_demo
    from convot.supervisor import embedded_database, with_dev_secrets

    if not config.database.url:
        with embedded_database(config) as (app_url, owner_url):
            from convot.migrate import apply_migrations

            asyncio.run(apply_migrations(owner_url))
            result = asyncio.run(create_demo(with_dev_secrets(config.replace(database={"url": app_url}))))
    else:
        result = asyncio.run(create_demo(with_dev_secrets(config)))
    for key, value in result.items():
        print(f"{key:>10}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convot", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="TOML file (default configs/convot.toml or $CONVOT_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the whole product on one machine (embedded PostgreSQL/Redis if no URLs)")
    up.add_argument("--gateways", type=int, default=1, help="gateway processes sharing the gateway port")
    up.add_argument("--workers", type=int, default=None, help="engine worker processes (default engine.workers)")
    for name in SERVICES:
        sub.add_parser(name, help=f"run the {name} service alone (production)")
    sub.add_parser("migrate", help="apply pending database migrations")
    sub.add_parser("demo", help="create a demo organisation, owner and app; print the login")
    bench = sub.add_parser("bench", help="load-test scenarios: `convot bench steady-chat --help`", add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    keys = sub.add_parser("keys", help="encryption keys of secrets at rest")
    keys.add_argument("action", choices=["rotate"],
                      help="rotate: re-encrypt every secret under the first key of auth.encryption_keys")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":   # starts its own servers; see bench/__init__.py
        from bench.__main__ import main as bench_main

        return bench_main(args.bench_args)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"convot: {exc}", file=sys.stderr)
        return 2
    if args.command == "up":
        setup_logging("up", "human", config.log.level)
        from convot.supervisor import run_up

        return run_up(config, gateways=args.gateways, workers=args.workers or config.engine.workers)
    setup_logging(args.command, config.log.format, config.log.level)
    if args.command == "migrate":
        return _cmd_migrate(config)
    if args.command == "demo":
        return _cmd_demo(config)
    if args.command == "keys":
        from convot.crypto import run_rotate_command

        return run_rotate_command(config)
    missing = [k for k in ("database.url", "redis.url") if not getattr(getattr(config, k.split(".")[0]), k.split(".")[1])]
    if missing:
        print(f"convot: config {missing[0]}: required for `convot {args.command}` "
              f"(set CONVOT_{missing[0].replace('.', '_').upper()}); `convot up` starts embedded servers",
              file=sys.stderr)
        return 2
    return _run_service(args.command, config)


if __name__ == "__main__":
    sys.exit(main())
