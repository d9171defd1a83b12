"""`python -m puzzles` subcommands for the bank: import, export, curators, backup, restore, seed.

`register(subparsers)` adds them to the puzzles CLI; each sets `func`, which takes the parsed arguments
and returns the exit status. `python -m puzzles.bank.cli` runs them on their own. Errors and exit
statuses follow puzzles/commands.py.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from pathlib import Path
from typing import Any

from puzzles import commands
from puzzles.bank import accounts, backup, repository
from puzzles.bank.db import SETTINGS, Bank, connect, resolve_url
from puzzles.starter import DEFAULT_OUT

log = logging.getLogger(__name__)


def _connection_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    for name, default, env, help_text in SETTINGS:
        parent.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            default=None,
            help=f"{help_text} [env {env}; default {default or 'none'}]",
        )
    return parent


def _open(args: argparse.Namespace) -> Bank:
    return connect(args.database_url, Path(args.data_dir) if args.data_dir else None)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _read_password(confirm: bool = True) -> str:
    """From the terminal (typed twice) or, when stdin is not a terminal, its first line."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Repeat password: ") != password:
        raise ValueError("the two passwords differ")
    return password


def cmd_import(args: argparse.Namespace) -> int:
    with _open(args) as bank:
        report = repository.import_pack(bank, Path(args.pack), dry_run=args.dry_run, status=args.status)
    _print_json(report.as_dict())
    return 1 if report.invalid else 0


def cmd_export(args: argparse.Namespace) -> int:
    filters = repository.PuzzleFilter(
        family=args.family, layout=args.layout, tag=args.tag, difficulty=args.difficulty,
        status=None if args.status == "any" else args.status, model_wrong=True if args.model_wrong else None,
        bundle_id=args.bundle,
    )
    with _open(args) as bank:
        count = repository.export_pack(bank, Path(args.out), filters)
    print(f"exported {count} puzzles to {args.out}")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    with _open(args) as bank:
        report = repository.seed_bank(bank, Path(args.pack))
    print(f"seeded: {len(report.new)} new, {len(report.duplicate)} already in the bank")
    return 0


def cmd_curators(args: argparse.Namespace) -> int:
    with _open(args) as bank:
        if args.action == "list":
            for curator in accounts.list_curators(bank):
                print(f"{curator.name}\t{'disabled' if curator.disabled else 'enabled'}\t{curator.created_at:%Y-%m-%d}")
            return 0
        if not args.name:
            raise ValueError(f"curators {args.action} needs a NAME")
        if args.action == "add":
            accounts.add_curator(bank, args.name, _read_password())
        elif args.action == "passwd":
            accounts.set_password(bank, args.name, _read_password())
        elif args.action == "disable":
            accounts.disable_curator(bank, args.name)
        elif args.action == "enable":
            accounts.enable_curator(bank, args.name)
    print(f"curator {args.name}: {args.action} done")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    with _open(args) as bank:
        counts = backup.backup(bank, Path(args.out))
    print(f"backed up {_summary(counts)} to {args.out}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    url = resolve_url(args.database_url, Path(args.data_dir) if args.data_dir else None)
    counts = backup.restore(url, Path(args.source))
    print(f"restored {_summary(counts)} from {args.source}")
    return 0


def _summary(counts: dict[str, int]) -> str:
    tables = ("puzzles", "images", "ratings", "attempts", "curators")
    return ", ".join(f"{counts.get(name, 0)} {name}" for name in tables)


def register(subparsers: Any) -> None:
    """Add the bank's subcommands to an argparse subparsers object."""
    common = _connection_options()

    importer = subparsers.add_parser("import", parents=[common], help="import a puzzle pack into the bank")
    importer.add_argument("pack", help="pack directory or .zip")
    importer.add_argument("--dry-run", action="store_true", help="report what would be imported, write nothing")
    importer.add_argument("--status", default="published", choices=repository.STATUSES)
    importer.set_defaults(func=cmd_import)

    exporter = subparsers.add_parser("export", parents=[common], help="export bank puzzles as a pack")
    exporter.add_argument("out", help="output directory or .zip")
    exporter.add_argument("--family")
    exporter.add_argument("--layout", help="layout kind")
    exporter.add_argument("--tag")
    exporter.add_argument("--difficulty", type=int)
    exporter.add_argument("--status", default="published", choices=[*repository.STATUSES, "any"])
    exporter.add_argument("--model-wrong", action="store_true", help="only puzzles a model got wrong")
    exporter.add_argument("--bundle", help="with --model-wrong: that bundle only")
    exporter.set_defaults(func=cmd_export)

    curators = subparsers.add_parser("curators", parents=[common], help="manage curator accounts")
    curators.add_argument("action", choices=["add", "list", "disable", "enable", "passwd"])
    curators.add_argument("name", nargs="?", help="curator name (not for list); passwords are read from the prompt")
    curators.set_defaults(func=cmd_curators)

    backup_parser = subparsers.add_parser(
        "backup", parents=[common], help="online, consistent copy of the bank (SQLite or PostgreSQL)"
    )
    backup_parser.add_argument(
        "out", help="a .zip archive (any bank; restores into SQLite or PostgreSQL) or, for SQLite, a database file"
    )
    backup_parser.set_defaults(func=cmd_backup)

    restore = subparsers.add_parser("restore", parents=[common], help="replace the whole bank with a backup")
    restore.add_argument("source", metavar="IN", help="a .zip archive from backup, or a SQLite backup file")
    restore.set_defaults(func=cmd_restore)

    seed = subparsers.add_parser("seed", parents=[common], help="import the shipped starter pack (idempotent)")
    seed.add_argument("--pack", default=str(DEFAULT_OUT), help="pack to seed from")
    seed.set_defaults(func=cmd_seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m puzzles.bank.cli", description="Gelato puzzle bank")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return commands.run(lambda: args.func(args), f"python -m puzzles.bank.cli {args.command}")


if __name__ == "__main__":
    sys.exit(main())
