"""App settings, declared once as (name, default, environment variable, help).

The same table drives the command line (`python -m app --help`), the environment variables and the
settings table in README.md (`markdown_table`), so the three cannot drift apart.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    name: str  # attribute and CLI flag (--name-with-dashes)
    default: str | None
    env: str  # environment variable that overrides the default
    help: str
    kind: type = str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", "GELATO_HOST", "interface the web server listens on (0.0.0.0 for all)"),
    Setting("port", "7860", "GELATO_PORT", "TCP port of the web server", int),
    Setting("bundle", None, "GELATO_BUNDLE", "model bundle directory (default: engine/bundles/default)"),
    Setting("database_url", None, "DATABASE_URL", "SQLAlchemy URL of the bank (default: SQLite file in the data dir)"),
    Setting("data_dir", "data", "GELATO_DATA_DIR", "directory for the SQLite bank and Gradio's temporary files"),
)


@dataclass(frozen=True)
class AppSettings:
    host: str
    port: int
    bundle: Path | None
    database_url: str | None
    data_dir: Path

    @property
    def temp_dir(self) -> Path:
        """Where Gradio keeps uploads and outputs (GRADIO_TEMP_DIR), inside the data directory."""
        return self.data_dir / "tmp"


def _convert(setting: Setting, raw: str | None) -> object:
    if raw is None or raw == "":
        return None
    if setting.kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(
                f"{setting.name} must be an integer, got {raw!r} (flag {setting.flag}, env {setting.env})"
            ) from None
    return raw


def resolve(
    cli_values: Mapping[str, str | None] | None = None, environ: Mapping[str, str] | None = None
) -> AppSettings:
    """Settings from CLI values (highest), then environment variables, then defaults."""
    cli_values = cli_values or {}
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for setting in SETTINGS:
        raw = cli_values.get(setting.name)
        if raw is None:
            raw = environ.get(setting.env) or setting.default
        values[setting.name] = _convert(setting, raw)
    port = values["port"]
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port!r}")
    return AppSettings(
        host=str(values["host"]),
        port=port,
        bundle=Path(str(values["bundle"])) if values["bundle"] else None,
        database_url=values["database_url"] if values["database_url"] else None,  # type: ignore[arg-type]
        data_dir=Path(str(values["data_dir"])),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description="Run the Gelato playground.")
    for setting in SETTINGS:
        default = f" (default: {setting.default})" if setting.default is not None else ""
        text = f"{setting.help}; env {setting.env}{default}"
        parser.add_argument(setting.flag, dest=setting.name, default=None, help=text)
    return parser


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> AppSettings:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        return resolve(vars(arguments), environ)
    except ValueError as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits


def markdown_table() -> str:
    """The settings as a Markdown table, the form README.md carries."""
    lines = ["| Flag | Environment variable | Default | Meaning |", "|---|---|---|---|"]
    for setting in SETTINGS:
        default = f"`{setting.default}`" if setting.default is not None else "—"
        lines.append(f"| `{setting.flag}` | `{setting.env}` | {default} | {setting.help} |")
    return "\n".join(lines) + "\n"
