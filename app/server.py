"""Build the playground (Gradio Blocks mounted on a FastAPI app) and serve it.

`build_blocks` lays out the pages; `create_app` opens the bank, seeds it, mounts the Blocks at "/" and
leaves a seam for the curator pages at CURATE_PATH; `serve` runs it with uvicorn. The model is loaded on
first use, never at import or start.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from app.errors import Refusal
from app.services import Services, install
from app.settings import AppSettings
from app.uploads import mark_launched

if TYPE_CHECKING:  # the runtime loads onnxruntime: typed here, loaded on first use
    from engine.serving.runtime import Bundle

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "static"
# The gate reads X-Forwarded-For itself, trusting only the configured proxy hops; uvicorn's own reading would
# trust any loopback peer and rewrite the client address before the gate sees it.
UVICORN_OPTIONS = {"proxy_headers": False}
CURATE_PATH = "/curate"  # the curator pages mount here (separate Blocks with their own auth dependency)
MAX_FILE_SIZE = "10mb"  # per upload; enforced by the server (413)
DELETE_CACHE = (3600, 86400)  # every hour, delete cached files older than a day
QUEUE_MAX_SIZE = 64  # waiting requests before new ones are refused
DEFAULT_CONCURRENCY = 4  # non-model events (bank reads, ratings) that may run at once
VISITOR_KEY = "gelato_visitor"
SEED_ATTEMPTS = 3  # the first try and two re-checks after a race with another replica
SEED_RETRY_DELAY_S = 1.0


def prepare_environment(settings: AppSettings) -> None:
    """Gradio's temp files go under the data dir; must run before any Blocks is built."""
    from app.uploads import guard_file_inputs

    settings.temp_dir.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(settings.temp_dir.resolve())
    # Gradio sums up its last 10,000 events in a pandas table after every event (for a monitoring page this app
    # does not serve): 3-8 ms of the event loop's thread per event on this machine. Once every 1,000 events.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
    make_gradio_cache_writes_atomic()
    guard_file_inputs()


def make_gradio_cache_writes_atomic() -> None:
    """Gradio writes an output image to a path named by its content, truncating the file if it exists. Two
    visitors getting the same picture at once (the same bank page) then race: one is served a file the other
    is rewriting, and the browser gets a cut response. Writing to a temporary name and renaming over the
    target keeps every reader on a complete file."""
    from gradio import processing_utils

    if getattr(processing_utils.save_pil_to_cache, "gelato_atomic", False):
        return

    def save_pil_to_cache(img: Any, cache_dir: str, name: str = "image", format: str = "webp") -> str:
        data = processing_utils.encode_pil_to_bytes(img, format)
        folder = Path(cache_dir) / processing_utils.hash_bytes(data)
        folder.mkdir(exist_ok=True, parents=True)
        target = (folder / f"{name}.{format}").resolve()
        if target.exists():  # named by its content: the same picture, complete (written by a rename)
            return str(target)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, target)
        return str(target)

    save_pil_to_cache.gelato_atomic = True  # type: ignore[attr-defined]
    processing_utils.save_pil_to_cache = save_pil_to_cache


def open_services(
    settings: AppSettings, bank: Any | None = None, bundle: Bundle | None = None, seed: bool = True,
    bundle_note: str | None = None,
) -> Services:
    """Open (or take) the bank, start seeding it from the starter pack, and make it the app's services."""
    from app.visitors import install_visitor_key
    from puzzles.bank import connect

    install_visitor_key(settings.data_dir)
    if bank is None:
        bank = connect(settings.database_url, settings.data_dir)
    services = install(Services(settings, bank, bundle, bundle_note))
    if seed:
        # Seeding reads the whole starter pack (seconds); the server starts meanwhile, and the seeder is
        # idempotent, so a restart or a second replica only finds every puzzle already there.
        services.background_work = "seeding the bank"
        threading.Thread(target=seed_and_rank, args=(services,), name="seed-bank", daemon=True).start()
    return services


