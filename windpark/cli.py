"""The ``windpark`` command: one subcommand per service and task.

This is the composition root of the project: it is the only module that imports
the services, and it imports each one lazily, when its subcommand runs. The same
subcommands are used by ``make run``, the compose file and the tests. What users read
in ``windpark --help`` is ``DESCRIPTION``, not this docstring.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Final

log = logging.getLogger("windpark")

DESCRIPTION = (
    "windpark: wind-farm telemetry. Set up the database and the broker, run the simulated "
    "turbines, the concentrator and the HTTP API, and manage turbines, history and the "
    "API's users and clients."
)
EPILOG = (
    "Settings are WINDPARK_* environment variables (README.md, Configuration). "
    "`windpark COMMAND --help` describes each command."
)


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
    if args.transport is not None:
        overrides["transport"] = args.transport
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

    return asyncio.run(
        add(
            args.turbine_id,
            model=args.model,
            name=args.name,
            rotate=args.rotate_credentials,
            max_hold_s=args.max_hold_s,
        )
    )


def _turbines_set(args: argparse.Namespace) -> int:
    from windpark.turbines_cli import set_turbine

    return asyncio.run(set_turbine(args.turbine_id, max_hold_s=args.max_hold_s))


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"{text} s: must be more than 0")
    return value


def _turbines_list(_args: argparse.Namespace) -> int:
    from windpark.turbines_cli import list_turbines

    return asyncio.run(list_turbines())


def _backfill(args: argparse.Namespace) -> int:
    from windpark.backfill_cli import run_backfill

    return asyncio.run(
        run_backfill(days=args.days, interval_s=args.interval, seed=args.seed, end=args.end)
    )


def _retention(args: argparse.Namespace) -> int:
    from windpark.retention_cli import run_retention

    return asyncio.run(run_retention(args.days))


def _users(args: argparse.Namespace) -> int:
    from windpark import credentials_cli as cli

    action = args.users_command
    if action == "add":
        return asyncio.run(cli.add_user(args.name, args.scope, password_stdin=args.password_stdin))
    if action == "password":
        return asyncio.run(cli.set_user_password(args.name, password_stdin=args.password_stdin))
    if action == "scopes":
        return asyncio.run(cli.set_user_scopes(args.name, args.scope))
    if action == "list":
        return asyncio.run(cli.list_users())
    if action in ("disable", "enable"):
        return asyncio.run(cli.set_user_disabled(args.name, action == "disable"))
    return asyncio.run(cli.delete_user(args.name))


def _clients(args: argparse.Namespace) -> int:
    from windpark import credentials_cli as cli

    action = args.clients_command
    if action == "add":
        return asyncio.run(cli.add_client(args.client_id, args.scope, turbine_id=args.turbine))
    if action == "secret":
        return asyncio.run(cli.new_client_secret(args.client_id))
    if action == "scopes":
        return asyncio.run(cli.set_client_scopes(args.client_id, args.scope))
    if action == "list":
        return asyncio.run(cli.list_clients())
    if action in ("disable", "enable"):
        return asyncio.run(cli.set_client_disabled(args.client_id, action == "disable"))
    return asyncio.run(cli.delete_client(args.client_id))


def _add_credentials_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scope_help = (
        "telemetry:read, readings:write, alerts:manage or admin (admin implies all);"
        " repeat or separate with commas"
    )
    users = sub.add_parser("users", help="people who may ask the API for tokens (password grant)")
    users.set_defaults(handler=_users)
    usub = users.add_subparsers(dest="users_command", required=True)
    p = usub.add_parser("add", help="create a user (the password is generated and shown once)")
    p.add_argument("name")
    p.add_argument("--scope", action="append", required=True, help=scope_help)
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    p = usub.add_parser(
        "password",
        help="set a new password (generated unless --password-stdin); revokes the user's tokens",
    )
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true")
    p = usub.add_parser("scopes", help="replace a user's scopes; revokes its tokens")
    p.add_argument("name")
    p.add_argument("--scope", action="append", required=True, help=scope_help)
    usub.add_parser("list", help="list users: name, state, scopes")
    for action, help_ in (
        ("disable", "refuse tokens to a user, those already issued included"),
        ("enable", "allow a disabled user again (it logs in anew)"),
        ("delete", "remove a user; revokes its tokens"),
    ):
        usub.add_parser(action, help=help_).add_argument("name")

    clients = sub.add_parser(
        "clients", help="machines that may ask the API for tokens (client-credentials grant)"
    )
    clients.set_defaults(handler=_clients)
    csub = clients.add_subparsers(dest="clients_command", required=True)
    p = csub.add_parser("add", help="create a client (its secret is shown once)")
    p.add_argument("client_id")
    p.add_argument("--scope", action="append", required=True, help=scope_help)
    p.add_argument(
        "--turbine", default=None, help="bind readings:write to this turbine's readings only"
    )
    csub.add_parser(
        "secret", help="issue a new secret (shown once); revokes the client's tokens"
    ).add_argument("client_id")
    p = csub.add_parser("scopes", help="replace a client's scopes; revokes its tokens")
    p.add_argument("client_id")
    p.add_argument("--scope", action="append", required=True, help=scope_help)
    csub.add_parser("list", help="list clients: id, state, scopes, bound turbine")
    for action, help_ in (
        ("disable", "refuse tokens to a client, those already issued included"),
        ("enable", "allow a disabled client again (it logs in anew)"),
        ("delete", "remove a client; revokes its tokens"),
    ):
        csub.add_parser(action, help=help_).add_argument("client_id")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="windpark", description=DESCRIPTION, epilog=EPILOG)
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
    p.add_argument(
        "--transport",
        choices=["amqp", "mqtt"],
        help="AMQPS with confirms, or MQTTS QoS 1 (WINDPARK_TRANSPORT, default amqp)",
    )

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
    p = tsub.add_parser(
        "add", help="register a turbine and provision its broker identity (credentials shown once)"
    )
    p.set_defaults(handler=_turbines_add)
    p.add_argument("turbine_id")
    p.add_argument("--model", default=None, help="turbine model (default WINDPARK_TURBINE_MODEL)")
    p.add_argument("--name", default=None)
    p.add_argument(
        "--rotate-credentials",
        action="store_true",
        help="issue a new broker password (the old one stops working at the next login)",
    )
    max_hold_help = (
        "longest time one reading may stand for in the energy and coverage; at least the"
        " turbine's reading interval (default 3 s: three 1 s intervals)"
    )
    p.add_argument("--max-hold-s", type=_positive_seconds, default=None, help=max_hold_help)
    p = tsub.add_parser("set", help="change a registered turbine's settings")
    p.set_defaults(handler=_turbines_set)
    p.add_argument("turbine_id")
    p.add_argument("--max-hold-s", type=_positive_seconds, required=True, help=max_hold_help)
    p = tsub.add_parser("list", help="list registered turbines")
    p.set_defaults(handler=_turbines_list)

    p = command(
        "backfill", _backfill, "write N days of simulated history straight into the database"
    )
    p.description = (
        "Write N days of simulated history of the registered turbines straight into the"
        " database, then rebuild the rollups of that range. The history ends where the"
        " stored readings begin: at the oldest stored reading of those turbines, or now when"
        " there is none. So it never overlaps what is stored, and running it again extends"
        " the history further back."
    )
    p.add_argument("--days", type=float, required=True, help="length of the history")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--end",
        default=None,
        help="RFC 3339 end time with an offset (default: the oldest stored reading, or now"
        " when there is none); refused when readings are stored in the range it gives",
    )
    p = command("retention", _retention, "drop raw readings older than the retention period")
    p.add_argument("--days", type=int, default=None, help="default WINDPARK_RETENTION_DAYS (90)")
    _add_credentials_commands(sub)
    return parser


# Set by a supervising process (`windpark run`, the end-to-end tests) to its own pid:
# the child then stops cleanly (SIGTERM) when that parent dies, even by SIGKILL,
# instead of running on unsupervised (a killed test run once left a concentrator
# consuming and writing for an hour).
PARENT_PID_ENV: Final = "WINDPARK_PARENT_PID"
_PR_SET_PDEATHSIG: Final = 1


def _stop_with_parent() -> None:
    parent = os.environ.pop(PARENT_PID_ENV, None)  # not inherited by our own children
    if parent is None or sys.platform != "linux":
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    _stop_with_parent()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # alembic logs at INFO as soon as it is imported (its plugins): quiet unless -v, and
    # windpark.migrate lets the migrations themselves speak while they run.
    logging.getLogger("alembic").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    # httpx logs every request at INFO: `windpark setup` makes dozens to the broker's
    # management API, which buried what set-up itself said.
    logging.getLogger("httpx").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
