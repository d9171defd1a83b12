"""Files made for a curator (exports, backups): private until fetched once behind the curator check, then gone.

A backup holds every curator's password hash, so it must never pass through Gradio's file cache, which the
public playground serves to anyone. A handler writes the file into a fresh folder named by a random token
under `<data dir>/curator-files` (owner-only) and shows a link to GET DOWNLOAD_PATH/<token>; that route
answers 401 without a curator session, streams the file, and deletes it once sent. Files nobody fetched are
deleted after KEEP_SECONDS.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import FileResponse, PlainTextResponse
from starlette.background import BackgroundTask

log = logging.getLogger(__name__)

DOWNLOAD_PATH = "/curate-download"
FOLDER = "curator-files"
KEEP_SECONDS = 3600
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22,64}$")


class CuratorFiles:
    """The private folder of curator downloads: `new` gives a path to write, `find` the file of a token."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def new(self, filename: str) -> tuple[str, Path]:
        """(token, path to write) in a fresh owner-only folder; also deletes files older than KEEP_SECONDS."""
        self.sweep()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        token = secrets.token_urlsafe(24)
        folder = self.root / token
        folder.mkdir(mode=0o700)
        return token, folder / filename

    def find(self, token: str) -> Path | None:
        """The file a token names, or None (malformed, unknown, already fetched or expired)."""
        if not _TOKEN.match(token or ""):
            return None
        folder = self.root / token
        files = [path for path in folder.iterdir() if path.is_file()] if folder.is_dir() else []
        return files[0] if len(files) == 1 else None

    def claim(self, token: str) -> Path | None:
        """The token's file moved out of reach of another fetch (an atomic rename), or None."""
        path = self.find(token)
        if path is None:
            return None
        sending = self.root / f".sending-{token}"
        try:
            (self.root / token).rename(sending)
        except OSError:  # a concurrent fetch claimed it first
            return None
        return sending / path.name

    def remove(self, token: str) -> None:
        if _TOKEN.match(token or ""):
            shutil.rmtree(self.root / token, ignore_errors=True)

    def sweep(self, now: float | None = None) -> None:
        """Delete folders older than KEEP_SECONDS (made for a download nobody fetched)."""
        now = time.time() if now is None else now
        for folder in self.root.iterdir() if self.root.is_dir() else []:
            try:
                expired = now - folder.stat().st_mtime > KEEP_SECONDS
            except FileNotFoundError:  # fetched (and deleted) meanwhile
                continue
            if expired:
                shutil.rmtree(folder, ignore_errors=True)


_files: CuratorFiles | None = None


def install(data_dir: Path) -> CuratorFiles:
    global _files
    _files = CuratorFiles(Path(data_dir) / FOLDER)
    return _files


def files() -> CuratorFiles:
    if _files is None:
        raise RuntimeError("curator downloads are not configured on this server")
    return _files


def link(token: str, path: Path) -> str:
    """Markdown for the download link a handler shows."""
    return f"[Download {path.name}]({DOWNLOAD_PATH}/{token}) (one download; deleted after)"


def add_route(app: Any, is_curator: Any) -> None:
    """GET DOWNLOAD_PATH/<token>: the file for a curator session (then deleted); 401 otherwise, 404 if none."""
    @app.get(DOWNLOAD_PATH + "/{token}", include_in_schema=False)
    def download(token: str, request: Request) -> Any:
        curator = is_curator(request)
        if curator is None:
            log.warning("curator download refused: no valid curator session")
            return PlainTextResponse("curator login required", status_code=401)
        path = files().claim(token)
        if path is None:
            return PlainTextResponse("no such download (each is served once, for an hour)", status_code=404)
        log.info("curator %s downloaded %s", curator, path.name)
        return FileResponse(path, filename=path.name, media_type="application/octet-stream",
                            headers={"Cache-Control": "no-store"},
                            background=BackgroundTask(shutil.rmtree, path.parent, ignore_errors=True))
