"""Uploaded images: read safely, normalised once, with a clear message naming what is wrong.

Every image a visitor gives the app (a prompt slot, the answer, a candidate) passes through
`read_upload`: only raster formats Pillow decodes natively are accepted, the pixel count is checked from the
header before decoding (decompression bombs), and the result follows the rule of `puzzles.images`
(EXIF rotation, 16-bit, palette, CMYK, transparency on white, first frame of an animation), scaled down so
its longer side is at most MAX_SIDE. `SlotImage` is a `gr.Image` whose upload handling goes through it.

A file value in a request names a path on the server. `guard_file_inputs` makes every event of every Blocks in
this process (the playground and the curator pages) accept only paths inside Gradio's upload folder, before
Gradio copies or reads anything: a path elsewhere, a symlink leading out, a URL or a device gets one message
that names no path and says nothing of whether the file exists (`is_uploaded_here`).
"""
from __future__ import annotations

import io
import logging
import math
import os
import unicodedata
import warnings
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from app.errors import Refusal
from puzzles.images import to_rgb_array

log = logging.getLogger(__name__)

ACCEPTED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")
MAX_UPLOAD_PIXELS = 4096 * 4096  # checked from the header, before any pixel is decoded
MAX_DATA_URL_CHARS = 14 * 1024**2  # a pasted image arrives inline; about the 10 MB upload limit
MAX_SIDE = 1024  # the model works on small squares; larger uploads are scaled down on arrival
MAX_UPLOAD_BYTES = 10 * 1024**2  # the upload route's own limit (app.server.MAX_FILE_SIZE); checked before reading
NOT_UPLOADED = "this file was not uploaded to this page: upload it again"


class UploadError(ValueError):
    """An upload that cannot be used as an image; the message names the file and the problem."""


def display_name(name: str | os.PathLike[str] | None) -> str:
    """A file name safe to show: the last path part, control characters dropped, at most 80 characters."""
    text = Path(str(name or "upload")).name or "upload"
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    return (text or "upload")[:80]


def read_upload(data: bytes, name: str | None = None) -> np.ndarray:
    """Image bytes -> uint8 RGB (H, W, 3) by the normalisation rule; UploadError naming the problem."""
    label = display_name(name)
    if not data:
        raise UploadError(f"{label}: the file is empty (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
                width, height = image.size
                if width * height > MAX_UPLOAD_PIXELS:
                    side = math.isqrt(MAX_UPLOAD_PIXELS)
                    raise UploadError(f"{label}: {width} x {height} pixels is too large "
                                      f"(at most {side} x {side} pixels, or as many in another shape)")
                image.load()
                if max(width, height) > MAX_SIDE:
                    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BOX)
                return to_rgb_array(image)
        except UploadError:
            raise
        except Image.UnidentifiedImageError as error:
            kinds = ", ".join(ACCEPTED_FORMATS)
            raise UploadError(f"{label}: not a readable image (accepted: {kinds}); "
                              "the file is another kind of file or is damaged") from error
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise UploadError(f"{label}: too many pixels (decompression bomb?): {error}") from error
        except ValueError as error:
            if "MAX_TEXT_CHUNK" in str(error):  # Pillow's cap on text and colour-profile chunks
                raise UploadError(f"{label}: its metadata (text or colour profile) is over 1 MB") from error
            raise UploadError(f"{label}: damaged or truncated image ({error})") from error
        except (OSError, SyntaxError, EOFError) as error:
            raise UploadError(f"{label}: damaged or truncated image ({error})") from error


def read_upload_file(path: str | os.PathLike[str], name: str | None = None) -> np.ndarray:
    """`read_upload` of a file Gradio saved in its upload folder; any other path is refused unread."""
    label = display_name(name or path)
    if not is_uploaded_here(path):
        raise UploadError(f"{label}: {NOT_UPLOADED}")
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_UPLOAD_BYTES + 1)
    except OSError as error:
        raise UploadError(f"{label}: cannot read the upload") from error
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"{label}: over the upload limit of {MAX_UPLOAD_BYTES // 1024**2} MB")
    return read_upload(data, label)


