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
    """Limits per client out of the way: these tests send hundreds of calls from one address."""
    from tests.conftest import MANY_CLIENTS_LIMITS

    yield from serve_full_app(tmp_path_factory.mktemp("security"), **MANY_CLIENTS_LIMITS)


@pytest.fixture(scope="module")
def curator(served: dict[str, Any]) -> dict[str, str]:
    return {"gelato_curator": login_cookie(served["url"])}


# ---------------------------------------------------------------- driving the queue over raw HTTP


def run_event(http: httpx.Client, prefix: str, fn_index: int, data: list[Any]) -> dict[str, Any]:
    """Join the queue with `data` for event `fn_index` and read the stream until the event ends; its last message
    (or {"status": code, "text": ...} when the join itself is refused)."""
    session = uuid.uuid4().hex[:12]
    body = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None}
    join = http.post(f"{prefix}/gradio_api/queue/join", headers={"content-type": "application/json"},
                     content=json.dumps(body))  # NaN and Infinity as a script's JSON may carry them
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
    """A value the browser would send for a component it does not change (a valid visitor id where one is kept)."""
    if isinstance(block, gr.BrowserState):
        from app.visitors import new_visitor_id

        return new_visitor_id()
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


def test_no_public_event_opens_a_server_path(served, server_paths, capfd):
    blocks = served["app"].state.gelato_blocks
    cache_before = sum(1 for _ in upload_folder().rglob("*"))
    capfd.readouterr()
    with httpx.Client(base_url=served["url"], timeout=EVENT_TIMEOUT_S) as http:
        probe_every_file_input(http, "", blocks, server_paths)
        assert http.get("/healthz").status_code == 200  # /dev/zero pinned no worker
    assert sum(1 for _ in upload_folder().rglob("*")) == cache_before, "a refused file was copied into the cache"
    assert "Traceback" not in capfd.readouterr().err, "each refusal should log one line, not a traceback"


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


@pytest.mark.parametrize("event", ["solve", "answer"])
def test_sampling_values_no_widget_sends_get_a_clear_refusal(served, event):
    """The guidance weight as an attacker's script sends it: each bad value refused, by name, without a trace."""
    blocks = served["app"].state.gelato_blocks
    fn_index = [fn.api_name for fn in blocks.fns.values()].index(event)
    inputs = list(blocks.fns.values())[fn_index].inputs
    labels = [getattr(block, "label", "") or "" for block in inputs]
    guidance = next(i for i, label in enumerate(labels) if label.lower().startswith("guidance"))
    with httpx.Client(base_url=served["url"], timeout=EVENT_TIMEOUT_S) as http:
        for value in (1e9, -1, "nan", "inf", "strong", [2], {"weight": 2}):
            data = [value if i == guidance else neutral_value(block) for i, block in enumerate(inputs)]
            answer = run_event(http, "", fn_index, data)
            text = json.dumps(answer)
            by_handler = answer.get("success") is False and "guidance must be" in text
            by_gate = answer.get("status") == 422 and "(guidance" in text.lower()  # a kind no guidance box sends
            assert by_handler or by_gate, (event, value, text)
            assert "Traceback" not in text, text
        assert http.get("/healthz").status_code == 200


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
    cookie = auth.make_session("ada", accounts.curator_fingerprint(bank, "ada"), secret)
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


def test_curator_file_errors_name_no_server_path(served, curator, tmp_path):
    from app.curate import actions

    folder = tmp_path / "a-folder.json"
    folder.mkdir()
    with pytest.raises(gr.Error) as caught:
        actions.import_check("arc-json", [str(folder)], "arcagi1-train", "", 32, "", "draft", curator_request(curator))
    assert "could not be read" in caught.value.message and str(tmp_path) not in caught.value.message


# ---------------------------------------------------------------- defect 6: unknown events, unpublished puzzles


