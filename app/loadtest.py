"""A bounded load test of the playground over HTTP, on loopback only; it stops by itself.

`python -m app.loadtest --visitors 32 --seconds 60 [--bundle DIR]` starts the app in a process of its own on a
free 127.0.0.1 port with a fresh SQLite bank of small generated puzzles, lets simulated visitors browse, solve,
rate and attempt for the given time, then checks that every acknowledged rating and attempt is in the
database. An attempt is followed by the model's part of it (`attempt_model`), as a browser asks for it. It prints
requests, errors, busy refusals, p50/p95 latency per action, lost writes, and a line of the serving targets (the
app's solves a second against the engine's own, measured alone on the same prompt before the load), and exits
non-zero when there were errors or lost writes. `--only ACTION` makes every visitor do that one action (a
rating first needs a solve); the summary's CPU line (Linux) says what a request costs the server, by kind.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import re
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

log = logging.getLogger(__name__)

ACTIONS = {"browse": 0.35, "attempt": 0.25, "solve": 0.2, "rate": 0.2}  # a visitor's mix of actions
THINK_S = (0.05, 0.3)  # pause between a visitor's actions
MAX_VISITORS = 256
MAX_SECONDS = 3600
SERVER_NICENESS = 10  # the model's threads as a server for many visitors runs them (docs/deploy.md)
READY_FILE = "ready.json"  # the server process writes it once the app is built
BUSY = ("queue is full", "try again")  # the words of a deliberate "busy" refusal
RATE_LIMITED = "too many"


@dataclass
class LoadReport:
    visitors: int
    seconds: float
    requests: int = 0
    errors: int = 0
    refused_busy: int = 0
    refused_rate_limit: int = 0
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    error_samples: list[str] = field(default_factory=list)
    acknowledged_ratings: set[int] = field(default_factory=set)
    acknowledged_attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lost_ratings: int = 0
    lost_attempts: int = 0
    engine_solves_per_s: float | None = None  # the engine alone, one solve after another, on the same prompt
    server_cpu_s: float | None = None  # CPU seconds the server's process spent during the load (None: unknown)

    @property
    def lost_writes(self) -> int:
        return self.lost_ratings + self.lost_attempts

    @property
    def acknowledged_writes(self) -> int:
        return len(self.acknowledged_ratings) + sum(self.acknowledged_attempts.values())

    def percentiles(self) -> dict[str, tuple[float, float, int]]:
        """action -> (p50 ms, p95 ms, count)."""
        table = {}
        for action, values in sorted(self.latencies.items()):
            ordered = sorted(values)
            p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
            table[action] = (statistics.median(ordered) * 1000, p95 * 1000, len(ordered))
        return table

    def summary(self) -> str:
        lines = [f"load: {self.visitors} visitors for {self.seconds:g} s: requests {self.requests}, errors "
                 f"{self.errors}, busy refusals {self.refused_busy}, rate-limit refusals {self.refused_rate_limit}, "
                 f"acknowledged writes {self.acknowledged_writes}, lost writes {self.lost_writes}"]
        for action, (p50, p95, count) in self.percentiles().items():
            lines.append(f"  {action:8s} n={count:5d}  p50 {p50:8.1f} ms  p95 {p95:8.1f} ms")
        lines.append(self.targets())
        if self.server_cpu_s is not None and self.requests:
            lines.append(f"  server CPU: {self.server_cpu_s:.1f} s for {self.requests} requests, "
                         f"{1000 * self.server_cpu_s / self.requests:.1f} ms a request")
        lines += [f"  error: {sample}" for sample in self.error_samples[:5]]
        return "\n".join(lines)

    def targets(self) -> str:
        """One line with the figures the serving targets are set on (docs/benchmark.md)."""
        table = self.percentiles()

        def p95(action: str) -> str:
            return f"{table[action][1] / 1000:.2f} s" if action in table else "-"

        solves = len(self.latencies.get("solve", [])) / self.seconds
        engine = self.engine_solves_per_s
        share = f" ({100 * solves / engine:.0f}%)" if engine else ""
        return (f"  targets: app solves/s {solves:.2f} vs engine {engine or 0:.2f}{share}; p95 solve {p95('solve')}, "
                f"attempt {p95('attempt')}, browse {p95('browse')}, rate {p95('rate')}; errors {self.errors}, "
                f"lost writes {self.lost_writes}")


class WireClient:
    """Gradio's HTTP API spoken as a browser speaks it, and as light on the server's machine as a browser is
    (gradio_client spends about as much CPU per request as the server does, which on a small machine would measure
    the client): POST /gradio_api/queue/join, then read the session's event stream, progress messages and all, up
    to the event's result. Files are uploaded once, as a dropped image is."""

    def __init__(self, url: str, timeout_s: float = 180.0) -> None:
        import httpx

        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s)
        config = self.http.get("/config")
        config.raise_for_status()
        kinds = {component["id"]: component.get("type") for component in config.json()["components"]}
        # per named event: its id, and which inputs and outputs are server-side state (a browser sends None for
        # those and shows nothing of them)
        self.events = {event["api_name"]: (event["id"], [kinds.get(i) == "state" for i in event["inputs"]],
                                           [kinds.get(o) == "state" for o in event["outputs"]])
                       for event in config.json()["dependencies"] if event.get("api_name")}
        self.session_hash = uuid.uuid4().hex[:11]  # one visitor's session: its states (last solve) follow it

    def upload(self, paths: Sequence[str]) -> list[dict[str, Any]]:
        files = [("files", (Path(path).name, Path(path).read_bytes(), "image/png")) for path in paths]
        response = self.http.post("/gradio_api/upload", files=files)
        response.raise_for_status()
        return [{"path": stored, "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}
                for stored, path in zip(response.json(), paths, strict=True)]

    def call(self, api_name: str, *data: Any) -> list[Any]:
        """The event's outputs; a refusal or an error raises RuntimeError with the server's message."""
        fn_index, state_inputs, state_outputs = self.events[api_name]
        values = iter(data)
        body = {"data": [None if state else next(values) for state in state_inputs], "fn_index": fn_index,
                "session_hash": self.session_hash, "event_data": None, "trigger_id": None}
        joined = self.http.post("/gradio_api/queue/join", json=body)
        if joined.status_code != 200:
            raise RuntimeError(f"{joined.status_code}: {joined.text[:300]}")
        event_id = joined.json()["event_id"]
        with self.http.stream("GET", "/gradio_api/queue/data", params={"session_hash": self.session_hash}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data: "):
                    continue
                message = json.loads(line[len("data: "):])
                if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                    if not message.get("success"):
                        raise RuntimeError(f"the server answered an error: {message.get('output')}")
                    outputs = message["output"]["data"]
                    return [value for value, state in zip(outputs, state_outputs, strict=True) if not state]
        raise RuntimeError(f"{api_name}: the event stream ended without a result")


class _Visitor:
    """One simulated visitor: its own session (so a rating follows its own solve) and visitor id."""

    def __init__(self, url: str, report: LoadReport, lock: threading.Lock, puzzle_ids: Sequence[str],
                 prompt_files: Sequence[str], seed: int, actions: Mapping[str, float] = ACTIONS) -> None:
        from app import visitors

        self.client = WireClient(url)
        self.report, self.lock = report, lock
        self.puzzle_ids, self.prompt_files = list(puzzle_ids), list(prompt_files)
        self.prompt: list[dict[str, Any]] | None = None  # the uploaded panels, once
        self.visitor_id = visitors.new_visitor_id()
        self.rng = random.Random(seed)
        self.actions, self.weights = list(actions), list(actions.values())
        self.solved = False
        self.answered: tuple[str, str] | None = None  # (puzzle id, verdict) of the last attempt

    def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            action = self.rng.choices(self.actions, weights=self.weights)[0]
            if action == "rate" and not self.solved:
                action = "solve"
            self._timed(action)
            if action == "attempt" and self.answered is not None:
                self._timed("attempt_model")  # what a browser asks next: the model's pick and answer
            time.sleep(self.rng.uniform(*THINK_S))

    def _timed(self, action: str) -> None:
        start = time.perf_counter()
        try:
            getattr(self, action)()
        except Exception as error:  # noqa: BLE001 - every failure is counted and classified
            self._record(action, time.perf_counter() - start, error)
            return
        self._record(action, time.perf_counter() - start, None)

    def _record(self, action: str, seconds: float, error: Exception | None) -> None:
        text = str(error).lower() if error is not None else ""
        with self.lock:
            self.report.requests += 1
            self.report.latencies[action].append(seconds)
            if error is None:
                return
            if all(word in text for word in BUSY):
                self.report.refused_busy += 1
            elif RATE_LIMITED in text:
                self.report.refused_rate_limit += 1
            else:
                self.report.errors += 1
                self.report.error_samples.append(f"{action}: {type(error).__name__}: {str(error)[:200]}")

    def browse(self) -> None:
        family = self.rng.choice(["any", "matrix", "analogy"])
        self.client.call("browse", family, "any", "", 1, 5, False, 1)

    def solve(self) -> None:
        from app import prompts

        if self.prompt is None:
            self.prompt = self.client.upload(self.prompt_files)
        slots: list[Any] = [None] * len(prompts.ALL_SLOTS)
        for name, file in zip(("slot-a1", "slot-a1p", "slot-b"), self.prompt, strict=True):
            slots[prompts.ALL_SLOTS.index(name)] = file
        seed = self.rng.randrange(1000)
        self.client.call("solve", "analogy", "1", *slots, None, 2, 1.0, 0, 1.0, seed, "auto")
        self.solved = True

    def rate(self) -> None:
        vote = self.rng.choice(["up", "down"])
        status, _ = self.client.call("rate", self.visitor_id, self.rng.randint(1, 2), vote, False)
        found = re.search(r"\(rating (\d+)\)", status)
        if not found:
            raise RuntimeError(f"a rating was answered without its id: {status!r}")
        with self.lock:
            self.report.acknowledged_ratings.add(int(found.group(1)))

    def attempt(self) -> None:
        puzzle_id = self.rng.choice(self.puzzle_ids)
        choice = self.rng.choice(["#1", "#2", "I give up"])
        self.answered = None
        verdict, *_ = self.client.call("attempt", self.visitor_id, puzzle_id, choice)
        with self.lock:
            self.report.acknowledged_attempts[self.visitor_id] += 1
        self.answered = (puzzle_id, verdict)

    def attempt_model(self) -> None:
        self.client.call("attempt_model", *self.answered)


def engine_solves_per_s(bundle: Path | None, prompt_files: Sequence[str], seconds: float = 5.0) -> float:
    """Solves a second of the engine alone on the visitors' prompt (2 samples, one solve after another)."""
    from PIL import Image

    from engine.serving.runtime import Bundle
    from puzzles.images import to_rgb_array

    model = Bundle.load(bundle)
    images = [to_rgb_array(Image.open(path)) for path in prompt_files]
    model.complete(images, n_samples=2)  # warm up
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.complete(images, n_samples=2, seed=count)
        count += 1
    return count / (time.perf_counter() - started)


def check_loopback(url: str) -> None:
    """The load goes to this machine only."""
    from urllib.parse import urlparse

    host = urlparse(url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise ValueError(f"the load test only targets loopback addresses, not {host!r}")


def run_load(url: str, bank: Any, puzzle_ids: Sequence[str], prompt_files: Sequence[str], visitors: int = 8,
             seconds: float = 10.0, seed: int = 0, actions: Mapping[str, float] = ACTIONS,
             server_pid: int | None = None) -> LoadReport:
    """Run `visitors` simulated visitors against `url` for `seconds`, then count lost writes in `bank`; with
    `server_pid`, also the CPU the server's process spent meanwhile."""
    check_loopback(url)
    if not 1 <= visitors <= MAX_VISITORS or not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"visitors must be 1-{MAX_VISITORS} and seconds 0-{MAX_SECONDS}")
    if not actions or any(action not in ACTIONS or weight < 0 for action, weight in actions.items()):
        raise ValueError(f"actions must be some of {', '.join(ACTIONS)} with weights >= 0, got {dict(actions)}")
    report, lock = LoadReport(visitors, seconds), threading.Lock()
    people = [_Visitor(url, report, lock, puzzle_ids, prompt_files, seed * 1000 + n, actions)
              for n in range(visitors)]
    cpu_before = process_cpu_seconds(server_pid)
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=person.run, args=(deadline,), daemon=True) for person in people]
    for thread in threads:
        thread.start()
    with tqdm(total=int(seconds), desc="load", unit="s", disable=None) as bar:
        while time.monotonic() < deadline:
            time.sleep(1)
            bar.update(1)
    for thread in threads:
        thread.join(timeout=120)  # the last requests finish; a solve has its own time limit
    cpu_after = process_cpu_seconds(server_pid)
    if cpu_before is not None and cpu_after is not None:
        report.server_cpu_s = cpu_after - cpu_before
    count_lost_writes(bank, report)
    return report