def seed_and_rank(services: Services) -> None:
    """Seed the bank, then let the model rank every puzzle it has no result for yet (once per bundle), so the
    "model gets it wrong" filter knows the whole bank; both run in the background while the server serves (a
    minute or two of the CPU after a first start; /healthz says while it lasts)."""
    from app.model_picks import record_model_picks

    try:
        seed_starter_pack(services.bank)
        services.background_work = "the model ranks the bank's puzzles"
        try:
            log.info("the model ranked %d bank puzzles", record_model_picks(services.bank, services.bundle()))
        except RuntimeError as error:  # no usable bundle: the filter knows what visitors' runs tell it
            log.warning("bank puzzles not ranked: %s", error)
    finally:
        services.background_work = None


def seed_starter_pack(bank: Any, pack_path: Path | None = None) -> None:
    """Import the starter pack (idempotent). Replicas starting together race to seed one bank: the loser's
    insert collides with the winner's rows (PostgreSQL), or waits on the winner's write lock past the busy
    timeout (SQLite). Once the winner's transaction is over, a second try finds every puzzle there."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    from puzzles.bank.repository import seed_bank

    for attempt in range(1, SEED_ATTEMPTS + 1):
        try:
            seed_bank(bank, pack_path)
            return
        except (FileNotFoundError, ValueError) as error:
            log.warning("bank not seeded: %s", error)
            return
        except (IntegrityError, OperationalError) as error:
            if attempt == SEED_ATTEMPTS:
                log.error("bank not seeded: %s", error)
                return
            log.info("seeding raced with another process (%s); checking again", type(error).__name__)
            time.sleep(SEED_RETRY_DELAY_S)


def head_html() -> str:
    """The drag-from-gallery script, inlined so it needs no extra route."""
    script = (STATIC / "js" / "gelato.js").read_text(encoding="utf-8")
    return f"<script>{script}</script>"


def launch_options() -> dict[str, Any]:
    """The launch()/mount options shared by every way of serving (theme, css and head are launch args in Gradio 6)."""
    return {
        "css": (STATIC / "css" / "gelato.css").read_text(encoding="utf-8"),
        "head": head_html(),
        "max_file_size": MAX_FILE_SIZE,
        "allowed_paths": [str(STATIC)],
        "show_error": False,  # only gr.Error messages reach the browser; other exceptions may name server paths
    }


def on_load(visitor_id: str | None, request: gr.Request) -> list[Any]:
    """Page load: visitor id, what Play reads from the bank, first bank page, About texts, a `?puzzle=` deep link."""
    from app import visitors
    from app.pages import about, bank, play

    visitor_id = visitors.ensure_visitor_id(visitor_id)
    browse = bank.browse("any", "any", "", 1, 5, False, 1)
    overview, card, evaluation = about.load_about()
    puzzle_id = (request.query_params.get("puzzle") if request is not None else None) or ""
    opened = [gr.skip()] * bank.OPEN_OUTPUTS  # Try it yourself's outputs and the tabs
    if puzzle_id:
        try:
            opened = bank.open_try(puzzle_id.strip())
        except gr.Error as error:  # a bad link must not break the page: say so and open nothing
            gr.Warning(error.message)
    return [visitor_id, *play.load_examples(), *browse, overview, card, evaluation, *opened]


def build_blocks() -> Any:
    """The playground's Blocks; handlers find the model and bank through app.services.current()."""
    from app.pages import about, api, bank, challenge, play

    with gr.Blocks(title="Gelato", delete_cache=DELETE_CACHE) as demo:
        visitor = gr.BrowserState(None, storage_key=VISITOR_KEY)
        gr.Markdown("# Gelato — visual analogies, answered by a small vision model")
        with gr.Tabs(selected="play", elem_id="tabs", overflow_behavior="wrap") as tabs:  # no "..." on a phone
            with gr.Tab("Play", id="play", elem_id="tab-play"):
                play_parts = play.build(visitor)
            with gr.Tab("Bank", id="bank", elem_id="tab-bank"):
                bank_parts = bank.build_bank()
            with gr.Tab("Try it yourself", id="try", elem_id="tab-try") as try_tab:
                try_parts = bank.build_try(visitor)
            with gr.Tab("Challenge", id="challenge", elem_id="tab-challenge"):
                challenge.build(visitor)
            with gr.Tab("About", id="about", elem_id="tab-about"):
                overview, card, evaluation = about.build()
        api.build()  # named endpoints for programs (answer, rank, puzzle)
        try_tab.select(try_parts["open_when_empty"], try_parts["puzzle_id"], try_parts["open_outputs"],
                       api_visibility="private")

        def open_in_play(puzzle_id: str | None) -> list[Any]:
            if not puzzle_id:
                raise Refusal("select a puzzle in the gallery first")
            try:
                bank.published_puzzle(puzzle_id)
            except ValueError as error:
                raise Refusal(str(error)) from error
            return [*play.fill_from_puzzle(puzzle_id), gr.Tabs(selected="play")]

        bank_parts["play_button"].click(open_in_play, bank_parts["selected"], [*play_parts.fill_outputs(), tabs],
                                        api_name="open_in_play")
        bank_parts["try_button"].click(bank.open_try, bank_parts["selected"], [*try_parts["open_outputs"], tabs],
                                       api_name="open_try")
        demo.load(
            on_load, visitor,
            [visitor, *play_parts.load_examples_outputs, *bank_parts["gallery_outputs"], overview, card, evaluation,
             *try_parts["open_outputs"], tabs],
            api_visibility="private",
        )
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=DEFAULT_CONCURRENCY)
    return demo


