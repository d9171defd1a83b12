"""Benchmark the app end to end: start `python -m app` on a free port, time its start and first solve, split an
idle Solve's time, load it with concurrent visitors, read its memory.

    python -m app.bench --bundle DIR --json OUT [--markdown OUT.md] [--quick]

The engine alone (stages, decode speed, engines, int8, floor) is `python -m engine.bench`; the longer load test
with every kind of visitor (attempts, browsing, ratings) is `python -m app.loadtest`.
"""
from __future__ import annotations

import datetime
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from app.loadtest import free_port
from engine.bench import (
    ANALOGY_IMAGES,
    ROOT,
    bench_parser,
    check_targets,
    cpu_name,
    fmt,
    load_average,
    sample_images,
    summary,
    targets_table,
    write_report,
)
from engine.bundle import read_manifest

log = logging.getLogger(__name__)


def wait_for_http(url: str, process: subprocess.Popen, timeout: float) -> float:
    """Seconds until `url` answers 200; raises when the process dies or the time runs out."""
    import urllib.request

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with code {process.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def wait_for_quiet(url: str, process: subprocess.Popen, timeout: float) -> float:
    """Seconds until /healthz says the server's work after its start (seeding, ranking the bank) is done: timings
    taken while it runs measure the two together."""
    import json
    import urllib.request

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with code {process.returncode}")
        with urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=10) as response:
            if json.loads(response.read()).get("background_work") is None:
                return time.perf_counter() - started
        time.sleep(0.5)
    raise TimeoutError(f"the app was still busy after {timeout:.0f} s")