def process_cpu_seconds(pid: int | None) -> float | None:
    """User and system CPU seconds of a process so far, from /proc (None without a pid or on another system)."""
    import os

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split() if pid else None
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else None


def count_lost_writes(bank: Any, report: LoadReport) -> None:
    """Every acknowledged rating id must exist; every visitor must have at least its acknowledged attempts."""
    from sqlalchemy import func, select

    from puzzles.bank.db import read_session
    from puzzles.bank.models import Attempt, Rating

    with read_session(bank) as session:
        stored = set(session.scalars(select(Rating.id).where(Rating.id.in_(report.acknowledged_ratings))))
        counts = dict(session.execute(
            select(Attempt.visitor_id, func.count()).where(Attempt.visitor_id.in_(report.acknowledged_attempts))
            .group_by(Attempt.visitor_id)).all())
    report.lost_ratings = len(report.acknowledged_ratings - stored)
    report.lost_attempts = sum(max(0, n - counts.get(v, 0)) for v, n in report.acknowledged_attempts.items())


def fill_bank(bank: Any) -> tuple[list[str], list[Any]]:
    """Small published puzzles (one-pair analogies, matrices): their ids and the first analogy's panels."""
    from puzzles.bank import repository
    from puzzles.generators import generate

    ids, first = [], None
    for seed in range(3):
        puzzle = generate("analogy", seed, size=32)
        puzzle.panels = puzzle.panels[-3:]  # one example pair + B: short sentences for any bundle
        puzzle.layout = {**puzzle.layout, "pairs": 1}
        puzzle.id = puzzle.content_id()
        first = first or puzzle.panels
        ids.append(repository.add_puzzle(bank, puzzle, status="published"))
    for seed in range(3):
        ids.append(repository.add_puzzle(bank, generate("matrix", seed, size=32), status="published"))
    return ids, list(first or [])