def mount_curator_pages(app: Any, services: Services) -> None:
    """The curator pages: their own Blocks at CURATE_PATH, behind a login and an auth dependency (app.curate)."""
    from app.curate import mount

    mount(app, services.bank, services.settings.data_dir, CURATE_PATH, launch_options(),
          trusted_proxies=services.settings.trusted_proxies)


def add_gate(app: Any, settings: AppSettings, blocks: Any) -> None:
    """The request gate (app.gate: body bounds, known events, per-client limits, headers) and a CORS policy of
    no cross-origin access at all, which also keeps Gradio from allowing any localhost origin with cookies."""
    from starlette.middleware.cors import CORSMiddleware

    from app.gate import Gate
    from app.limits import ClientLimits

    app.add_middleware(CORSMiddleware, allow_origins=[], allow_credentials=False)
    app.add_middleware(Gate, limits=ClientLimits.from_settings(settings), blocks=blocks)


def add_health_route(app: Any, services: Services) -> None:
    """GET /healthz: 200 or 503 with the bundle, provider and database parts (docs/deploy.md)."""
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    from app.health import health_report

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        status, body = await run_in_threadpool(health_report, services)
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def create_app(
    settings: AppSettings, bank: Any | None = None, bundle: Bundle | None = None, seed: bool = True,
    check_bundle: bool = False,
) -> Any:
    """The FastAPI app serving the playground at "/", the curator pages at CURATE_PATH and /healthz.

    With `check_bundle` (what `serve` does) the bundle's files are verified first: a broken bundle stops the
    start with a StartupError naming the file, or, when it was not the default one, the default is served.
    """
    from dataclasses import replace

    from fastapi import FastAPI

    from app.health import choose_bundle
    from app.pages import about
    from app.pages.plain_html import add_not_found_page

    bundle_note = None
    if check_bundle and bundle is None:
        chosen, bundle_note = choose_bundle(settings.bundle)
        settings = replace(settings, bundle=chosen)
    prepare_environment(settings)
    services = open_services(settings, bank, bundle, seed, bundle_note)
    demo = build_blocks()
    app = FastAPI(title="Gelato")
    add_health_route(app, services)
    mount_curator_pages(app, services)
    options = launch_options()
    options["allowed_paths"] += [str(path) for path in about.card_images(services.bundle_dir)]  # its pictures
    app = gr.mount_gradio_app(app, demo, "/", **options)
    add_not_found_page(app)
    mark_launched(demo)
    add_gate(app, settings, lambda: demo)  # added last: the outermost layer, before any other middleware
    app.state.gelato_blocks = demo
    app.state.gelato_services = services
    return app


def serve(settings: AppSettings) -> None:
    """Run the playground until interrupted."""
    import uvicorn

    from app.health import StartupError

    try:
        app = create_app(settings, check_bundle=True)
    except StartupError as error:
        log.error("%s", error)
        raise SystemExit(f"gelato: {error}") from error
    log.info("Gelato on http://%s:%d (bank %s)", settings.host, settings.port, app.state.gelato_services.bank.url)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", **UVICORN_OPTIONS)
