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
    # Limits per client address (docs/security.md); they hold whatever visitor id a caller sends.
    Setting("trusted_proxies", "0", "GELATO_TRUSTED_PROXIES",
            "X-Forwarded-For hops added by proxies you run (0: the TCP peer is the client)", int),
    Setting("max_request_mb", "32", "GELATO_MAX_REQUEST_MB", "largest request body in MB (event calls: 1 MB)", int),
    Setting("writes_per_minute", "60", "GELATO_WRITES_PER_MINUTE",
            "ratings and answers per client address per minute", int),
    Setting("new_visitors_per_hour", "60", "GELATO_NEW_VISITORS_PER_HOUR",
            "calls without a valid visitor id (each gets a new one) per client address per hour", int),
    Setting("upload_mb_per_hour", "200", "GELATO_UPLOAD_MB_PER_HOUR", "upload MB per client address per hour", int),
    Setting("submissions_per_hour", "10", "GELATO_SUBMISSIONS_PER_HOUR",
            "puzzle submissions per client address per hour", int),
    Setting("queue_places", "8", "GELATO_QUEUE_PLACES", "queued or running events per client address", int),
    Setting("model_niceness", "0", "GELATO_MODEL_NICENESS",
            "nice value (0-19) of the model's threads; 10 on a server for many visitors puts answers, browsing "
            "and ratings first", int),
)
MAX_NICENESS = 19  # the kernel's highest nice value
LIMIT_SETTINGS = ("trusted_proxies", "max_request_mb", "writes_per_minute", "new_visitors_per_hour",
                  "upload_mb_per_hour", "submissions_per_hour", "queue_places")


@dataclass(frozen=True)
class AppSettings:
    host: str
    port: int
    bundle: Path | None
    database_url: str | None
    data_dir: Path
    trusted_proxies: int  # the limits below: see SETTINGS and docs/security.md
    max_request_mb: int
    writes_per_minute: int
    new_visitors_per_hour: int
    upload_mb_per_hour: int
    submissions_per_hour: int
    queue_places: int
    model_niceness: int  # 0: the model's threads at the server's priority (a browser on the same machine)

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
    for name in LIMIT_SETTINGS:
        if not isinstance(values[name], int) or values[name] < (0 if name == "trusted_proxies" else 1):
            raise ValueError(f"{name} must be a whole number of at least {0 if name == 'trusted_proxies' else 1}, "
                             f"got {values[name]!r}")
    if not isinstance(values["model_niceness"], int) or not 0 <= values["model_niceness"] <= MAX_NICENESS:
        raise ValueError(f"model_niceness must be between 0 and {MAX_NICENESS}, got {values['model_niceness']!r}")
    return AppSettings(
        host=str(values["host"]),
        port=port,
        bundle=Path(str(values["bundle"])) if values["bundle"] else None,
        database_url=values["database_url"] if values["database_url"] else None,  # type: ignore[arg-type]
        data_dir=Path(str(values["data_dir"])),
        **{name: values[name] for name in LIMIT_SETTINGS},  # type: ignore[arg-type]
        model_niceness=values["model_niceness"],  # type: ignore[arg-type]
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