class Records:
    """Log records of the server (root and uvicorn's own loggers, which do not reach the root)."""

    def __init__(self) -> None:
        import logging

        self.records: list[Any] = []
        self.handler = logging.Handler()
        self.handler.emit = self.records.append  # type: ignore[method-assign]
        self.loggers = [logging.getLogger(), logging.getLogger("uvicorn.error"), logging.getLogger("uvicorn")]

    def __enter__(self) -> Records:
        for logger in self.loggers:
            logger.addHandler(self.handler)
        return self

    def __exit__(self, *_: Any) -> None:
        for logger in self.loggers:
            logger.removeHandler(self.handler)

    def tracebacks(self) -> list[str]:
        return [record.getMessage() for record in self.records if record.exc_info or record.levelname == "ERROR"]


def test_unknown_events_get_a_plain_404_without_a_traceback(served):
    bodies = [{"fn_index": 999}, {"fn_index": -1}, {"fn_index": "1"}, {"fn_index": True}, {"fn_index": 2**70}]
    names = ["nope", "does_not_exist", "..%2f..%2fetc"]
    with Records() as logged, httpx.Client(base_url=served["url"], timeout=30) as http:
        answers = [http.post("/gradio_api/queue/join", json={"data": [], "session_hash": "s" * 10, **body})
                   for body in bodies]
        for name in names:
            for route in ("run", "api", "call", "call/v2"):
                answers.append(http.post(f"/gradio_api/{route}/{name}", json={"data": []}))
    assert [a.status_code for a in answers if a.status_code != 404] == [], [a.text for a in answers]
    assert all(a.json() == {"detail": "unknown event"} for a in answers)
    assert logged.tracebacks() == []


def test_unpublished_puzzles_reveal_nothing_and_record_no_attempt(served):
    from puzzles.bank import repository

    blocks = served["app"].state.gelato_blocks
    names = [fn.api_name for fn in blocks.fns.values()]
    hidden = [served["ids"]["draft"], served["ids"]["pending"]]
    with httpx.Client(base_url=served["url"], timeout=EVENT_TIMEOUT_S) as http:
        for puzzle_id in hidden:
            # /attempt takes the id as text; open_try and open_in_play take it from server-side state
            index = names.index("attempt")
            values = {1: puzzle_id, 2: "#1", 3: None}
            data = [values.get(i, neutral_value(b)) for i, b in enumerate(blocks.fns[index].inputs)]
            answer = run_event(http, "", index, data)
            assert answer["success"] is False, answer
            assert answer["output"]["error"] == f"no puzzle {puzzle_id!r} in the bank", answer
            assert repository.puzzle_stats(served["bank"], puzzle_id)["attempts"] == 0
            # the page's own load event, as a deep link ?puzzle=<id> makes the browser call it
            session = uuid.uuid4().hex[:12]
            load = names.index("on_load")
            http.post("/gradio_api/queue/join", params={"puzzle": puzzle_id},
                      json={"data": [None], "fn_index": load, "session_hash": session, "event_data": None})
            with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
                text = "".join(line for line in stream.iter_lines() if "process_completed" in line)
            assert json.loads(text[5:])["success"] is True and puzzle_id not in text  # the page loads, the puzzle not


def test_an_unpublished_grid_puzzle_is_never_checked_nor_shown(served):
    from puzzles.bank import repository
    from puzzles.generators import generate

    draft = repository.add_puzzle(served["bank"], generate("grid", 3, size=32), status="draft")
    blocks = served["app"].state.gelato_blocks
    index = [fn.api_name for fn in blocks.fns.values()].index("grid_check")
    inputs = blocks.fns[index].inputs
    puzzle_box = next(i for i, b in enumerate(inputs) if isinstance(b, gr.Textbox))
    grid = next(i for i, b in enumerate(inputs) if isinstance(b, gr.HTML))
    with httpx.Client(base_url=served["url"], timeout=EVENT_TIMEOUT_S) as http:
        for _ in range(4):
            values = {puzzle_box: draft, grid: "[[0]]"}
            answer = run_event(http, "", index, [values.get(i, neutral_value(b)) for i, b in enumerate(inputs)])
            assert answer["output"]["error"] == f"no puzzle {draft!r} in the bank", answer
    assert repository.puzzle_stats(served["bank"], draft)["attempts"] == 0


# ---------------------------------------------------------------- defect 7: headers, CORS, forwarded host


