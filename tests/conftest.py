"""Shared fixtures: `make_bank(tmp_path, **overrides)` opens a real, migrated bank (SQLite file or PostgreSQL)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from puzzles.bank import Bank, connect
from tests.helpers import build_tiny_bundle, free_port

BANK_BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[Any]:
    """Fresh PostgreSQL databases for the whole run (see tests/pg.py).

    The server is $GELATO_TEST_PG_URL (an admin URL, e.g. a CI service) when set, else a throwaway cluster
    started here. A server that cannot start makes the PostgreSQL tests fail, never skip.
    """
    from tests.pg import PostgresServer, TestDatabases, wait_until_ready

    external = os.environ.get("GELATO_TEST_PG_URL")
    server = None
    if external:
        wait_until_ready(external)
        admin_url = external
    else:
        server = PostgresServer().start()
        admin_url = server.admin_url
    databases = TestDatabases(admin_url)
    try:
        yield databases.prepare()
    finally:
        if server is not None:
            server.stop()  # the whole cluster goes: nothing to drop
        else:
            databases.drop_all()


@pytest.fixture(params=BANK_BACKENDS)
def make_bank(request: pytest.FixtureRequest) -> Iterator[Callable[..., Bank]]:
    """Factory for banks on a real database; every test that uses it runs once per back end.

    SQLite: a file under tmp_path/<name>/. PostgreSQL: a fresh database per (tmp_path, name), so asking
    again for the same place reopens the same bank. Overrides: `name` (the data sub-directory, so one test
    can open several independent banks), `backend` ("sqlite" or "postgresql" instead of the test's own),
    `url` (any SQLAlchemy URL). Restrict a test to one back end with
    `@pytest.mark.parametrize("make_bank", ["sqlite"], indirect=True)`.
    """
    opened: list[Bank] = []
    postgres_urls: dict[tuple[Path, str], str] = {}

    def factory(tmp_path: Path, **overrides: Any) -> Bank:
        unknown = set(overrides) - {"url", "name", "backend"}
        if unknown:
            raise TypeError(f"make_bank: unknown override(s) {sorted(unknown)}")
        backend = overrides.get("backend", request.param)
        if backend not in BANK_BACKENDS:
            raise ValueError(f"make_bank: backend must be one of {BANK_BACKENDS}, got {backend!r}")
        name = overrides.get("name", "data")
        data_dir = tmp_path / name
        data_dir.mkdir(parents=True, exist_ok=True)
        url = overrides.get("url")
        if url is None and backend == "postgresql":
            key = (tmp_path, name)
            if key not in postgres_urls:
                postgres_urls[key] = request.getfixturevalue("postgres_databases").create()
            url = postgres_urls[key]
        # An explicit URL either way, so a DATABASE_URL in the environment never points tests elsewhere.
        bank = connect(url or f"sqlite:///{data_dir / 'gelato.db'}")
        opened.append(bank)
        return bank

    yield factory
    for bank in opened:
        bank.close()


# ---------------------------------------------------------------- the playground app, served in-process


@pytest.fixture(scope="session")
def tiny_bundle_dir() -> Path:
    """A random-init model bundle (16x16 images, 16 tokens each), built once per test run."""
    return build_tiny_bundle()[0]


def _fill_playground_bank(bank: Bank) -> list[str]:
    """Published puzzles small enough for the tiny bundle: analogies (1 pair), matrices, a sequence."""
    from puzzles.bank import repository
    from puzzles.generators import generate

    ids = []
    for seed in range(3):
        puzzle = generate("analogy", seed, size=32)
        puzzle.panels = puzzle.panels[-3:]  # one example pair + B keeps the sentence inside the tiny context
        puzzle.layout = {**puzzle.layout, "pairs": 1}
        puzzle.id = puzzle.content_id()
        ids.append(repository.add_puzzle(bank, puzzle, status="published"))
    for seed in range(3):
        ids.append(repository.add_puzzle(bank, generate("matrix", seed, size=32), status="published"))
    return ids


# Tests drive many simulated visitors from one loopback address; the per-client limits (tested in
# tests/test_security.py) would otherwise count them all as one client.
MANY_CLIENTS_LIMITS = {"writes_per_minute": "100000", "new_visitors_per_hour": "100000", "queue_places": "1000",
                       "upload_mb_per_hour": "100000", "submissions_per_hour": "100000"}


@pytest.fixture(scope="session")
def playground(tmp_path_factory: pytest.TempPathFactory, tiny_bundle_dir: Path) -> Iterator[dict[str, Any]]:
    """The whole app (FastAPI + Gradio) on a free local port with a real SQLite bank and the tiny bundle.

    Yields {"url", "bank", "puzzle_ids", "data_dir"}; the bank holds three one-pair analogies and three matrices.
    """
    from app.server import create_app
    from app.settings import resolve

    data_dir = tmp_path_factory.mktemp("playground")
    port = free_port()
    settings = resolve({"data_dir": str(data_dir), "bundle": str(tiny_bundle_dir), "port": str(port),
                        **MANY_CLIENTS_LIMITS}, environ={})
    bank = connect(f"sqlite:///{data_dir / 'gelato.db'}")
    puzzle_ids = _fill_playground_bank(bank)
    app = create_app(settings, bank=bank, seed=False)
    server = serve_in_thread(app, port)
    yield {"url": f"http://127.0.0.1:{port}/", "bank": bank, "puzzle_ids": puzzle_ids, "data_dir": data_dir}
    server.should_exit = True
    bank.close()


def serve_in_thread(app: Any, port: int, timeout_s: float = 30) -> Any:
    """Serve an ASGI app on loopback from a daemon thread; returns the uvicorn server once it accepts requests
    (set `should_exit` to stop it)."""
    import threading
    import time

    import uvicorn

    from app.server import UVICORN_OPTIONS

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **UVICORN_OPTIONS))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the server on port {port} did not start within {timeout_s:.0f} s")
        time.sleep(0.05)
    return server


@contextlib.contextmanager
def app_state_kept() -> Iterator[None]:
    """create_app installs its services and points GRADIO_TEMP_DIR at its data dir, both process-wide: an app served
    before one made inside this block gets its own back afterwards."""
    from app import services

    try:
        previous = services.current()
    except RuntimeError:
        previous = None
    temp_dir = os.environ.get("GRADIO_TEMP_DIR")
    try:
        yield
    finally:
        if previous is not None:
            services.install(previous)
        if temp_dir is not None:
            os.environ["GRADIO_TEMP_DIR"] = temp_dir


@contextlib.contextmanager
def second_app(data_dir: Path, bundle: Path, bank: Bank) -> Iterator[str]:
    """Serve another full app (its own data dir, bundle and bank) beside the shared playground; yields its URL
    (afterwards the shared playground gets its own services back: app_state_kept)."""
    from app.server import create_app
    from app.settings import resolve

    with app_state_kept():
        port = free_port()
        settings = resolve({"data_dir": str(data_dir), "bundle": str(bundle), "port": str(port)}, environ={})
        server = serve_in_thread(create_app(settings, bank=bank, seed=False), port)
        try:
            yield f"http://127.0.0.1:{port}/"
        finally:
            server.should_exit = True


@pytest.fixture(autouse=True)
def _keep_gradio_temp_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """create_app points GRADIO_TEMP_DIR (process-wide) at its data dir; a test that builds a second app must not
    move the shared playground's upload folder away from under it."""
    if "GRADIO_TEMP_DIR" in os.environ:  # absent: the first app is being made now and its setting must stay
        monkeypatch.setenv("GRADIO_TEMP_DIR", os.environ["GRADIO_TEMP_DIR"])


BROWSER_TIMEOUT_MS = 30_000  # a loaded 2-core CI machine is slower than Playwright's 5 s default


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    from app.bench import CHROMIUM, CHROMIUM_ARGS  # Debian's Chromium (tests/run.sh installs it)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def open_playground(page: Any, url: str) -> None:
    """Open the playground and wait for its load event to end (it stores the visitor id in the browser): the
    examples, the bank's first page and the About texts arrive with it."""
    from playwright.sync_api import expect

    from app.server import VISITOR_KEY

    page.goto(url)
    expect(page.locator("#solve")).to_be_visible()
    page.wait_for_function(f"() => !!localStorage.getItem({VISITOR_KEY!r})", timeout=BROWSER_TIMEOUT_MS)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    yield page
    context.close()
