"""Access: which API endpoints are public, curator endpoints refuse everyone else, per-visitor rate limits,
signed visitor ids, the file route serves only what the app made, and /healthz."""
from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client, handle_file

from app import bank_views, limits, prompts, visitors
from app.health import health_report
from app.services import Services
from app.settings import resolve
from puzzles.bank import connect, repository
from puzzles.bank.models import utc_now
from puzzles.generators import generate
from puzzles.images import png_bytes

# Every named endpoint of the public playground; none of them changes curator-owned data (puzzle status,
# curators, audit log): /submit only adds a *pending* puzzle, /rate, /attempt and /grid_check add visitor rows;
# /attempt_model (the model's part after a person's answer), /answer, /rank and /puzzle (the programs' API) run the
# model or read a published puzzle.
PUBLIC_ENDPOINTS = {
    "/clear_all", "/random_puzzle", "/example", "/solve", "/score", "/model_sees", "/rate", "/submit",
    "/browse", "/open_try", "/attempt", "/attempt_model", "/open_in_play", "/challenge_start", "/challenge_answer",
    "/grid_check", "/answer", "/rank", "/puzzle",
}
CURATOR_WORDS = ("approve", "reject", "publish", "unpublish", "edit", "merge", "import", "curator", "bulk", "audit")


@pytest.fixture(scope="module")
def client(playground: dict[str, Any]) -> Client:
    return Client(playground["url"], verbose=False)


def _info(url: str) -> dict[str, Any]:
    answer = httpx.get(url + "gradio_api/info", timeout=30)
    answer.raise_for_status()
    return answer.json()


def test_the_playground_exposes_exactly_the_public_endpoints(playground: dict[str, Any]) -> None:
    info = _info(playground["url"])
    named = set(info["named_endpoints"])
    assert named == PUBLIC_ENDPOINTS, f"unexpected public API: {sorted(named ^ PUBLIC_ENDPOINTS)}"
    assert not [name for name in named if any(word in name for word in CURATOR_WORDS)]


def test_every_curator_endpoint_refuses_anonymous_and_visitor_callers(playground: dict[str, Any]) -> None:
    base = playground["url"] + "curate/"
    visitor_cookies = {"gelato_visitor": visitors.new_visitor_id()}
    for cookies in ({}, visitor_cookies):
        with httpx.Client(cookies=cookies, timeout=30, follow_redirects=False) as http:
            for path in ("config", "gradio_api/info", "gradio_api/queue/status"):
                assert http.get(base + path).status_code == 401, path
            for fn_index in range(40):  # every event the curator Blocks could have, named or not
                body = {"data": [], "fn_index": fn_index, "session_hash": uuid.uuid4().hex[:10]}
                assert http.post(base + "gradio_api/queue/join", json=body).status_code == 401
                assert http.post(base + "gradio_api/run/predict", json=body).status_code in (401, 404)
            page = http.get(base)
            assert page.status_code in (303, 401) and "gradio_config" not in page.text


def _solve_once(client: Client, playground: dict[str, Any], tmp_path: Path) -> None:
    puzzle = bank_views.fetch_puzzle(playground["bank"], playground["puzzle_ids"][0])
    slots: list[Any] = [None] * len(prompts.ALL_SLOTS)
    for name, image in zip(("slot-a1", "slot-a1p", "slot-b"), puzzle["panels"], strict=True):
        path = tmp_path / f"{name}.png"
        path.write_bytes(png_bytes(image))
        slots[prompts.ALL_SLOTS.index(name)] = handle_file(str(path))
    client.predict("analogy", "1", *slots, None, 4, 1.0, 0, 1.0, 0, api_name="/solve")


def test_ratings_are_rate_limited_per_visitor(client: Client, playground: dict[str, Any], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits.ratings, "limit", 2)
    _solve_once(client, playground, tmp_path)
    visitor, other = visitors.new_visitor_id(), visitors.new_visitor_id()
    for sample in (1, 2):  # samples are numbered from 1, as the page shows them
        client.predict(visitor, sample, "up", False, api_name="/rate")
    with pytest.raises(Exception, match="too many ratings: at most 2 per 60 s for one visitor; try again in"):
        client.predict(visitor, 3, "up", False, api_name="/rate")
    client.predict(other, 3, "up", False, api_name="/rate")  # another visitor is not held back
    assert len(repository.list_ratings(playground["bank"], visitor=visitor)) == 2


def test_attempts_are_rate_limited_per_visitor(client: Client, playground: dict[str, Any],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits.attempts, "limit", 1)
    visitor, puzzle_id = visitors.new_visitor_id(), playground["puzzle_ids"][3]
    client.predict(visitor, puzzle_id, bank_views.GAVE_UP, api_name="/attempt")
    with pytest.raises(Exception, match="too many attempts"):
        client.predict(visitor, puzzle_id, bank_views.GAVE_UP, api_name="/attempt")