def test_every_answer_carries_the_security_headers(served):
    with httpx.Client(base_url=served["url"], timeout=30) as http:
        for path in ("/", "/gradio_api/info", "/curate-login", "/curate/", "/healthz", "/nope"):
            headers = http.get(path).headers
            assert headers["x-content-type-options"] == "nosniff", path
            assert headers["x-frame-options"] == "SAMEORIGIN", path
            assert "frame-ancestors" in headers["content-security-policy"], path
            assert "object-src 'none'" in headers["content-security-policy"], path


def test_no_origin_gets_credentialed_cors(served):
    with httpx.Client(base_url=served["url"], timeout=30) as http:
        for origin in ("http://localhost:1234", "http://127.0.0.1:9999", "null", "https://evil.example"):
            simple = http.get("/gradio_api/info", headers={"Origin": origin})
            preflight = http.options("/gradio_api/queue/join", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST"})
            for answer in (simple, preflight):
                assert "access-control-allow-origin" not in answer.headers, (origin, answer.headers)
                assert "access-control-allow-credentials" not in answer.headers, origin


def test_links_and_redirects_ignore_a_forwarded_host(served):
    forged = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=served["url"], timeout=30, follow_redirects=False) as http:
        answers = [http.get("/config", headers=forged), http.get("/logout", headers=forged),
                   http.get("/curate-logout", headers=forged), http.post("/curate-login", headers=forged,
                                                                        data={"name": "x", "password": "y"})]
    for answer in answers:
        assert "evil.example" not in answer.text and "evil.example" not in answer.headers.get("location", "")


# ---------------------------------------------------------------- defects 2 and 3: limits per client address


