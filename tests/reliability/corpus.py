"""The bad-input corpus, generated at test time (no binaries in the repository).

`manifest.json` beside this file lists every case: its name, the path it goes through (`upload`: a visitor's
image in a prompt slot; `pack`, `raven`, `arc`: the importers), the file name it arrives under, and the
expected outcome: `normalised` (accepted and turned into a plain RGB image) or `refused` with a message that
contains `message`. `build(case)` makes the case's bytes.
"""
from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

MANIFEST = Path(__file__).with_name("manifest.json")


def load_manifest() -> list[dict[str, Any]]:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))["cases"]


# --------------------------------------------------------------------------------------------- image files


def _save(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _rgb(width: int = 24, height: int = 16, colour: tuple[int, int, int] = (200, 40, 40)) -> Image.Image:
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:] = colour
    array[: height // 2, : width // 2] = (20, 120, 220)  # a marked corner shows rotations
    return Image.fromarray(array, "RGB")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@cache
def bomb_png(side: int = 30000) -> bytes:
    """A valid 1-bit side x side PNG of zeros: about 100 KB on disk, side*side pixels once decoded."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(side)]
    idat = b"".join(parts) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return _save(_rgb(24, 16), "JPEG", exif=exif.tobytes(), quality=95)


def _palette_transparent() -> bytes:
    image = Image.new("P", (16, 16), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 8, 16))
    return _save(image, "PNG", transparency=0)  # index 0 (right half) is transparent


def _gray16() -> bytes:
    array = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    return _save(Image.fromarray(array), "PNG")  # uint16 -> mode I;16


def _bad_crc_png() -> bytes:
    data = bytearray(_save(_rgb(), "PNG"))
    data[29] ^= 0xFF  # the IHDR CRC's last byte
    return bytes(data)


def _huge_icc() -> bytes:
    profile = b"\x00" * 128 + np.random.default_rng(0).bytes(2 * 1024**2)  # 2 MB of junk called a profile
    return _save(_rgb(), "PNG", icc_profile=profile)


UPLOAD_BUILDERS: dict[str, Callable[[], bytes]] = {
    "zero_byte": lambda: b"",
    "text_as_png": lambda: b"just some words, not a picture\n" * 10,
    "html_as_png": lambda: b"<!doctype html><html><body><script>alert(1)</script></body></html>",
    "svg_as_png": lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10"/></svg>',
    "pdf_as_png": lambda: b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
    "truncated_png": lambda: _save(_rgb(64, 64), "PNG")[:120],
    "truncated_jpeg": lambda: _save(_rgb(64, 64), "JPEG")[:300],
    "truncated_gif": lambda: _animated("GIF")[:60],
    "bad_crc_png": _bad_crc_png,
    "tiff_image": lambda: _save(_rgb(), "TIFF"),
    "decompression_bomb_png": lambda: bomb_png(30000),
    "just_over_pixel_limit_png": lambda: _save(Image.new("1", (4097, 4097)), "PNG"),
    "one_pixel_png": lambda: _save(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"),
    "wide_10000x10_png": lambda: _save(Image.new("RGB", (10000, 10), (0, 128, 0)), "PNG"),
    "tall_10x10000_png": lambda: _save(Image.new("RGB", (10, 10000), (0, 0, 128)), "PNG"),
    "animated_gif": lambda: _animated("GIF"),
    "animated_png": lambda: _animated("PNG"),
    "grey16_png": _gray16,
    "cmyk_jpeg": lambda: _save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"),
    "palette_transparent_png": _palette_transparent,
    "rgba_png": lambda: _save(Image.new("RGBA", (16, 16), (255, 0, 0, 0)), "PNG"),
    "la_png": lambda: _save(Image.new("LA", (16, 16), (0, 0)), "PNG"),
    "one_bit_png": lambda: _save(Image.new("1", (16, 16), 1), "PNG"),
    "exif_rotated_jpeg": _exif_rotated,
    "huge_icc_png": _huge_icc,
    "webp_image": lambda: _save(_rgb(), "WEBP", lossless=True),
    "bmp_image": lambda: _save(_rgb(), "BMP"),
    "traversal_name_png": lambda: _save(_rgb(), "PNG"),
    "control_chars_name_broken": lambda: b"\x00\x01 not an image",
}


# --------------------------------------------------------------------------------------------- puzzle packs


def _valid_pack_parts(count: int = 1) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """pack.json entries and image files of `count` small valid analogy puzzles."""
    from puzzles.generators import generate
    from puzzles.pack import _collect_images, puzzle_to_json

    puzzles = [generate("analogy", 900 + index, size=16) for index in range(count)]
    hashes, files = _collect_images(puzzles)
    return [puzzle_to_json(p, hashes) for p in puzzles], files


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _pack_zip(entries: list[Any], files: dict[str, bytes], extra: dict[str, bytes] | None = None,
              document: Any = None) -> bytes:
    body = document if document is not None else {"format": "gelato-pack", "format_version": 1, "puzzles": entries}
    members = {"pack.json": json.dumps(body).encode() if not isinstance(body, bytes) else body}
    members.update({f"images/{digest}.png": data for digest, data in files.items()})
    members.update(extra or {})
    return _zip(members)


def _pack_with(change: Callable[[list[dict[str, Any]], dict[str, bytes]], None], count: int = 1) -> bytes:
    entries, files = _valid_pack_parts(count)
    change(entries, files)
    return _pack_zip(entries, files)


def _set(field: str, value: Any) -> Callable[[list[dict[str, Any]], dict[str, bytes]], None]:
    return lambda entries, files: entries[0].__setitem__(field, value)


def _duplicate_ids(entries: list[dict[str, Any]], files: dict[str, bytes]) -> None:
    entries[1]["id"] = entries[0]["id"]


def _drop_image(entries: list[dict[str, Any]], files: dict[str, bytes]) -> None:
    files.pop(entries[0]["panels"][0])


def _swap_image(entries: list[dict[str, Any]], files: dict[str, bytes]) -> None:
    files[entries[0]["panels"][0]] = _save(_rgb(), "PNG")  # right name, other content


def _hashed_member(data: bytes) -> Callable[[list[dict[str, Any]], dict[str, bytes]], None]:
    """A member named by its own hash (so the hash check passes) and used as the first panel."""
    def change(entries: list[dict[str, Any]], files: dict[str, bytes]) -> None:
        digest = hashlib.sha256(data).hexdigest()
        files[digest] = data
        entries[0]["panels"][0] = digest
    return change


def _zip_bomb() -> bytes:
    return _zip({"pack.json": b"\x00" * (64 * 1024**2)}, zipfile.ZIP_DEFLATED)  # 64 MB of zeros, ~64 KB packed


PACK_BUILDERS: dict[str, Callable[[], bytes]] = {
    "pack_valid": lambda: _pack_with(lambda entries, files: None, count=2),
    "pack_dotdot_member": lambda: _pack_zip(*_valid_pack_parts(), extra={"../evil.txt": b"escaped"}),
    "pack_absolute_member": lambda: _pack_zip(*_valid_pack_parts(), extra={"/etc/evil.txt": b"escaped"}),
    "pack_backslash_member": lambda: _pack_zip(*_valid_pack_parts(), extra={"..\\evil.txt": b"escaped"}),
    "pack_zip_bomb": _zip_bomb,
    "pack_zero_byte": lambda: b"",
    "pack_truncated_zip": lambda: _pack_with(lambda entries, files: None)[:200],
    "pack_not_json": lambda: _pack_zip([], {}, document=b"{not json"),
    "pack_wrong_format": lambda: _pack_zip([], {}, document={"format": "other", "format_version": 1, "puzzles": []}),
    "pack_duplicate_ids": lambda: _pack_with(_duplicate_ids, count=2),
    "pack_difficulty_is_text": lambda: _pack_with(_set("difficulty", "hard")),
    "pack_panels_not_list": lambda: _pack_with(_set("panels", "abc")),
    "pack_tags_not_strings": lambda: _pack_with(_set("tags", [1, 2])),
    "pack_answer_index_out_of_range": lambda: _pack_with(_set("answer_index", 99)),
    "pack_missing_image": lambda: _pack_with(_drop_image),
    "pack_image_hash_mismatch": lambda: _pack_with(_swap_image),
    "pack_html_image": lambda: _pack_with(_hashed_member(b"<html>not a png</html>")),
    "pack_bomb_image": lambda: _pack_with(_hashed_member(bomb_png(30000))),
}


# --------------------------------------------------------------------------------------------- RAVEN .npz


def _npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


RAVEN_BUILDERS: dict[str, Callable[[], bytes]] = {
    "raven_valid": lambda: _npz(image=np.zeros((16, 8, 8), np.uint8), target=np.int64(3)),
    "raven_wrong_shape": lambda: _npz(image=np.zeros((15, 8, 8), np.uint8), target=np.int64(3)),
    "raven_object_array": lambda: _npz(image=np.array([{"x": 1}] * 16, dtype=object), target=np.int64(0)),
    "raven_float_image": lambda: _npz(image=np.zeros((16, 8, 8), np.float32), target=np.int64(0)),
    "raven_target_out_of_range": lambda: _npz(image=np.zeros((16, 8, 8), np.uint8), target=np.int64(8)),
    "raven_missing_target": lambda: _npz(image=np.zeros((16, 8, 8), np.uint8)),
    "raven_not_npz": lambda: b"PK\x03\x04 this is not really a zip",
}


# --------------------------------------------------------------------------------------------- ARC JSON


def _arc(train: Any = None, test: Any = None) -> bytes:
    pair = {"input": [[0, 1], [1, 0]], "output": [[1, 0], [0, 1]]}
    task = {"train": [pair] if train is None else train, "test": [pair] if test is None else test}
    return json.dumps(task).encode()


ARC_BUILDERS: dict[str, Callable[[], bytes]] = {
    "arc_valid": lambda: _arc(),
    "arc_colour_10": lambda: _arc(train=[{"input": [[0, 10]], "output": [[1, 1]]}]),
    "arc_colour_negative": lambda: _arc(test=[{"input": [[-1, 0]], "output": [[1, 1]]}]),
    "arc_ragged_grid": lambda: _arc(train=[{"input": [[0, 1], [1]], "output": [[1]]}]),
    "arc_grid_is_text": lambda: _arc(train=[{"input": "0110", "output": [[1]]}]),
    "arc_no_train": lambda: json.dumps({"test": [{"input": [[0]]}]}).encode(),
    "arc_not_json": lambda: b"{\"train\": [",
    "arc_float_colour": lambda: _arc(train=[{"input": [[0.5]], "output": [[1]]}]),
}

BUILDERS: dict[str, Callable[[], bytes]] = {**UPLOAD_BUILDERS, **PACK_BUILDERS, **RAVEN_BUILDERS, **ARC_BUILDERS}


def build(case: dict[str, Any]) -> bytes:
    return BUILDERS[case["name"]]()
