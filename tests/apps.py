"""The real app as a process (`python -m app`), for tests: start it, wait for /healthz, drive it, stop it.

`start_app` runs one server on a free port with its own data directory (and a bank URL, or the SQLite file in
that directory); `wait_until_healthy` polls /healthz; `stop_apps` ends them. The playground helpers drive the
public API through gradio_client the way a browser does: `solve` first (its run stays in the page session),
then `rate` its samples.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from gradio_client import Client, handle_file

from app import prompts
from puzzles.generators import generate
from puzzles.images import png_bytes
from tests.conftest import MANY_CLIENTS_LIMITS
from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120
SOLVE_SEED = 5
# One key for each kind of signed id, so what one process issues the others accept.
SHARED_SECRETS = {"GELATO_CURATOR_SECRET": "c" * 64, "GELATO_VISITOR_SECRET": "v" * 64}


@dataclass
class AppProcess:
    name: str
    url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def start_app(name: str, data_dir: Path, bundle: Path, database_url: str | None = None,
              shared_secrets: bool = True) -> AppProcess:
    """`python -m app` on a free port. Without `shared_secrets` the keys come from files in `data_dir`."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL" and not key.startswith("GELATO_")}
    env.update(OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False", **(SHARED_SECRETS if shared_secrets else {}))
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{name}.log"
    command = [sys.executable, "-m", "app", "--port", str(port), "--data-dir", str(data_dir), "--bundle", str(bundle),
               *(f"--{name.replace('_', '-')}={value}" for name, value in MANY_CLIENTS_LIMITS.items())]
    if database_url is not None:
        command += ["--database-url", database_url]
    with log_path.open("a") as log_file:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return AppProcess(name, f"http://127.0.0.1:{port}", process, log_path)


def wait_until_healthy(app: AppProcess, deadline: float) -> dict[str, Any]:
    """Poll /healthz until it says 200; its body. Fails with the app's log when it exits or never gets there."""
    last = "no answer"
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            raise AssertionError(f"app {app.name} exited with {app.process.returncode}:\n{app.log_tail()}")
        try:
            response = httpx.get(f"{app.url}/healthz", timeout=10)
            if response.status_code == 200:
                return response.json()
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.5)
    raise AssertionError(f"app {app.name} not healthy in time ({last}):\n{app.log_tail()}")


def stop_apps(apps: list[AppProcess], grace_s: float = 5.0) -> None:
    """SIGTERM to all, then SIGKILL to the process group of any still running after `grace_s`
    (uvicorn's graceful shutdown waits for open client connections)."""
    for app in apps:
        if app.process.poll() is None:
            app.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for app in apps:
        try:
            app.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(app.process.pid, signal.SIGKILL)
            app.process.wait()


# --- driving the playground API -----------------------------------------------------------------------------

def write_png(image: Any, path: Path) -> str:
    path.write_bytes(png_bytes(image))
    return str(path)


def analogy_files(seed: int, folder: Path) -> list[str]:
    """A one-pair analogy prompt (A1, A1', B) as PNG files, small enough for the tiny bundle."""
    puzzle = generate("analogy", seed, size=32)
    folder.mkdir(parents=True, exist_ok=True)
    return [write_png(image, folder / f"{seed}-{index}.png") for index, image in enumerate(puzzle.panels[-3:])]


def slot_args(panels: list[str]) -> list[Any]:
    values: list[Any] = [None] * len(prompts.ALL_SLOTS)
    for name, path in zip(("slot-a1", "slot-a1p", "slot-b"), panels, strict=True):
        values[prompts.ALL_SLOTS.index(name)] = handle_file(path)
    return values


def solve(client: Client, panels: list[str]) -> list[bytes]:
    """/solve with two samples; the sample images' bytes (the session keeps the run for /rate)."""
    samples, *_ = client.predict("analogy", "1", *slot_args(panels), [], 2, 1.0, 0, 1.0, SOLVE_SEED,
                                 api_name="/solve")
    return [Path(item["image"]).read_bytes() for item in samples]


def rate(client: Client, visitor: str | None, sample: int) -> tuple[int, str]:
    """(rating id, visitor id) for sample `sample` (0-based; /rate numbers samples from 1, as the page shows them):
    None as the visitor gets a fresh id from the app."""
    status, returned = client.predict(visitor, sample + 1, "up", False, api_name="/rate")
    match = re.search(r"\(rating (\d+)\)", status)
    assert match, f"no rating id in {status!r}"
    assert visitor is None or returned == visitor, "the app replaced a visitor id it should accept"
    return int(match.group(1)), returned


def submit(client: Client, visitor: str | None, panels: list[str], title: str) -> tuple[str, str]:
    """(puzzle id, visitor id) of a pending submission."""
    status, returned = client.predict(visitor, "analogy", "1", *slot_args(panels), None, handle_file(panels[0]),
                                      title, api_name="/submit")
    match = re.search(r"\(puzzle (\w+)\)", status)  # out of a visitor's sight, in an HTML comment
    assert match, f"no puzzle id in {status!r}"
    return match.group(1), returned
