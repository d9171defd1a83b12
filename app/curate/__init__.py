"""Curator pages: their own Gradio Blocks at /curate, behind a login; visitors never reach them.

`mount(app, bank, data_dir)` adds the login/logout routes (see `app.curate.auth`) and mounts the curator
Blocks with an auth dependency that reads the signed session cookie (401 without one). Every handler in
`app.curate.actions` checks the same session again before it touches the bank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CURATE_PATH = "/curate"


def mount(app: Any, bank: Any, data_dir: Path, path: str = CURATE_PATH, launch_options: dict[str, Any] | None = None,
          secret: bytes | None = None, trusted_proxies: int = 0) -> Any:
    """Mount the curator pages on a FastAPI app at `path` and return the app."""
    import gradio as gr

    from app.curate import auth, downloads
    from app.curate.pages import build_blocks
    from app.uploads import guard_file_inputs, mark_launched

    guard_file_inputs()
    auth.install(bank, secret if secret is not None else auth.load_secret(Path(data_dir)), trusted_proxies)
    auth.add_routes(app, path)
    downloads.install(Path(data_dir))
    downloads.add_route(app, auth.auth_dependency)
    blocks = build_blocks()
    app = gr.mount_gradio_app(app, blocks, path, auth_dependency=auth.auth_dependency, **(launch_options or {}))
    mark_launched(blocks)
    app.state.gelato_curate_blocks = blocks
    return app
