"""Puzzle packs: the interchange format between generators, importers, the bank and evaluation.

A pack is a directory or a `.zip` holding
- `pack.json`: {"format": "gelato-pack", "format_version": 1, "puzzles": [...]}, one object per puzzle with
  every field of `Puzzle`; images appear as the sha256 of their PNG bytes;
- `images/<sha256>.png`: each distinct image once, PNG-encoded by `puzzles.images.png_bytes`.

Reading checks everything before it trusts anything: member names, sizes and counts of a zip (zip bombs),
JSON types, hashes, PNG signatures and pixel counts (decompression bombs). `validate_pack` lists the
problems; `read_pack` raises `PackError` naming the first one. Zips are written deterministically: the same
puzzles give the same bytes.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from puzzles.images import png_bytes, to_rgb_array
from puzzles.puzzle import FAMILIES, Puzzle

FORMAT = "gelato-pack"
FORMAT_VERSION = 1
PACK_JSON = "pack.json"
IMAGES_DIR = "images"

MAX_MEMBERS = 200_000  # files in one zip
MAX_TOTAL_BYTES = 2 * 1024**3  # uncompressed size of a whole zip
MAX_MEMBER_BYTES = 256 * 1024**2  # uncompressed size of one member (pack.json included)
MAX_RATIO = 200  # uncompressed / compressed, for members big enough to matter
RATIO_CHECK_BYTES = 1024**2  # members smaller than this are not ratio-checked
MAX_IMAGE_PIXELS = 4096 * 4096  # larger PNGs are refused before decoding
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HASH = re.compile(r"^[0-9a-f]{64}$")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed timestamp: deterministic zips


class PackError(ValueError):
    """A pack that cannot be read; the message names the first problem, `problems` lists all found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems[0])
        self.problems = problems


# ---------------------------------------------------------------------------------------------------------
# Puzzle <-> JSON


