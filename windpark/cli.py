"""The ``windpark`` command: one subcommand per service and task.

This is the composition root of the project: it is the only module that imports
the services, and it imports each one lazily, when its subcommand runs. The same
subcommands are used by ``make run``, the compose file and the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

log = logging.getLogger("windpark")


def _setup(args: argparse.Namespace) -> int:
    from windpark.bootstrap import SetupSettings, setup

    settings = SetupSettings()
    if args.park_size is not None:
        settings.park_size = args.park_size
    asyncio.run(setup(settings))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from windpark import migrate

    settings = migrate.MigrationSettings()
    if args.direction == "downgrade":
        migrate.downgrade(settings.db, args.revision or "-1")
    else:
        migrate.upgrade(settings.db, args.revision or "head")
    return 0


def _generator(args: argparse.Namespace) -> int:
    from services.generator.config import Settings
    from services.generator.main import run

    overrides: dict[str, object] = {}
    if args.turbines is not None:
        overrides["turbines"] = args.turbines
    if args.turbine_id is not None:
        overrides["turbine_id"] = args.turbine_id
    if args.count is not None:
        overrides["max_readings"] = args.count
    settings = Settings(**overrides)  # type: ignore[arg-type]
    return asyncio.run(run(settings))


def _concentrator(_args: argparse.Namespace) -> int:
    from services.concentrator.config import Settings
    from services.concentrator.main import run

    return asyncio.run(run(Settings()))


def _api(args: argparse.Namespace) -> int:
    from services.aggregator.main import serve

    return serve(host=args.host, port=args.port)


def _run(args: argparse.Namespace) -> int:
    from windpark.localrun import run_all

    return run_all(generators=args.generators, host=args.host, port=args.port)


def _turbines_add(args: argparse.Namespace) -> int:
    from windpark.turbines_cli import add

    return asyncio.run(add(args.turbine_id, model=args.model, name=args.name))


def _turbines_list(_args: argparse.Namespace) -> int:
    from windpark.turbines_cli import list_turbines

    return asyncio.run(list_turbines())


def _backfill(args: argparse.Namespace) -> int:
    from windpark.backfill_cli import run_backfill

    return asyncio.run(
        run_backfill(days=args.days, interval_s=args.interval, seed=args.seed, end=args.end)
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="windpark", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    p = command("setup", _setup, "create the database, roles, schema, registry and broker topology")
    p.add_argument("--park-size", type=int, help="turbines to register (WINDPARK_PARK_SIZE)")

    p = command("migrate", _migrate, "run the alembic migrations")
    p.add_argument("direction", nargs="?", choices=["upgrade", "downgrade"], default="upgrade")
    p.add_argument("revision", nargs="?", help="target revision (default: head / -1)")

    p = command("generator", _generator, "simulate turbines and publish their readings")
    p.add_argument("--turbines", type=int, help="simulate N turbines in this process")
    p.add_argument("--turbine-id", help="simulate this one turbine (WINDPARK_TURBINE_ID)")
    p.add_argument("--count", type=int, help="stop after this many readings per turbine")

    command("concentrator", _concentrator, "consume, validate and store readings")

    p = command("api", _api, "serve the aggregator HTTP API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)

    p = command("run", _run, "set up, then run generators, concentrator and API locally")
    p.add_argument("--generators", type=int, default=10, help="generator processes")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)

    turbines = sub.add_parser("turbines", help="manage the turbine registry")
    tsub = turbines.add_subparsers(dest="turbines_command", required=True)
    p = tsub.add_parser("add", help="register a turbine")
    p.set_defaults(handler=_turbines_add)
    p.add_argument("turbine_id")
    p.add_argument("--model", default=None, help="turbine model (default WINDPARK_TURBINE_MODEL)")
    p.add_argument("--name", default=None)
    p = tsub.add_parser("list", help="list registered turbines")
    p.set_defaults(handler=_turbines_list)

    p = command(
        "backfill", _backfill, "write N days of simulated history straight into the database"
    )
    p.add_argument("--days", type=float, required=True)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--end", default=None, help="RFC 3339 end time (default: now)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
