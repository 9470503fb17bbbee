"""``python -m sandbox {serve,init,seed,spend,options}``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from decimal import Decimal
from typing import Any

DEFAULT_DB = "sandbox.sqlite3"


def _db(args: argparse.Namespace) -> str:
    return args.db or os.environ.get("SANDBOX_DB") or DEFAULT_DB


def _print(obj: Any) -> None:
    from .jsonenc import dumps

    print(dumps(obj))


def cmd_serve(args: argparse.Namespace) -> int:
    from .faults import parse_faults_arg
    from .options import parse_options_arg
    from .server import start_in_thread
    from .spend import Spender

    db = _db(args)
    token = args.admin_token or os.environ.get("SANDBOX_ADMIN_TOKEN") or None
    faults = parse_faults_arg(args.faults or os.environ.get("SANDBOX_FAULTS"))
    options = parse_options_arg(args.options or os.environ.get("SANDBOX_OPTIONS"))
    running = start_in_thread(
        db, host=args.host, port=args.port, admin_token=token, faults=faults, options=options, quiet=not args.verbose
    )
    if running.app.store.parent_account() is None:
        print(
            f"warning: {db} has no parent account yet; run `python -m sandbox init --db {db} --out DIR`",
            file=sys.stderr,
        )
    if not running.app.admin_token:
        print("warning: no admin token (flag, SANDBOX_ADMIN_TOKEN or init); /_sandbox/* is disabled", file=sys.stderr)
    rate = args.spend_rate if args.spend_rate is not None else float(os.environ.get("SANDBOX_SPEND_RATE") or 0)
    if rate > 0:
        spender = Spender(running.app.store, rate, args.spend_max or running.app.options["spend_max_amount"])
        running.extras.append(spender.start())
    print(
        f"sandbox serving {db} on {running.base_url} (Voximplant /platform_api, VoiceIt /subaccount /users)", flush=True
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    running.shutdown()
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from .init import init_sandbox

    result = init_sandbox(_db(args), args.out, balance=Decimal(args.balance), currency=args.currency)
    result.pop("admin_token", None)
    result.pop("account_password", None)
    if not result["created"]:
        print("database already initialised: files re-written from the existing parent account", file=sys.stderr)
    _print(result)
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from .seed import seed_children

    _print(seed_children(_db(args), args.children, seed=args.seed, parent_id=args.parent_id))
    return 0


def cmd_spend(args: argparse.Namespace) -> int:
    from .spend import spend

    _print(spend(_db(args), children=args.children, max_amount=args.max, seed=args.seed))
    return 0


def cmd_options(args: argparse.Namespace) -> int:
    from .options import describe_markdown

    print(describe_markdown())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve both provider APIs on one port")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8001)
    serve.add_argument("--db", help="SQLite file (env SANDBOX_DB, default ./sandbox.sqlite3)")
    serve.add_argument(
        "--admin-token", help="token for /_sandbox/* (env SANDBOX_ADMIN_TOKEN, else the one init stored)"
    )
    serve.add_argument("--faults", help="fault rules JSON or @file (env SANDBOX_FAULTS)")
    serve.add_argument("--options", help="option overrides JSON or @file (env SANDBOX_OPTIONS)")
    serve.add_argument("--spend-rate", type=float, help="simulated call charges per second (env SANDBOX_SPEND_RATE)")
    serve.add_argument("--spend-max", help="largest simulated charge (default option spend_max_amount)")
    serve.add_argument("--verbose", action="store_true", help="log each request to stderr")
    serve.set_defaults(func=cmd_serve)

    init = sub.add_parser("init", help="create the parent account and write credential files")
    init.add_argument("--db")
    init.add_argument("--out", required=True, help="directory for credentials.json, parent_api_key, ...")
    init.add_argument("--balance", default="10000")
    init.add_argument("--currency", default="USD")
    init.set_defaults(func=cmd_init)

    seed = sub.add_parser("seed", help="add N child accounts")
    seed.add_argument("--db")
    seed.add_argument("--children", type=int, required=True)
    seed.add_argument("--seed", type=int, default=0)
    seed.add_argument("--parent-id", type=int)
    seed.set_defaults(func=cmd_seed)

    spend = sub.add_parser("spend", help="charge K random children for simulated calls")
    spend.add_argument("--db")
    spend.add_argument("--children", type=int, required=True)
    spend.add_argument("--max", required=True, help="largest single charge, e.g. 1.50")
    spend.add_argument("--seed", type=int, default=None)
    spend.set_defaults(func=cmd_spend)

    options = sub.add_parser("options", help="print the options table (markdown)")
    options.set_defaults(func=cmd_options)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