STRICT = {"trusted_proxies": "1", "max_request_mb": "1", "writes_per_minute": "5", "new_visitors_per_hour": "4",
          "upload_mb_per_hour": "1", "submissions_per_hour": "2", "queue_places": "50"}


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The app behind one trusted proxy (X-Forwarded-For's last entry is the client), with small limits."""
    yield from serve_full_app(tmp_path_factory.mktemp("strict"), **STRICT)


def join(http: httpx.Client, blocks: gr.Blocks, event: str, client: str, values: dict[int, Any]) -> httpx.Response:
    """Queue an event as `client` (behind the proxy), with a spoofed first hop that must not matter."""
    index = [fn.api_name for fn in blocks.fns.values()].index(event)
    data = [values.get(i, neutral_value(b)) for i, b in enumerate(blocks.fns[index].inputs)]
    spoof = f"203.0.113.{uuid.uuid4().int % 250}"
    return http.post("/gradio_api/queue/join", headers={"X-Forwarded-For": f"{spoof}, {client}"},
                     json={"data": data, "fn_index": index, "session_hash": uuid.uuid4().hex[:12]})


def count_limited(answers: list[httpx.Response], allowed: int) -> int:
    """Calls past the allowance refused with 429 and a message; the allowed ones accepted."""
    codes = [answer.status_code for answer in answers]
    assert codes[:allowed] == [200] * allowed, codes
    held = sum(code == 429 and "too many" in answer.json()["detail"]
               for code, answer in zip(codes[allowed:], answers[allowed:], strict=True))
    add(limit_bypasses_tried=len(answers) - allowed, limit_bypasses_held=held)
    return held


def test_ratings_are_limited_per_client_whatever_visitor_ids_it_sends(strict):
    from app.visitors import new_visitor_id

    blocks = strict["app"].state.gelato_blocks
    with httpx.Client(base_url=strict["url"], timeout=30) as http:
        answers = [join(http, blocks, "rate", "10.0.0.1", {0: new_visitor_id()}) for _ in range(12)]
        assert count_limited(answers, 5) == 7
        assert join(http, blocks, "attempt", "10.0.0.1", {0: new_visitor_id()}).status_code == 429
        assert join(http, blocks, "rate", "10.0.0.2", {0: new_visitor_id()}).status_code == 200  # another client


def test_new_visitor_ids_are_limited_per_client(strict):
    blocks = strict["app"].state.gelato_blocks
    with httpx.Client(base_url=strict["url"], timeout=30) as http:
        forged = [None, "forged", "0" * 64, 123, None, "x", None, None]
        answers = [join(http, blocks, "on_load", "10.0.1.1", {0: value}) for value in forged]
    assert count_limited(answers, 4) == 4
    assert "new visitor ids" in answers[-1].json()["detail"]


def test_submissions_are_limited_per_client(strict):
    blocks = strict["app"].state.gelato_blocks
    from app.visitors import new_visitor_id

    with httpx.Client(base_url=strict["url"], timeout=30) as http:
        answers = [join(http, blocks, "submit", "10.0.2.1", {0: new_visitor_id()}) for _ in range(6)]
    assert count_limited(answers, 2) == 4


def test_uploads_are_limited_per_client_and_bodies_are_bounded(strict):
    blob = b"\0" * (600 * 1024)
    with httpx.Client(base_url=strict["url"], timeout=30) as http:
        behind = {"X-Forwarded-For": "10.0.3.1"}
        first = http.post("/gradio_api/upload", headers=behind, files={"files": ("a.png", blob)})
        second = http.post("/gradio_api/upload", headers=behind, files={"files": ("b.png", blob)})
        assert first.status_code == 200 and second.status_code == 429, (first.text, second.text)
        big_json = http.post("/gradio_api/queue/join", content=b'{"data": ["' + b"a" * (2 * 1024**2) + b'"]}',
                             headers={"Content-Type": "application/json"})
        big_upload = http.post("/gradio_api/upload", files={"files": ("c.png", b"\0" * (2 * 1024**2))})

        def chunks() -> Iterator[bytes]:
            for _ in range(40):
                yield b"x" * 65536

        chunked = http.post("/gradio_api/queue/join", content=chunks(), headers={"Content-Type": "application/json"})
    assert [big_json.status_code, big_upload.status_code, chunked.status_code] == [413, 413, 413]
    add(limit_bypasses_tried=4, limit_bypasses_held=sum(r.status_code in (413, 429)
                                                        for r in (second, big_json, big_upload, chunked)))


def test_queue_places_are_a_fair_share_per_client():
    from types import SimpleNamespace

    from app.limits import ClientLimits, RateLimited, places_taken
    from app.settings import resolve

    limits = ClientLimits.from_settings(resolve({**STRICT, "queue_places": "3"}, environ={}))

    def event(peer: str, forwarded: str) -> Any:
        headers = [(b"x-forwarded-for", forwarded.encode())]
        return SimpleNamespace(request=SimpleNamespace(scope={"client": (peer, 1), "headers": headers}))

    queue = [event("127.0.0.1", f"{i}.1.1.1, 10.0.4.1") for i in range(3)] + [event("127.0.0.1", "10.0.4.2")]
    assert places_taken(queue, "10.0.4.1", 1) == 3 and places_taken(queue, "10.0.4.2", 1) == 1
    with pytest.raises(RateLimited, match="in the queue"):
        limits.check_event("10.0.4.1", "solve", False, places_taken(queue, "10.0.4.1", 1))
    limits.check_event("10.0.4.2", "solve", False, places_taken(queue, "10.0.4.2", 1))


def test_client_windows_count_atomically_and_forget_old_clients():
    import threading

    from app import limits
    from app.limits import RateLimited, Window

    window = Window("things", 10, 60)
    granted: list[int] = []

    def take() -> None:
        try:
            window.take("one client")
            granted.append(1)
        except RateLimited:
            pass

    threads = [threading.Thread(target=take) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 10
    for index in range(limits.MAX_CLIENTS + 50):
        window.take(f"client {index}")
    assert len(window._spent) == limits.MAX_CLIENTS


@pytest.mark.parametrize(("forwarded", "trusted", "expected"), [
    (None, 0, "127.0.0.1"), ("1.1.1.1", 0, "127.0.0.1"), ("1.1.1.1", 1, "1.1.1.1"),
    ("6.6.6.6, 1.1.1.1", 1, "1.1.1.1"), ("6.6.6.6, 1.1.1.1, 2.2.2.2", 2, "1.1.1.1"), (None, 1, "127.0.0.1"),
])
def test_the_client_address_trusts_only_the_configured_hops(forwarded, trusted, expected):
    from app.limits import client_address

    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    assert client_address({"client": ("127.0.0.1", 5), "headers": headers}, trusted) == expected


# ---------------------------------------------------------------- defect 5: curator login


def login_as(http: httpx.Client, client: str, name: str, password: str) -> httpx.Response:
    return http.post("/curate-login", headers={"X-Forwarded-For": client}, data={"name": name, "password": password})


def failure_rows(bank: Any) -> int:
    from sqlalchemy import func, select

    from puzzles.bank.db import read_session
    from puzzles.bank.models import LoginFailure

    with read_session(bank) as session:
        return session.scalar(select(func.count()).select_from(LoginFailure)) or 0


def test_wrong_passwords_from_others_do_not_lock_out_the_owner(strict):
    from tests.test_curator_access import CURATOR, PASSWORD

    with httpx.Client(base_url=strict["url"], timeout=60, follow_redirects=False) as http:
        for attacker in ("10.9.0.1", "10.9.0.2", "10.9.0.3"):
            for _ in range(4):
                assert login_as(http, attacker, CURATOR, "wrong guess").status_code == 401
        assert login_as(http, "10.9.0.1", CURATOR, PASSWORD).status_code == 401  # a suspect client stays locked
        assert login_as(http, "10.9.9.9", CURATOR, PASSWORD).status_code == 303  # the owner's own address
    add(limit_bypasses_tried=1, limit_bypasses_held=1)


def test_concurrent_and_sprayed_logins_check_few_passwords_and_store_little(strict):
    from concurrent.futures import ThreadPoolExecutor

    from app.curate.auth import LOGIN_FAILURES_PER_CLIENT
    from puzzles.bank.accounts import MAX_FAILURES
    from tests.test_curator_access import CURATOR

    before = failure_rows(strict["bank"])
    with httpx.Client(base_url=strict["url"], timeout=120) as http, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: login_as(http, "10.9.1.1", CURATOR, "wrong").status_code, range(40)))
        assert answers == [401] * 40
        checked = failure_rows(strict["bank"]) - before
        assert checked <= MAX_FAILURES, f"{checked} passwords checked for one name (limit {MAX_FAILURES})"
        sprayed = [login_as(http, "10.9.2.1", f"name-{index}", "wrong").status_code for index in range(60)]
        assert sprayed == [401] * 60
        assert failure_rows(strict["bank"]) - before - checked <= LOGIN_FAILURES_PER_CLIENT
        for _ in range(100):  # refusals while limited add no rows
            login_as(http, "10.9.2.1", "name-0", "wrong")
    stored = failure_rows(strict["bank"]) - before
    assert stored <= MAX_FAILURES + LOGIN_FAILURES_PER_CLIENT, stored
    add(limit_bypasses_tried=200, limit_bypasses_held=200)