def write_prompt_files(panels: Sequence[Any], folder: Path) -> list[str]:
    from puzzles.images import png_bytes

    paths = []
    for index, image in enumerate(panels):
        path = folder / f"panel{index}.png"
        path.write_bytes(png_bytes(image))
        paths.append(str(path))
    return paths


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def build_app(bundle: Path | None, data_dir: Path, port: int) -> tuple[Any, list[str], list[str]]:
    """The app over a fresh bank of small puzzles in `data_dir`: (Starlette app, puzzle ids, prompt files)."""
    from app.server import create_app
    from app.settings import resolve
    from puzzles.bank import connect

    values = {"data_dir": str(data_dir), "port": str(port), "bundle": str(bundle) if bundle else None,
              "model_niceness": str(SERVER_NICENESS),
              # the simulated visitors share one loopback address: its per-client limits would count them as one
              **dict.fromkeys(("writes_per_minute", "new_visitors_per_hour", "queue_places", "upload_mb_per_hour",
                               "submissions_per_hour"), str(10 * MAX_VISITORS * MAX_SECONDS))}
    settings = resolve(values, environ={})
    bank = connect(f"sqlite:///{data_dir / 'gelato.db'}")
    ids, panels = fill_bank(bank)
    app = create_app(settings, bank=bank, seed=False, check_bundle=True)
    return app, ids, write_prompt_files(panels, data_dir)