def _plain(value: Any, where: str) -> Any:
    """JSON-ready copy of a metadata value (numpy scalars and arrays become numbers and lists)."""
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"{where}: keys must be strings, got {key!r}")
        return {key: _plain(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item, where) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(f"{where}: {type(value).__name__} cannot be stored in a pack")


def puzzle_to_json(puzzle: Puzzle, hashes: dict[int, str]) -> dict[str, Any]:
    """The pack.json entry of a puzzle; `hashes` maps id(image) -> sha256 (filled by `_collect_images`)."""
    where = f"puzzle {puzzle.id}"
    return {
        "id": puzzle.id,
        "family": puzzle.family,
        "title": puzzle.title,
        "panels": [hashes[id(image)] for image in puzzle.panels],
        "answer": hashes[id(puzzle.answer)] if puzzle.answer is not None else None,
        "candidates": [hashes[id(image)] for image in puzzle.candidates],
        "answer_index": None if puzzle.answer_index is None else int(puzzle.answer_index),
        "layout": _plain(puzzle.layout, f"{where} layout"),
        "tags": _plain(puzzle.tags, f"{where} tags"),
        "difficulty": int(puzzle.difficulty),
        "source": _plain(puzzle.source, f"{where} source"),
        "license": puzzle.license,
        "meta": _plain(puzzle.meta, f"{where} meta"),
    }


def puzzle_from_json(entry: dict[str, Any], images: dict[str, np.ndarray]) -> Puzzle:
    """A Puzzle from a checked pack.json entry and the decoded images by hash (each use gets its own copy)."""
    return Puzzle(
        id=entry["id"],
        family=entry["family"],
        title=entry["title"],
        panels=[images[h].copy() for h in entry["panels"]],
        answer=images[entry["answer"]].copy() if entry["answer"] is not None else None,
        candidates=[images[h].copy() for h in entry["candidates"]],
        answer_index=entry["answer_index"],
        layout=entry["layout"],
        tags=entry["tags"],
        difficulty=entry["difficulty"],
        source=entry["source"],
        license=entry["license"],
        meta=entry["meta"],
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and bool(_HASH.match(value))


# Field name -> (check, description) for pack.json entries.
_FIELDS: dict[str, tuple[Any, str]] = {
    "id": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "family": (lambda v: isinstance(v, str), "a string"),
    "title": (lambda v: isinstance(v, str), "a string"),
    "panels": (lambda v: isinstance(v, list) and v != [] and all(map(_is_hash, v)), "a non-empty list of sha256 hex"),
    "answer": (lambda v: v is None or _is_hash(v), "null or a sha256 hex string"),
    "candidates": (lambda v: isinstance(v, list) and all(map(_is_hash, v)), "a list of sha256 hex strings"),
    "answer_index": (lambda v: v is None or _is_int(v), "null or an integer"),
    "layout": (lambda v: isinstance(v, dict), "an object"),
    "tags": (lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v), "a list of strings"),
    "difficulty": (lambda v: _is_int(v) and 1 <= v <= 5, "an integer from 1 to 5"),
    "source": (lambda v: isinstance(v, dict), "an object"),
    "license": (lambda v: isinstance(v, str), "a string"),
    "meta": (lambda v: isinstance(v, dict), "an object"),
}


def _entry_problems(entry: Any, index: int) -> list[str]:
    if not isinstance(entry, dict):
        return [f"puzzles[{index}] must be an object, got {type(entry).__name__}"]
    name = f"puzzles[{index}]" + (f" (id {entry['id']!r})" if isinstance(entry.get("id"), str) else "")
    problems = [f"{name}: unexpected field {key!r}" for key in entry if key not in _FIELDS]
    for key, (check, description) in _FIELDS.items():
        if key not in entry:
            problems.append(f"{name}: missing field {key!r}")
        elif not check(entry[key]):
            problems.append(f"{name}: field {key!r} must be {description}, got {entry[key]!r:.80}")
    if problems:
        return problems
    if entry["family"] not in FAMILIES:
        problems.append(f"{name}: unknown family {entry['family']!r}; expected one of {', '.join(FAMILIES)}")
    candidates, answer_index = entry["candidates"], entry["answer_index"]
    if answer_index is not None and not 0 <= answer_index < len(candidates):
        problems.append(f"{name}: answer_index {answer_index} is out of range for {len(candidates)} candidates")
    if candidates and answer_index is None:
        problems.append(f"{name}: has candidates but no answer_index")
    return problems


# ---------------------------------------------------------------------------------------------------------
# Writing


def _collect_images(puzzles: list[Puzzle]) -> tuple[dict[int, str], dict[str, bytes]]:
    """PNG bytes of every distinct image by hash, and id(array) -> hash for the JSON entries."""
    hashes: dict[int, str] = {}
    files: dict[str, bytes] = {}
    for puzzle in puzzles:
        images = [*puzzle.panels, *([puzzle.answer] if puzzle.answer is not None else []), *puzzle.candidates]
        for image in images:
            if id(image) in hashes:
                continue
            data = png_bytes(image)
            digest = hashlib.sha256(data).hexdigest()
            hashes[id(image)] = digest
            files.setdefault(digest, data)
    return hashes, files


def pack_json_bytes(entries: list[dict[str, Any]]) -> bytes:
    """pack.json text: one puzzle per line, so packs diff well and stay compact."""
    lines = [json.dumps(entry, ensure_ascii=False, separators=(",", ":")) for entry in entries]
    head = f'{{"format":"{FORMAT}","format_version":{FORMAT_VERSION},"puzzles":[\n'
    return (head + ",\n".join(lines) + "\n]}\n").encode("utf-8")


def write_pack(puzzles: Iterable[Puzzle], path: str | os.PathLike[str]) -> Path:
    """Write puzzles as a pack: a `.zip` when the path ends in .zip, otherwise a directory."""
    puzzles = list(puzzles)
    duplicates = sorted(i for i, count in Counter(p.id for p in puzzles).items() if count > 1)
    if duplicates:
        raise PackError([f"duplicate puzzle ids: {', '.join(duplicates[:5])}"])
    hashes, files = _collect_images(puzzles)
    try:
        manifest = pack_json_bytes([puzzle_to_json(p, hashes) for p in puzzles])
    except TypeError as error:
        raise PackError([str(error)]) from error
    path = Path(path)
    if path.suffix.lower() == ".zip":
        _write_zip(path, manifest, files)
    else:
        _write_directory(path, manifest, files)
    return path


@contextmanager
def replacing(path: Path, mode: int | None = None) -> Iterator[Path]:
    """A temporary file beside `path` that becomes `path` when the block ends without an error, so a reader
    never meets a half-written file; `mode` sets its permissions (mkstemp creates 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=f"{path.suffix}.tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_zip(path: Path, manifest: bytes, files: dict[str, bytes]) -> None:
    with replacing(path, mode=0o644) as temporary, zipfile.ZipFile(temporary, "w") as archive:  # a shareable file
        _add_member(archive, PACK_JSON, manifest, zipfile.ZIP_DEFLATED)
        for digest in sorted(files):
            # PNGs are already compressed: storing them is as small and much faster.
            _add_member(archive, f"{IMAGES_DIR}/{digest}.png", files[digest], zipfile.ZIP_STORED)


def _add_member(archive: zipfile.ZipFile, name: str, data: bytes, compression: int) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    info.create_system = 3  # unix, whatever the writing platform
    archive.writestr(info, data, compresslevel=9 if compression == zipfile.ZIP_DEFLATED else None)


def _write_directory(path: Path, manifest: bytes, files: dict[str, bytes]) -> None:
    (path / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    for digest, data in files.items():
        target = path / IMAGES_DIR / f"{digest}.png"
        if not target.exists():
            target.write_bytes(data)
    (path / PACK_JSON).write_bytes(manifest)


# ---------------------------------------------------------------------------------------------------------
# Reading


class _Source:
    """Uniform byte access to a directory pack or a zip pack (with the zip's safety checks done up front)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.archive: zipfile.ZipFile | None = None
        self.names: set[str] = set()

    def open(self) -> list[str]:
        """Open the pack; returns problems that make it unreadable (empty when it can be read)."""
        if not self.path.exists():
            return [f"{self.path}: no such file or directory"]
        if self.path.is_dir():
            return [] if (self.path / PACK_JSON).is_file() else [f"{self.path}: no {PACK_JSON} in the directory"]
        if not zipfile.is_zipfile(self.path):
            return [f"{self.path}: not a directory or a zip file"]
        try:
            self.archive = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as error:
            return [f"{self.path}: unreadable zip ({error})"]
        problems = _zip_problems(self.archive.infolist())
        self.names = {info.filename for info in self.archive.infolist()}
        if not problems and PACK_JSON not in self.names:
            problems.append(f"{self.path}: no {PACK_JSON} in the zip")
        return problems

    def has(self, name: str) -> bool:
        if self.archive is not None:
            return name in self.names
        return (self.path / name).is_file()

    def read(self, name: str) -> bytes:
        if self.archive is not None:
            return self.archive.read(name)
        file = self.path / name
        if file.stat().st_size > MAX_MEMBER_BYTES:
            raise PackError([f"{name}: larger than {MAX_MEMBER_BYTES} bytes"])
        return file.read_bytes()

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


def _member_name_problem(name: str) -> str | None:
    posix = PurePosixPath(name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return f"zip member {name!r} has an absolute path"
    if "\\" in name or ".." in posix.parts:
        return f"zip member {name!r} escapes the pack (.. or backslash in its path)"
    return None


def _zip_problems(infos: list[zipfile.ZipInfo]) -> list[str]:
    """Checks on the zip directory alone, before any member is decompressed."""
    if len(infos) > MAX_MEMBERS:
        return [f"zip has {len(infos)} members; at most {MAX_MEMBERS} are allowed"]
    names = Counter(info.filename for info in infos)
    repeated = [name for name, count in names.items() if count > 1]
    if repeated:
        return [f"zip member {repeated[0]!r} appears more than once"]
    total = 0
    for info in infos:
        problem = _member_name_problem(info.filename)
        if problem:
            return [problem]
        if info.file_size > MAX_MEMBER_BYTES:
            return [f"zip member {info.filename!r} unpacks to {info.file_size} bytes; at most {MAX_MEMBER_BYTES}"]
        if info.file_size > RATIO_CHECK_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            return [f"zip member {info.filename!r} has a compression ratio above {MAX_RATIO} (zip bomb?)"]
        total += info.file_size
    if total > MAX_TOTAL_BYTES:
        return [f"zip unpacks to {total} bytes; at most {MAX_TOTAL_BYTES} allowed"]
    return []


def _decode_png(data: bytes, name: str) -> np.ndarray:
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"{name}: not a PNG file")
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:  # checked from the header, before decoding
                raise ValueError(f"{name}: {width}x{height} pixels is over the limit of {MAX_IMAGE_PIXELS}")
            image.load()
            return to_rgb_array(image)
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"{name}: unreadable PNG ({error})") from error


def _read_manifest(source: _Source) -> tuple[list[Any], list[str]]:
    try:
        document = json.loads(source.read(PACK_JSON).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return [], [f"{PACK_JSON}: not valid JSON ({error})"]
    if not isinstance(document, dict):
        return [], [f"{PACK_JSON}: top level must be an object"]
    if document.get("format") != FORMAT:
        return [], [f"{PACK_JSON}: 'format' must be {FORMAT!r}, got {document.get('format')!r}"]
    version = document.get("format_version")
    if not _is_int(version) or version > FORMAT_VERSION or version < 1:
        return [], [f"{PACK_JSON}: unsupported format_version {version!r} (this reader knows 1..{FORMAT_VERSION})"]
    if not isinstance(document.get("puzzles"), list):
        return [], [f"{PACK_JSON}: 'puzzles' must be a list"]
    return document["puzzles"], []


def _load(path: str | os.PathLike[str]) -> tuple[list[Any], dict[str, np.ndarray], list[str]]:
    """Entries, decoded images and every problem found (entries are only trustworthy without problems)."""
    source = _Source(Path(path))
    problems = source.open()
    if problems:
        source.close()
        return [], {}, problems
    try:
        entries, problems = _read_manifest(source)
        if problems:
            return [], {}, problems
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            problems += _entry_problems(entry, index)
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                if entry["id"] in seen:
                    problems.append(f"puzzles[{index}]: duplicate id {entry['id']!r}")
                seen.add(entry["id"])
        images = _load_images(source, entries, problems)
        return entries, images, problems
    finally:
        source.close()


def _referenced(entries: list[Any]) -> list[str]:
    hashes: dict[str, None] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        for key in ("panels", "candidates"):
            if isinstance(entry.get(key), list):
                hashes.update((h, None) for h in entry[key] if _is_hash(h))
        if _is_hash(entry.get("answer")):
            hashes[entry["answer"]] = None
    return list(hashes)


def _load_images(source: _Source, entries: list[Any], problems: list[str]) -> dict[str, np.ndarray]:
    images: dict[str, np.ndarray] = {}
    for digest in _referenced(entries):
        name = f"{IMAGES_DIR}/{digest}.png"
        if not source.has(name):
            problems.append(f"{name}: missing image")
            continue
        try:
            data = source.read(name)
        except PackError as error:
            problems.append(str(error))
            continue
        if hashlib.sha256(data).hexdigest() != digest:
            problems.append(f"{name}: sha256 of the file does not match its name")
            continue
        try:
            images[digest] = _decode_png(data, name)
        except ValueError as error:
            problems.append(str(error))
    return images


def validate_pack(path: str | os.PathLike[str]) -> list[str]:
    """Every problem found in a pack, in the order found (empty when the pack is valid)."""
    return _load(path)[2]


def read_pack(path: str | os.PathLike[str]) -> list[Puzzle]:
    """The puzzles of a pack, in pack order; raises PackError naming the first problem."""
    entries, images, problems = _load(path)
    if problems:
        raise PackError(problems)
    return [puzzle_from_json(entry, images) for entry in entries]