def resident_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(value.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def solve_request(client: Any, files: list[str], n_samples: int, seed: int) -> float:
    from gradio_client import handle_file

    from app import prompts

    slots: list[Any] = [None] * len(prompts.ALL_SLOTS)
    for name, path in zip(("slot-a1", "slot-a1p", "slot-b"), files, strict=True):
        slots[prompts.ALL_SLOTS.index(name)] = handle_file(path)
    started = time.perf_counter()
    client.predict("analogy", "1", *slots, [], n_samples, 1.0, 0, 1.0, seed, api_name="/solve")
    return time.perf_counter() - started


def solve_split(url: str, files: list[str], bundle_dir: Path, scratch: Path, rounds: int = 5) -> dict[str, float]:
    """Where an idle app's Solve (4 samples) spends its time, medians of `rounds`: click to samples over HTTP,
    the engine's own call on the same prompt (in this process), the PNG files the app keeps of a run, and the rest
    (upload, queue, Gradio's processing of inputs and outputs, transport)."""
    import statistics

    from gradio_client import Client
    from PIL import Image

    from app import bank_writes, solving
    from engine.serving.runtime import Bundle

    client, bundle = Client(url, verbose=False), Bundle.load(bundle_dir)
    images = [np.asarray(Image.open(path).convert("RGB")) for path in files]
    http, engine, files_s = [], [], []
    for seed in range(rounds):
        http.append(solve_request(client, files, 4, seed=seed))
        started = time.perf_counter()
        samples = bundle.complete(images, n_samples=4, seed=seed)
        engine.append(time.perf_counter() - started)
        result = solving.SolveResult(samples, solving.SampleSettings(seed=seed), solving.bundle_id(bundle))
        started = time.perf_counter()
        bank_writes.save_run(scratch / f"split-{seed}", images, result, None)
        files_s.append(time.perf_counter() - started)
    split = {"click_to_samples_s": statistics.median(http), "engine_s": statistics.median(engine),
             "run_files_s": statistics.median(files_s)}
    split["rest_s"] = split["click_to_samples_s"] - split["engine_s"] - split["run_files_s"]
    return split


CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright cannot download browsers here
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


# Timed in the page, not by Playwright: its checks poll 0.1, 0.25, 0.5 and 1 s apart, so a Solve timed by them
# came out as whichever poll first saw the samples (about 0.35 s late). The watcher notes the moment of the click
# and resolves at the first frame after the settings line names the seed and all 4 samples have loaded.
WATCH_SOLVE_JS = r"""(seed) => { window.solveSeconds = new Promise((resolve) => {
  let clicked = null;
  const shown = () => {
    const imgs = [...document.querySelectorAll('#samples img')];
    return new RegExp(`\\bseed ${seed}\\b`).test(document.querySelector('#settings-used')?.textContent ?? '')
      && imgs.length === 4
      && imgs.every((img) => img.complete && img.naturalWidth > 0);
  };
  const check = () => {
    if (clicked === null || !shown()) return;
    observer.disconnect();
    document.removeEventListener('load', check, true);
    requestAnimationFrame(() => resolve((performance.now() - clicked) / 1000));
  };
  const observer = new MutationObserver(check);
  observer.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
  document.addEventListener('load', check, true);  // an image finishing its load changes no DOM
  document.querySelector('#solve').addEventListener('click', () => { clicked = performance.now(); },
                                                    {once: true, capture: true});
}); }"""


def browser_split(url: str, bank: Any, bundle_dir: Path, rounds: int = 7) -> dict[str, float]:
    """A Solve as a person sees it, medians of `rounds` (Chromium through Playwright, seeds 1..rounds): from the
    click on Solve until the settings line names the new seed and the 4 samples are on screen (timed in the page,
    WATCH_SOLVE_JS), on the bank's first analogy example (its candidates are ranked too), against the engine's own
    solve and ranking of that prompt."""
    import statistics

    from playwright.sync_api import expect, sync_playwright

    from app import bank_views, prompts, solving
    from app.pages.play import example_labels
    from engine.serving.runtime import Bundle

    bundle, clicks, engine = Bundle.load(bundle_dir), [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.locator("#examples input").click()
        option = page.get_by_role("option").filter(has_text="nalogy").first
        value_of = dict(example_labels([choice for layout in prompts.LAYOUTS  # the list as the page makes it
                                        for choice in bank_views.example_choices(bank, families=[layout])]))
        puzzle = bank_views.fetch_puzzle(bank, bank_views.id_from_choice(value_of[option.inner_text().strip()]))
        option.click()
        expect(page.locator("#candidates img")).to_have_count(len(puzzle["candidates"]), timeout=60_000)
        page.get_by_text("Advanced").click()  # the seed lives in the closed "Advanced" section
        expect(page.locator("#seed input")).to_be_visible()
        page.wait_for_timeout(500)  # a value typed while the section's fields are still being set up is lost
        for seed in range(1, rounds + 1):
            page.locator("#seed input").fill(str(seed))
            page.locator("#seed input").press("Tab")  # the page takes the value in when the field is left
            expect(page.locator("#seed input")).to_have_value(str(seed))
            page.evaluate(WATCH_SOLVE_JS, seed)
            page.locator("#solve").click()
            expect(page.locator("#settings-used")).to_contain_text(f"seed {seed}", timeout=60_000)
            expect(page.locator("#samples img")).to_have_count(4)
            clicks.append(page.evaluate("() => window.solveSeconds"))
        browser.close()
    chosen = bundle.sampling  # the app's defaults, as its Solve uses them; timed with the browser closed
    for seed in range(1, rounds + 1):
        settings = solving.SampleSettings(n_samples=4, seed=seed, top_k=chosen.top_k, top_p=chosen.top_p,
                                          temperature=max(chosen.temperature, solving.MIN_TEMPERATURE))
        started = time.perf_counter()
        solving.solve(bundle, puzzle["panels"], settings, puzzle["candidates"], family=puzzle.get("family"))
        engine.append(time.perf_counter() - started)
    split = {"browser_click_to_samples_s": statistics.median(clicks), "browser_engine_s": statistics.median(engine)}
    split["browser_outside_engine_s"] = split["browser_click_to_samples_s"] - split["browser_engine_s"]
    return split


def visitors_round(url: str, files: list[str], visitors: int, solves: int) -> dict[str, Any]:
    """`visitors` clients solving `solves` times each at once (4 samples a solve, the app's default)."""
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in range(visitors)]
    errors: list[str] = []

    def visit(index: int) -> list[float]:
        latencies = []
        for solve in range(solves):
            try:
                latencies.append(solve_request(clients[index], files, 4, seed=index * 100 + solve))
            except Exception as error:  # a failed solve is counted and reported, not fatal to the benchmark
                errors.append(str(error)[:200])
        return latencies

    started = time.perf_counter()
    with ThreadPoolExecutor(visitors) as pool:
        latencies = [value for result in pool.map(visit, range(visitors)) for value in result]
    wall = time.perf_counter() - started
    stats = summary(latencies) if latencies else {"median_ms": None, "p95_ms": None, "n": 0}
    return {"p50_s": None if not latencies else stats["median_ms"] / 1e3,
            "p95_s": None if not latencies else stats["p95_ms"] / 1e3, "solves": len(latencies),
            "solves_per_minute": len(latencies) / wall * 60, "errors": len(errors), "error_samples": errors[:3]}


FULL = {"visitors": (1, 4, 8), "solves": 4, "browser_rounds": 7}
QUICK = {"visitors": (1, 2), "solves": 1, "browser_rounds": 0}  # the browser's part: tests/test_app_bench.py
TARGETS = (  # (key in the flat results, comparison, limit, what is asked)
    ("visitors_8_p95_s", "<=", 6.0, "8 concurrent visitors solving, p95 (s)"),
    ("browser_outside_engine_s", "<=", 0.4, "a Solve in a browser, click to samples beyond the engine's time (s)"),
    ("app_startup_s", "<=", 10.0, "app start-up (s)"),
    ("app_rss_mb", "<=", 1536.0, "app resident memory (MB)"),
)


def measure_app(bundle_dir: Path, scratch: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Start `python -m app` on a free port, time its start and first solve, load it, read its memory."""
    port, data_dir = free_port(), scratch / "app-data"
    size = read_manifest(bundle_dir)["image_size"]
    files = []
    from PIL import Image

    for index, image in enumerate(sample_images(ANALOGY_IMAGES, size, seed=7)):
        files.append(str(scratch / f"panel{index}.png"))
        Image.fromarray(image).save(files[-1])
    command = [sys.executable, "-m", "app", "--port", str(port), "--bundle", str(bundle_dir), "--data-dir",
               str(data_dir)]
    log_file = open(scratch / "app.log", "w")
    process = subprocess.Popen(command, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        result: dict[str, Any] = {"command": " ".join(command[1:]), "startup_s": wait_for_http(url, process, 120)}
        result["rss_after_start_mb"] = resident_mb(process.pid)[0]
        result["background_work_s"] = wait_for_quiet(url, process, 600)  # seeding and ranking the bank
        from gradio_client import Client

        result["first_solve_s"] = solve_request(Client(url, verbose=False), files, 4, seed=0)  # loads the model
        result["solve_split"] = solve_split(url, files, bundle_dir, scratch)
        if settings["browser_rounds"]:
            from puzzles.bank import connect

            bank = connect(f"sqlite:///{data_dir / 'gelato.db'}")
            try:
                result["solve_split"].update(browser_split(url, bank, bundle_dir, settings["browser_rounds"]))
            finally:
                bank.close()
        log.info("an idle Solve, 4 samples (s): %s", {k: round(v, 3) for k, v in result["solve_split"].items()})
        result["visitors"] = {str(count): visitors_round(url, files, count, settings["solves"])
                              for count in tqdm(settings["visitors"], desc="visitors", leave=False)}
        result["rss_mb"], result["peak_rss_mb"] = resident_mb(process.pid)
        log.info("app section timings: %s", {key: value for key, value in result.items() if key.endswith("_s")})
        return result
    finally:
        process.terminate()
        try:  # open client connections can hold uvicorn's graceful shutdown; the numbers are taken by now
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_file.close()


def flat_results(app: dict[str, Any]) -> dict[str, float | None]:
    return {"visitors_8_p95_s": (app["visitors"].get("8") or {}).get("p95_s"), "app_startup_s": app["startup_s"],
            "app_rss_mb": app["peak_rss_mb"],
            "browser_outside_engine_s": app["solve_split"].get("browser_outside_engine_s")}


def markdown(report: dict[str, Any]) -> str:
    meta, app = report["meta"], report["app"]
    split = app["solve_split"]
    lines = [f"Measured {meta['date']} on {meta['machine']} (load average before/after {meta['load_before']} / "
             f"{meta['load_after']}), bundle directory `{meta['bundle_dir']}`.", "", f"Command: `{meta['command']}`",
             "", "| concurrent visitors (4 samples each) | p50 s | p95 s | solves/min | errors |",
             "|---|---|---|---|---|"]
    lines += [f"| {count} | {fmt(v['p50_s'])} | {fmt(v['p95_s'])} | {fmt(v['solves_per_minute'], 1)} | "
              f"{v['errors']} |" for count, v in app["visitors"].items()]
    lines += ["", f"App start-up {fmt(app['startup_s'])} s (then {fmt(app['background_work_s'], 0)} s seeding and "
              f"ranking the bank, waited for before the timings), first solve {fmt(app['first_solve_s'])} s, "
              f"resident memory {fmt(app['rss_mb'], 0)} MB (peak {fmt(app['peak_rss_mb'], 0)} MB).",
              f"An idle Solve (4 samples): click to samples {fmt(split['click_to_samples_s'])} s = engine "
              f"{fmt(split['engine_s'])} + run files {fmt(split['run_files_s'])} + upload, queue, Gradio and "
              f"transport {fmt(split['rest_s'])} s.",
              browser_line(split), "", targets_table(report["targets"])]
    return "\n".join(lines) + "\n"


def browser_line(split: dict[str, float]) -> str:
    if "browser_click_to_samples_s" not in split:
        return "A Solve in a browser: not measured (--quick)."
    return (f"In Chromium, on the bank's first analogy example (4 samples and its candidates ranked): click to samples "
            f"{fmt(split['browser_click_to_samples_s'])} s = the engine's solve and ranking "
            f"{fmt(split['browser_engine_s'])} + outside the engine {fmt(split['browser_outside_engine_s'])} s.")


def run(bundle_dir: Path, quick: bool = False, command: str = "") -> dict[str, Any]:
    settings = QUICK if quick else FULL
    meta = {"date": datetime.datetime.now().isoformat(timespec="minutes"), "machine": cpu_name(),
            "load_before": load_average(), "bundle_dir": str(bundle_dir), "quick": quick, "command": command,
            "settings": {key: list(value) if isinstance(value, tuple) else value for key, value in settings.items()}}
    with tempfile.TemporaryDirectory(prefix="gelato-app-bench-") as scratch:
        app = measure_app(bundle_dir, Path(scratch), settings)
    meta["load_after"] = load_average()
    return {"meta": meta, "app": app, "targets": check_targets(flat_results(app), TARGETS)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = bench_parser("python -m app.bench", __doc__.splitlines()[0]).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = "python -m app.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    report = run(Path(args.bundle), quick=args.quick, command=command)
    write_report(report, markdown(report), args, "App benchmark")
    return report


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m app.bench")