@pytest.mark.parametrize("make_bank", ["sqlite"], indirect=True)
def test_the_limiter_window_slides(make_bank: Any, tmp_path: Path) -> None:
    bank = make_bank(tmp_path)
    puzzle_id = repository.add_puzzle(bank, generate("matrix", 0, size=32), status="published")
    now = [utc_now()]
    limiter = limits.BankLimiter("attempts", 2, 60, clock=lambda: now[0])
    for _ in range(2):
        limiter.check(bank, "a")
        repository.add_attempt(bank, puzzle_id, "a", None)
    now[0] = utc_now()
    with pytest.raises(limits.RateLimited, match="try again in 60 s"):
        limiter.check(bank, "a")
    limiter.check(bank, "b")  # another visitor is not held back
    now[0] += timedelta(seconds=60.5)
    limiter.check(bank, "a")


def test_a_visitor_cannot_rate_under_an_id_the_server_did_not_issue(client: Client, playground: dict[str, Any],
                                                                   tmp_path: Path) -> None:
    _solve_once(client, playground, tmp_path)
    real = visitors.new_visitor_id()
    forged = real[:32] + "0" * 16  # someone's random part with a made-up signature
    for claimed in ("alice", "0" * 48, forged):
        _, used = client.predict(claimed, 1, "down", False, api_name="/rate")
        assert used != claimed and visitors.is_visitor_id(used)
        assert repository.list_ratings(playground["bank"], visitor=claimed) == []


def test_the_file_route_serves_no_arbitrary_file(playground: dict[str, Any]) -> None:
    database = Path(playground["data_dir"]) / "gelato.db"
    temp = Path(playground["data_dir"]) / "tmp"
    targets = ["/etc/passwd", str(database), f"{temp}/../gelato.db", f"{temp}/%2e%2e/gelato.db",
               "../../../../etc/passwd", str(Path(__file__).resolve()), str(Path(visitors.__file__).resolve())]
    with httpx.Client(timeout=30) as http:
        for target in targets:
            answer = http.get(playground["url"] + "gradio_api/file=" + target)
            assert answer.status_code in (403, 404), (target, answer.status_code)
            assert b"root:" not in answer.content and b"SQLite format" not in answer.content


def test_an_upload_name_cannot_escape_the_temp_dir(playground: dict[str, Any]) -> None:
    marker = f"gelato-escape-{uuid.uuid4().hex}.png"
    name = "../../../../../../tmp/" + marker
    files = {"files": (name, png_bytes(__import__("numpy").zeros((4, 4, 3), "uint8")), "image/png")}
    answer = httpx.post(playground["url"] + "gradio_api/upload", files=files, timeout=30)
    assert answer.status_code == 200
    stored = Path(answer.json()[0]).resolve()
    temp = (Path(playground["data_dir"]) / "tmp").resolve()
    assert stored.is_relative_to(temp) and not Path("/tmp", marker).exists()


def test_healthz_reports_every_part(playground: dict[str, Any]) -> None:
    answer = httpx.get(playground["url"] + "healthz", timeout=30)
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert body["bundle"]["ok"] and body["bundle"]["name"] and body["bundle"]["image_size"] > 0
    assert "path" not in body["bundle"] and str(playground["data_dir"]) not in answer.text  # no server path to anyone
    assert body["provider"]["ok"] and body["provider"]["active"] in body["provider"]["available"]
    database = body["database"]
    assert database["ok"] and database["backend"] == "sqlite" and database["revision"] == "0001"
    assert isinstance(database["latency_ms"], float)


class _NoBundle:
    manifest: dict[str, Any] = {}


def test_healthz_is_503_naming_the_failing_part(tmp_path: Path) -> None:
    settings = resolve({"data_dir": str(tmp_path), "bundle": str(tmp_path / "absent")}, environ={})
    bank = connect(f"sqlite:///{tmp_path / 'gelato.db'}")
    try:
        status, body = health_report(Services(settings, bank))
        assert status == 503 and body["status"] == "error"
        assert not body["bundle"]["ok"] and "absent" in body["bundle"]["error"]
        assert body["database"]["ok"]
        with bank.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'old'")
        status, body = health_report(Services(settings, bank))
        assert status == 503 and "expected '0001'" in body["database"]["error"]
    finally:
        bank.close()


def test_healthz_says_what_the_server_does_after_its_start_until_it_is_done(
        tmp_path: Path, tiny_bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from app import server
    from app import services as services_module

    monkeypatch.setattr(services_module, "_current", services_module._current)  # the playground's come back after
    monkeypatch.setattr(server, "seed_starter_pack", lambda bank, pack_path=None: slow_seed())

    settings = resolve({"data_dir": str(tmp_path), "bundle": str(tiny_bundle_dir)}, environ={})
    bank = connect(f"sqlite:///{tmp_path / 'gelato.db'}")
    seeding, go_on = threading.Event(), threading.Event()

    def slow_seed() -> None:
        seeding.set()
        go_on.wait(30)

    try:
        services = server.open_services(settings, bank=bank)
        assert seeding.wait(30)
        assert health_report(services)[1]["background_work"] == "seeding the bank"
        go_on.set()
        deadline = time.monotonic() + 60
        while services.background_work is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        status, body = health_report(services)
        assert status == 200 and body["background_work"] is None
    finally:
        go_on.set()
        bank.close()
