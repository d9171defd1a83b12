"""Security over raw HTTP, as an outside caller would probe a live server: a file value must name an upload of
this server (never any other path), curator files stay private, limits hold without a visitor id, headers.

The whole app (playground at /, curator pages at /curate) is served in-process on a free port with a real
SQLite bank; requests go through httpx, exactly as an attacker's script would send them.
"""
from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import pytest

from app.uploads import NOT_UPLOADED, upload_folder
from tests.reliability.figures import add
from tests.test_curator_access import login_cookie, serve_full_app, snapshot

EVENT_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield from serve_full_app(tmp_path_factory.mktemp("security"))


@pytest.fixture(scope="module")
def curator(served: dict[str, Any]) -> dict[str, str]:
    return {"gelato_curator": login_cookie(served["url"])}


# ---------------------------------------------------------------- driving the queue over raw HTTP


def run_event(http: httpx.Client, prefix: str, fn_index: int, data: list[Any]) -> dict[str, Any]:
    """Join the queue with `data` for event `fn_index` and read the stream until the event ends; its last message
    (or {"status": code, "text": ...} when the join itself is refused)."""
    session = uuid.uuid4().hex[:12]
    join = http.post(f"{prefix}/gradio_api/queue/join",
                     json={"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None})
    if join.status_code != 200:
        return {"status": join.status_code, "text": join.text}
    last: dict[str, Any] = {}
    with http.stream("GET", f"{prefix}/gradio_api/queue/data", params={"session_hash": session},
                     timeout=EVENT_TIMEOUT_S) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            last = json.loads(line[5:])
            if last.get("msg") in ("process_completed", "close_stream", "unexpected_error"):
                break
    return last


def wait_until(condition: Any, timeout_s: float = 10) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def file_value(path: str) -> dict[str, Any]:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "a.png"}


def value_for(block: Any, path: str) -> Any:
    """What the browser sends for a file-taking component, naming `path`."""
    if isinstance(block, gr.Gallery):
        return [{"image": file_value(path), "caption": None}]
    if isinstance(block, gr.File) and block.file_count != "single":
        return [file_value(path)]
    return file_value(path)


def takes_files(block: Any) -> bool:
    return isinstance(block, gr.Image | gr.File | gr.Gallery)


def neutral_value(block: Any) -> Any:
    value = getattr(block, "value", None)
    return value.model_dump() if hasattr(value, "model_dump") else value


def file_events(blocks: gr.Blocks) -> list[tuple[int, int]]:
    """(fn index, input position) of every event input that takes a file."""
    return [(index, position) for index, fn in enumerate(blocks.fns.values())
            for position, block in enumerate(fn.inputs) if takes_files(block)]


def event_data(blocks: gr.Blocks, fn_index: int, position: int, path: str) -> list[Any]:
    inputs = list(blocks.fns.values())[fn_index].inputs
    return [value_for(block, path) if i == position else neutral_value(block) for i, block in enumerate(inputs)]


# ---------------------------------------------------------------- defect 1: a file value names a server file


@pytest.fixture(scope="module")
def server_paths(served: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Paths a visitor must never get the server to open: real files, devices, a missing file, the bank, a
    symlink inside the upload folder leading out, relative escapes and URLs."""
    outside = tmp_path_factory.mktemp("outside") / "secret.png"
    from puzzles.images import png_bytes
    outside.write_bytes(png_bytes(__import__("numpy").zeros((8, 8, 3), dtype="uint8")))
    link_dir = upload_folder() / "planted"
    link_dir.mkdir(exist_ok=True)
    link = link_dir / "link.png"
    if not link.is_symlink():
        link.symlink_to(outside)
    sqlite_file = Path(served["bank"].url.split("///", 1)[1])
    return {
        "etc-passwd": "/etc/passwd", "etc-shadow": "/etc/shadow", "missing": "/nonexistent/nothing.png",
        "dev-zero": "/dev/zero", "proc-environ": "/proc/self/environ", "root-dir": "/root",
        "png-outside": str(outside), "symlink-out": str(link), "sqlite-bank": str(sqlite_file),
        "relative-escape": str(upload_folder() / ".." / sqlite_file.name), "relative": "gelato.db",
        "url": "http://127.0.0.1:9/a.png", "file-url": "file:///etc/passwd",
    }


def assert_refused(answer: dict[str, Any], path: str, where: str) -> None:
    output = answer.get("output") or {}
    error = output.get("error") if isinstance(output, dict) else None
    assert answer.get("msg") == "process_completed" and answer.get("success") is False, (where, answer)
    assert error == NOT_UPLOADED, (where, answer)
    text = json.dumps(answer)
    assert path not in text and "/etc" not in text and str(upload_folder()) not in text, (where, text)


def probe_every_file_input(http: httpx.Client, prefix: str, blocks: gr.Blocks, paths: dict[str, str]) -> int:
    events = file_events(blocks)
    assert events, f"no file-taking event found on {prefix or '/'}"
    tried = 0
    for fn_index, position in events:
        for label, path in paths.items():
            answer = run_event(http, prefix, fn_index, event_data(blocks, fn_index, position, path))
            assert_refused(answer, path, f"{prefix or '/'} fn {fn_index} input {position}: {label}")
            tried += 1
    add(server_paths_tried=tried, server_paths_refused=tried)
    return tried


def test_no_public_event_opens_a_server_path(served, server_paths):
    blocks = served["app"].state.gelato_blocks
    cache_before = sum(1 for _ in upload_folder().rglob("*"))
    with httpx.Client(base_url=served["url"], timeout=EVENT_TIMEOUT_S) as http:
        probe_every_file_input(http, "", blocks, server_paths)
        assert http.get("/healthz").status_code == 200  # /dev/zero pinned no worker
    assert sum(1 for _ in upload_folder().rglob("*")) == cache_before, "a refused file was copied into the cache"


def test_no_curator_event_opens_a_server_path(served, curator, server_paths):
    blocks = served["app"].state.gelato_curate_blocks
    before = snapshot(served["bank"])
    with httpx.Client(base_url=served["url"], cookies=curator, timeout=EVENT_TIMEOUT_S) as http:
        probe_every_file_input(http, "/curate", blocks, server_paths)
    assert snapshot(served["bank"]) == before


def test_a_file_uploaded_here_is_still_accepted(served):
    """The refusal is about where a file is, not about files: a real upload reaches the handler."""
    from puzzles.images import png_bytes

    blocks = served["app"].state.gelato_blocks
    names = [fn.api_name for fn in blocks.fns.values()]
    fn_index = names.index("model_sees")
    position = next(i for i, block in enumerate(blocks.fns[fn_index].inputs) if takes_files(block))
    image = __import__("numpy").full((16, 16, 3), 200, dtype="uint8")
    with httpx.Client(base_url=served["url"], timeout=EVENT_TIMEOUT_S) as http:
        uploaded = http.post("/gradio_api/upload", files={"files": ("b.png", png_bytes(image), "image/png")})
        assert uploaded.status_code == 200, uploaded.text
        answer = run_event(http, "", fn_index, event_data(blocks, fn_index, position, uploaded.json()[0]))
    assert (answer.get("output") or {}).get("error") != NOT_UPLOADED, answer


def test_the_refusal_reads_nothing_and_answers_alike_for_missing_files(tmp_path, monkeypatch):
    from app.uploads import UploadError, read_upload_file

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    (tmp_path / "uploads").mkdir()
    real = tmp_path / "real.png"
    real.write_bytes(b"\x89PNG not really")
    messages = set()
    for path in (real, tmp_path / "missing.png", "/dev/zero", "/etc/shadow"):
        with pytest.raises(UploadError) as caught:
            read_upload_file(path, "x.png")
        messages.add(str(caught.value))
    assert messages == {f"x.png: {NOT_UPLOADED}"}
    os.chmod(real, 0)  # even an unreadable file outside is judged by its name alone
    with pytest.raises(UploadError, match="not uploaded"):
        read_upload_file(real, "x.png")


# ---------------------------------------------------------------- defect 4: curator files stay private


def curator_request(cookie: dict[str, str]) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(cookies=cookie)


def download_target(markdown: str) -> str:
    import re

    from app.curate.downloads import DOWNLOAD_PATH

    match = re.search(rf"\(({DOWNLOAD_PATH}/[A-Za-z0-9_-]+)\)", markdown)
    assert match, markdown
    return match.group(1)


@pytest.mark.parametrize("event", ["backup", "export"])
def test_curator_files_are_served_once_and_only_to_a_curator(served, curator, event):
    from app.curate import downloads
    from puzzles.bank import backup as bank_backup

    blocks = served["app"].state.gelato_curate_blocks
    fn_index = [fn.api_name for fn in blocks.fns.values()].index(event)
    data = [neutral_value(block) for block in blocks.fns[fn_index].inputs]
    with httpx.Client(base_url=served["url"], cookies=curator, timeout=EVENT_TIMEOUT_S) as http:
        answer = run_event(http, "/curate", fn_index, data)
    assert answer.get("success") is True, answer
    link = download_target(answer["output"]["data"][0])
    made = downloads.files().find(link.rsplit("/", 1)[1])
    assert made is not None and not made.resolve().is_relative_to(upload_folder())
    assert str(made) not in json.dumps(answer), "the handler showed a server path"
    refused = 0
    with httpx.Client(base_url=served["url"], timeout=EVENT_TIMEOUT_S) as anonymous:
        attempts = [anonymous.get(link), anonymous.get(link, cookies={"gelato_curator": "forged.1.2.3"}),
                    anonymous.get(f"/gradio_api/file={made}"), anonymous.get(f"/curate/gradio_api/file={made}"),
                    anonymous.get(f"/gradio_api/file={made.parent}/../{made.parent.name}/{made.name}")]
        refused = sum(response.status_code in (401, 403, 404) for response in attempts)
        add(curator_fetches_tried=len(attempts), curator_fetches_refused=refused)
        assert refused == len(attempts), [r.status_code for r in attempts]
        assert made.exists(), "a refused fetch must not use up the download"
        with httpx.Client(base_url=served["url"], cookies=curator, timeout=EVENT_TIMEOUT_S) as http:
            fetched = http.get(link)
            assert fetched.status_code == 200 and fetched.headers["cache-control"] == "no-store"
            assert not made.exists() and not made.parent.exists(), "a fetched curator file must be deleted"
            wait_until(lambda: not any(downloads.files().root.glob(".sending-*")))
            assert http.get(link).status_code == 404
    copy = Path(str(made.parent) + "-check.zip")
    copy.write_bytes(fetched.content)
    if event == "backup":  # the whole bank, restorable: the archive the backup module writes
        restored = bank_backup.restore(f"sqlite:///{copy.parent / (copy.stem + '.db')}", copy)
        assert restored["puzzles"] == snapshot(served["bank"])["counts"]["puzzles"]
    else:
        import zipfile

        assert "pack.json" in zipfile.ZipFile(copy).namelist()
    copy.unlink()


def test_unfetched_curator_files_expire(tmp_path):
    from app.curate.downloads import KEEP_SECONDS, CuratorFiles

    files = CuratorFiles(tmp_path / "curator-files")
    token, path = files.new("gelato-backup.zip")
    path.write_bytes(b"PK")
    assert files.find(token) == path and files.find("../" + token) is None and files.find("x") is None
    files.sweep(now=path.parent.stat().st_mtime + KEEP_SECONDS + 1)
    assert files.find(token) is None and not path.parent.exists()


@pytest.mark.parametrize("make_bank", ["sqlite", "postgresql"], indirect=True)
def test_the_backup_button_backs_up_either_database(make_bank, tmp_path, monkeypatch):
    from app.curate import actions, auth, downloads
    from puzzles.bank import accounts, repository
    from puzzles.bank import backup as bank_backup
    from puzzles.generators import generate

    bank = make_bank(tmp_path)
    accounts.add_curator(bank, "ada", "correct horse battery")
    repository.add_puzzle(bank, generate("matrix", 4, size=32), status="published")
    secret = b"s" * 64
    monkeypatch.setattr(auth, "_context", auth.CurateContext(bank, secret))
    monkeypatch.setattr(downloads, "_files", downloads.CuratorFiles(tmp_path / "private"))
    cookie = auth.make_session("ada", repository.curator_fingerprint(bank, "ada"), secret)
    link, note = actions.backup(curator_request({auth.COOKIE: cookie}))
    archive = downloads.files().find(download_target(link).rsplit("/", 1)[1])
    assert archive is not None and archive.suffix == ".zip" and "1 puzzles" in note
    restored = bank_backup.restore(f"sqlite:///{tmp_path / 'restored.db'}", archive)
    assert restored == bank_backup.row_counts(bank)


# ---------------------------------------------------------------- curator image uploads: the visitor rules


@pytest.fixture
def no_candidates(served: dict[str, Any]) -> str:
    from puzzles.bank import repository
    from puzzles.generators import generate

    puzzle = generate("sequence", 40, size=32)
    puzzle.candidates, puzzle.answer_index = [], None
    puzzle.id = puzzle.content_id()
    return repository.add_puzzle(served["bank"], puzzle, status="draft")


def test_a_transparent_answer_is_stored_on_white(served, curator, no_candidates):
    import numpy as np

    from app.curate import actions
    from puzzles.bank import repository

    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red, fully transparent: white by the one rule, red if channels were sliced
    rgba[:8, :, 3] = 255  # the top half opaque red
    actions.save_answer(no_candidates, None, None, rgba, curator_request(curator))
    answer = repository.get_puzzle(served["bank"], no_candidates).puzzle.answer
    assert answer[12, 4].tolist() == [255, 255, 255] and answer[2, 4].tolist() == [255, 0, 0]


def test_curator_candidate_uploads_pass_the_upload_checks(served, curator, tmp_path):
    from app.curate import actions

    pending = served["ids"]["pending"]
    before = snapshot(served["bank"])
    outside = tmp_path / "c.png"
    outside.write_bytes(b"\x89PNG")
    inside = upload_folder() / "curator-test" / "bad.png"
    inside.parent.mkdir(exist_ok=True)
    inside.write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    with pytest.raises(gr.Error, match="not uploaded"):
        actions.save_answer(pending, 1, [str(outside)], None, curator_request(curator))
    with pytest.raises(gr.Error, match="bad.png: not a readable image"):
        actions.save_answer(pending, 1, [str(inside)], None, curator_request(curator))
    assert snapshot(served["bank"]) == before