def upload_folder() -> Path:
    """Gradio's upload folder (GRADIO_TEMP_DIR), resolved."""
    from gradio.utils import get_upload_folder

    return Path(os.path.realpath(get_upload_folder()))


def is_uploaded_here(path: str | os.PathLike[str] | None) -> bool:
    """True for a regular file inside the upload folder once every symlink is followed. Only names and
    links are looked at (never the content), and a missing file answers like a forbidden one."""
    if not path or "://" in str(path) or str(path).startswith("data:"):
        return False
    real = Path(os.path.realpath(os.path.abspath(os.fspath(path))))
    return real.is_relative_to(upload_folder()) and real.is_file()


def check_file_values(data: Any) -> None:
    """gr.Error for any file value in an event's input that is not an upload of this server."""
    from gradio_client.utils import is_file_obj, traverse

    def check(value: dict[str, Any]) -> dict[str, Any]:
        if not is_uploaded_here(value.get("path")):
            log.warning("refused a file value that was not uploaded here")
            raise gr.Error(NOT_UPLOADED, print_exception=False)  # one log line per refusal, not a traceback
        return value

    traverse(data, check, is_file_obj)


def guard_file_inputs() -> None:
    """Check every event input's files with `check_file_values` before Gradio moves them to its cache.

    Gradio runs its own check ("uploaded by a user") only for Blocks that were launched; mounted Blocks skip
    it, and its message shows the path. This wraps the one function every event input goes through
    (idempotent; `mark_launched` turns Gradio's own check back on as a second line)."""
    from gradio import processing_utils

    original = processing_utils.async_move_files_to_cache
    if getattr(original, "gelato_guarded", False):
        return

    async def guarded(data: Any, block: Any, postprocess: bool = False, check_in_upload_folder: bool = False,
                      keep_in_cache: bool = False) -> Any:
        if check_in_upload_folder and not postprocess:
            check_file_values(data.model_dump() if hasattr(data, "model_dump") else data)
        return await original(data, block, postprocess=postprocess, check_in_upload_folder=check_in_upload_folder,
                              keep_in_cache=keep_in_cache)

    guarded.gelato_guarded = True  # type: ignore[attr-defined]
    processing_utils.async_move_files_to_cache = guarded


def mark_launched(blocks: Any) -> None:
    """Mounted Blocks are never launched, which turns off Gradio's check that an input file was uploaded;
    a mounted app serving requests is launched in every sense that check means."""
    blocks.has_launched = True


def data_url_bytes(url: str) -> bytes:
    """The bytes of a base64 `data:` URL (a pasted image), refusing ones over MAX_DATA_URL_CHARS."""
    import base64
    import binascii

    if len(url) > MAX_DATA_URL_CHARS:
        raise UploadError(f"pasted image: {len(url)} characters is over the limit of {MAX_DATA_URL_CHARS}")
    header, _, body = url.partition(",")
    if not header.endswith(";base64"):
        raise UploadError("pasted image: only base64 data URLs are accepted")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as error:
        raise UploadError(f"pasted image: invalid base64 ({error})") from error


class SlotImage(gr.Image):
    """A `gr.Image` (same front end) whose uploads are read by `read_upload` instead of Gradio's own code."""

    is_template = True  # the browser renders it with the plain Image component

    def preprocess(self, payload: Any) -> np.ndarray | None:
        if payload is None:
            return None
        name = getattr(payload, "orig_name", None) or getattr(payload, "path", None)
        try:
            if getattr(payload, "url", None) and str(payload.url).startswith("data:"):
                return read_upload(data_url_bytes(str(payload.url)), name or "pasted image")
            if not getattr(payload, "path", None):
                return None
            return read_upload_file(payload.path, name)
        except UploadError as error:
            raise Refusal(str(error)) from error
