"""Calls no widget makes, sent over raw HTTP to the whole app served in-process: unpublished puzzles named by
hand, values of the wrong kind, thousands of file references, bursts, forged proxy headers, unknown streams.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from puzzles.generators import generate
from puzzles.images import png_bytes
from tests.conftest import MANY_CLIENTS_LIMITS
from tests.test_curator_access import serve_full_app
from tests.test_security import EVENT_TIMEOUT_S, Records, neutral_value, run_event


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from puzzles.bank import repository

    served = serve_full_app(tmp_path_factory.mktemp("wire"), **MANY_CLIENTS_LIMITS)
    app = next(served)
    app["ids"]["draft_grid"] = repository.add_puzzle(app["bank"], generate("grid", 5, size=32), status="draft")
    app["ids"]["grid"] = repository.add_puzzle(app["bank"], generate("grid", 6, size=32), status="published")
    yield app
    next(served, None)


def _index(app: dict[str, Any], name: str) -> int:
    return [fn.api_name for fn in app["app"].state.gelato_blocks.fns.values()].index(name)


def _call(http: httpx.Client, app: dict[str, Any], name: str, values: dict[int, Any]) -> dict[str, Any]:
    """Run event `name` with `values` at their positions and what a browser sends elsewhere."""
    index = _index(app, name)
    inputs = app["app"].state.gelato_blocks.fns[index].inputs
    return run_event(http, "", index, [values.get(i, neutral_value(block)) for i, block in enumerate(inputs)])


PUZZLE_ID_EVENTS = ["open_grid", "open_next", "open_random", "model_after_round", "attempt_model", "puzzle"]


@pytest.mark.parametrize("event", PUZZLE_ID_EVENTS)
def test_an_unpublished_puzzle_answers_exactly_like_a_missing_one(wire: dict[str, Any], event: str) -> None:
    missing = "0" * 16
    with Records() as logged, httpx.Client(base_url=wire["url"], timeout=EVENT_TIMEOUT_S) as http:
        round_over = {2: "## ✔ Right!"} if event == "model_after_round" else {}  # else it waits, reading nothing
        answers = {name: _call(http, wire, event, {0: wire["ids"].get(name, missing), **round_over})
                   for name in ("draft", "pending", "draft_grid", "missing")}
    expected = {name: f"no puzzle {wire['ids'].get(name, missing)!r} in the bank" for name in answers}
    assert {name: (answer.get("output") or {}).get("error") for name, answer in answers.items()} == expected
    assert "data-input" not in json.dumps(answers)  # the draft grid's test input stays in the bank
    assert logged.tracebacks() == []


def test_counts_are_checked_before_any_image_is_read(wire: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from app import uploads

    reads = []
    real_read = uploads.read_upload_file
    monkeypatch.setattr(uploads, "read_upload_file", lambda path: reads.append(path) or real_read(path))
    image = generate("analogy", 1, size=32).panels[0]
    with httpx.Client(base_url=wire["url"], timeout=EVENT_TIMEOUT_S) as http:
        path = http.post("/gradio_api/upload", files={"files": ("a.png", png_bytes(image), "image/png")}).json()[0]
        file = {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "a.png"}
        ranked = _call(http, wire, "rank", {0: [file] * 3, 1: [file] * 500, 2: "analogy"})
        answered = _call(http, wire, "answer", {0: [file] * 200, 1: "analogy"})
        uploaded = _call(http, wire, "check_candidates", {0: [{"image": file, "caption": None}] * 300})
    assert ranked["output"]["error"] == "at most 16 candidates can be ranked at once, got 500"
    assert answered["output"]["error"] == "at most 8 images make a prompt, got 200"
    assert "at most 16 candidates can be ranked at once, got 300" in uploaded["output"]["error"]
    assert len(reads) <= 3  # the prompt's images at most, never the hundreds of candidates


WRONG_KINDS = [  # event, input position, value, words of the refusal
    ("rate", 2, "abc", "takes a finite number, got text"),
    ("rate", 2, float("nan"), "takes a finite number, got nan"),
    ("rate", 4, "false", "takes true or false, got text"),
    ("rate", 4, {"x": 1}, "takes true or false, got an object"),
    ("answer", 2, [4], "takes a finite number, got a list"),
    ("browse", 6, float("inf"), "takes a finite number, got inf"),
    ("grid_check", 2, "[" * 20_000, "takes text of at most 10,000 characters"),
    ("puzzle", 0, "x" * 200_000, "takes text of at most 10,000 characters, got text of 200,000 characters"),
    ("solve", 0, ["analogy"], "takes one choice (text), got a list"),
    ("solve", 2, "/etc/passwd", "takes a file reference"),
    ("solve", 1 + 23 + 2, None, "(Samples (N)) of solve takes a finite number, got nothing (null)"),
    ("answer", 0, [{"url": "file:///etc/passwd", "meta": {"_type": "gradio.FileData"}}] * 3,
     "takes a list of file references, got a list"),
]


@pytest.mark.parametrize(("event", "position", "value", "words"), WRONG_KINDS,
                         ids=[f"{kind[0]}-{kind[1]}-{index}" for index, kind in enumerate(WRONG_KINDS)])
def test_a_value_of_the_wrong_kind_is_refused_naming_its_input(
    wire: dict[str, Any], event: str, position: int, value: Any, words: str,
) -> None:
    with Records() as logged, httpx.Client(base_url=wire["url"], timeout=EVENT_TIMEOUT_S) as http:
        answer = _call(http, wire, event, {position: value})
    assert answer["status"] == 422, answer
    detail = json.loads(answer["text"])["detail"]
    assert f"input {position + 1} (" in detail and words in detail, detail
    assert len(answer["text"]) < 400 and logged.tracebacks() == []


def test_malformed_calls_get_clear_answers_not_tracebacks(wire: dict[str, Any]) -> None:
    index = _index(wire, "rate")
    with Records() as logged, httpx.Client(base_url=wire["url"], timeout=EVENT_TIMEOUT_S) as http:
        deep = http.post("/gradio_api/queue/join", headers={"content-type": "application/json"},
                         content=b'{"data": ' + b"[" * 50_000 + b"]" * 50_000 + b', "fn_index": 1}')
        short = http.post("/gradio_api/queue/join", json={"data": [None], "fn_index": index, "session_hash": "s1"})
        stream = http.get("/gradio_api/queue/data", params={"session_hash": "never-joined"})
        far_page = _call(http, wire, "browse", {6: 1e30})
        browser_only = http.post("/gradio_api/call/js_fn", json={"data": []})
        v2_list = http.post("/gradio_api/call/v2/puzzle", json={"data": ["x"]})
        v2_wrong = http.post("/gradio_api/call/v2/puzzle", json={"puzzle_id": ["x"]})
        v2_right = http.post("/gradio_api/call/v2/puzzle", json={"puzzle_id": wire["ids"]["published"]})
        v2_missing = http.post("/gradio_api/call/v2/rank", json={"layout": "analogy"})
        long_session = http.post("/gradio_api/queue/join", json={"data": [None], "fn_index": _index(wire, "puzzle"),
                                                                 "session_hash": "s" * 500_000})
        below_one = _call(http, wire, "rate", {2: -3})  # typed in the sample box: the handler's words, not the gate's
    assert (deep.status_code, deep.json()["detail"]) == (422, "the request's JSON is nested too deeply")
    assert short.status_code == 422 and "rate takes 5 values, got 1" in short.json()["detail"]
    said = json.loads(stream.text.removeprefix("data: "))  # as Gradio says it, without its traceback
    assert stream.status_code == 200 and said["session_not_found"] is True and said["msg"] == "unexpected_error"
    assert far_page["success"] is True and "there is no page" in json.dumps(far_page["output"])
    assert (browser_only.status_code, browser_only.json()["detail"]) == (404, "unknown event")  # a js-only event
    assert (v2_list.status_code, v2_list.json()["detail"]) == (422, "puzzle takes puzzle_id; not 'data'")
    assert v2_wrong.status_code == 422 and "takes text, got a list" in v2_wrong.text
    assert v2_right.status_code == 200 and "event_id" in v2_right.json()
    assert (v2_missing.status_code, v2_missing.json()["detail"]) == (422, "rank needs images, candidates")
    assert long_session.status_code == 422 and "session_hash has at most" in long_session.text
    assert "-3" in below_one["output"]["error"]  # refused in words past the gate (a widget can send -3)
    assert logged.tracebacks() == []


def test_a_forged_forwarded_for_is_not_believed_without_trusted_proxies(tmp_path: Path) -> None:
    from app.visitors import new_visitor_id

    served = serve_full_app(tmp_path, trusted_proxies="0", writes_per_minute="2")
    app = next(served)
    index = _index(app, "rate")
    inputs = app["app"].state.gelato_blocks.fns[index].inputs
    try:
        with httpx.Client(base_url=app["url"], timeout=EVENT_TIMEOUT_S) as http:
            codes = []
            for hop in range(4):  # a new "client" each time, by the caller's word only
                data = [new_visitor_id() if k == 0 else neutral_value(block) for k, block in enumerate(inputs)]
                codes.append(http.post("/gradio_api/queue/join", headers={"X-Forwarded-For": f"10.9.9.{hop}"},
                                       json={"data": data, "fn_index": index,
                                             "session_hash": uuid.uuid4().hex[:12]}).status_code)
    finally:
        next(served, None)
    assert codes == [200, 200, 429, 429]


def test_a_burst_of_joins_gets_the_places_a_sequence_gets() -> None:
    """The gate alone, before a stand-in queue that takes an event a moment after the join arrives (as Gradio's
    does): 20 joins sent at once from one client get its 3 places, not 20."""
    import gradio as gr

    from app.gate import Gate
    from app.limits import ClientLimits
    from app.settings import resolve

    queue: list[Any] = []
    fn = SimpleNamespace(api_name="solve", inputs=[gr.Textbox()], fn=print)
    blocks = SimpleNamespace(fns={0: fn}, _queue=SimpleNamespace(
        event_queue_per_concurrency_id={"model": SimpleNamespace(queue=queue)}, active_jobs=[],
        pending_messages_per_session={}))

    async def gradio(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(0.01)  # the join's own work before the event is in the queue
        queue.append(SimpleNamespace(request=SimpleNamespace(scope=scope)))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    limits = ClientLimits.from_settings(resolve({"queue_places": "3", "trusted_proxies": "0"}, environ={}))
    gate = Gate(gradio, limits, lambda: blocks)
    body = json.dumps({"data": ["x"], "fn_index": 0, "session_hash": "s"}).encode()

    async def join() -> int:
        scope = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join", "client": ("10.1.1.1", 5),
                 "headers": [(b"content-length", str(len(body)).encode())], "query_string": b""}
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await gate(scope, receive, send)
        return sent[0]["status"]

    async def burst() -> list[int]:
        return await asyncio.gather(*(join() for _ in range(20)))

    with ThreadPoolExecutor(1) as pool:  # its own thread: the browser tests may hold this thread's event loop
        codes = pool.submit(asyncio.run, burst()).result()
    assert sorted(codes) == [200] * 3 + [429] * 17 and len(queue) == 3


def test_a_refusal_is_one_log_line_not_a_traceback(wire: dict[str, Any], capfd: pytest.CaptureFixture[str],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="app.errors")
    capfd.readouterr()
    with httpx.Client(base_url=wire["url"], timeout=EVENT_TIMEOUT_S) as http:
        answers = [_call(http, wire, "puzzle", {0: "f" * 16}) for _ in range(3)]
    printed = capfd.readouterr().err
    assert all(answer["output"]["error"] == f"no puzzle {'f' * 16!r} in the bank" for answer in answers)
    assert "Traceback" not in printed, printed[-2000:]
    assert [record.getMessage() for record in caplog.records if record.name == "app.errors"] == [
        f"refused: no puzzle {'f' * 16!r} in the bank"] * 3


def test_a_candidate_for_a_grid_task_is_answered_in_words(wire: dict[str, Any]) -> None:
    from app.visitors import new_visitor_id

    with httpx.Client(base_url=wire["url"], timeout=EVENT_TIMEOUT_S) as http:
        answer = _call(http, wire, "attempt", {0: new_visitor_id(), 1: wire["ids"]["grid"], 2: "#1"})
    assert answer["output"]["error"] == "this puzzle is answered by building its grid in the editor, not by a candidate"