def serve_forever(bundle: Path | None, data_dir: Path, port: int) -> None:
    """The server side of a load run (its own process): build the app, say so in READY_FILE, serve until killed."""
    import uvicorn

    from app.server import UVICORN_OPTIONS

    app, ids, files = build_app(bundle, data_dir, port)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **UVICORN_OPTIONS))
    (data_dir / READY_FILE).write_text(json.dumps({"ids": ids, "files": files}))
    server.run()


def serve_in_child(bundle: Path | None, data_dir: Path) -> tuple[str, Any, Any, list[str], list[str]]:
    """The app in a process of its own, as a real server is (the visitors' clients are not in its process):
    (url, process, bank, puzzle ids, prompt files)."""
    import sys
    import urllib.request

    from app import visitors
    from puzzles.bank import connect

    port = free_port()
    command = [sys.executable, "-m", "app.loadtest", "--serve", str(port), "--data-dir", str(data_dir)]
    command += ["--bundle", str(bundle)] if bundle else []
    process = subprocess.Popen(command)
    url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with code {process.returncode} before it served")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the app did not start within 120 s")
        if (data_dir / READY_FILE).exists():
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                pass
        time.sleep(0.1)
    ready = json.loads((data_dir / READY_FILE).read_text())
    visitors.install_visitor_key(data_dir)  # the visitors' ids are signed as the server signs them (its key file)
    return url, process, connect(f"sqlite:///{data_dir / 'gelato.db'}"), ready["ids"], ready["files"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.loadtest", description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=32, help="simulated visitors at once (default 32)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load runs (default 60)")
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the visitors' choices")
    parser.add_argument("--only", choices=sorted(ACTIONS), help="every visitor does this action alone (what it costs)")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the server's own process
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if arguments.serve:
        serve_forever(arguments.bundle, arguments.data_dir, arguments.serve)
        return 0
    with tempfile.TemporaryDirectory(prefix="gelato-load-") as folder:
        url, process, bank, ids, files = serve_in_child(arguments.bundle, Path(folder))
        try:
            engine_rate = engine_solves_per_s(arguments.bundle, files)
            actions = {arguments.only: 1.0} if arguments.only else ACTIONS
            report = run_load(url, bank, ids, files, arguments.visitors, arguments.seconds, arguments.seed, actions,
                              server_pid=process.pid)
            report.engine_solves_per_s = engine_rate
        finally:
            process.terminate()
            try:  # open client connections can hold uvicorn's graceful shutdown; the figures are taken by now
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
            bank.close()
    print(report.summary())  # the tool's output: the figures
    return 1 if report.errors or report.lost_writes else 0


if __name__ == "__main__":
    raise SystemExit(main())