def test_old_failure_rows_are_pruned(strict):
    from sqlalchemy import update

    from puzzles.bank import accounts
    from puzzles.bank.models import LoginFailure, utc_now

    with strict["bank"].engine.begin() as connection:
        connection.execute(update(LoginFailure).values(at=utc_now() - accounts.FAILURE_RETENTION * 2))
    assert not accounts.verify_curator(strict["bank"], "someone", "wrong")
    assert failure_rows(strict["bank"]) == 1


def test_logout_revokes_the_session_on_the_server(strict):
    from tests.test_curator_access import CURATOR, PASSWORD

    with httpx.Client(base_url=strict["url"], timeout=60, follow_redirects=False) as http:
        answer = login_as(http, "10.9.3.1", CURATOR, PASSWORD)
        assert answer.status_code == 303
        cookie = {"gelato_curator": answer.cookies["gelato_curator"]}
        assert http.get("/curate/config", cookies=cookie).status_code == 200
        assert http.get("/curate-logout", cookies=cookie).status_code == 303
        for path in ("/curate/config", "/curate/gradio_api/info"):  # the copied cookie is dead too
            assert http.get(path, cookies=cookie).status_code == 401
        again = {"gelato_curator": login_as(http, "10.9.3.1", CURATOR, PASSWORD).cookies["gelato_curator"]}
        assert http.get("/curate/config", cookies=again).status_code == 200


def test_every_limit_setting_is_documented():
    from app.settings import LIMIT_SETTINGS, SETTINGS

    text = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text(encoding="utf-8")
    for setting in SETTINGS:
        if setting.name in LIMIT_SETTINGS:
            assert f"`{setting.flag}` / `{setting.env}` | `{setting.default}`" in text, setting.name
