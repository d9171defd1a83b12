"""Curator sessions: a signed cookie set by a small login form, checked by the mount and by every handler.

POST /curate-login (form fields `name`, `password`) checks the account with `verify_curator` (rate-limited
per name in the bank and per client address here, and logged) and sets the `gelato_curator` cookie:
`<name, base64>.<issued, unix seconds>.<session id>.<fingerprint>.<hmac>`, HMAC-SHA256 under a server secret.
The fingerprint is a digest of the curator's password hash, so a new password or a disabled account ends
every open session; logout revokes its session id in the bank, so a copied cookie dies with it on every
replica. Sessions last SESSION_SECONDS.

The secret comes from $GELATO_CURATOR_SECRET (set it to one value on every replica) or else from the file
`curator_secret` in the data directory, created on first start with owner-only permissions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from app import keys
from app.limits import RateLimited, Window, client_address

log = logging.getLogger(__name__)

COOKIE = "gelato_curator"
SESSION_SECONDS = 8 * 3600
SECRET_ENV = "GELATO_CURATOR_SECRET"
SECRET_FILE = "curator_secret"
LOGIN_PATH = "/curate-login"
LOGOUT_PATH = "/curate-logout"
MIN_SECRET_LENGTH = keys.MIN_SECRET_LENGTH


class CuratorRequired(PermissionError):
    """The caller has no valid curator session."""


@dataclass(frozen=True)
class CurateContext:
    """What curator handlers need: the bank, the key that signs sessions, and how to find a caller's address."""

    bank: Any
    secret: bytes
    trusted_proxies: int = 0
    # Failed logins per client address (any names): past the limit a client is refused without a password
    # check; a client with no failure at all is not "suspect", so a locked name still lets its owner in.
    client_failures: Window = field(default_factory=lambda: Window("failed logins", LOGIN_FAILURES_PER_CLIENT,
                                                                   LOGIN_WINDOW_S))


LOGIN_FAILURES_PER_CLIENT = 10
LOGIN_WINDOW_S = 300
_context: CurateContext | None = None


def install(bank: Any, secret: bytes, trusted_proxies: int = 0) -> CurateContext:
    global _context
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"the curator session secret must be at least {MIN_SECRET_LENGTH} bytes")
    _context = CurateContext(bank, secret, trusted_proxies)
    return _context


def context() -> CurateContext:
    if _context is None:
        raise CuratorRequired("curator pages are not configured on this server")
    return _context


def load_secret(data_dir: Path, environ: dict[str, str] | None = None) -> bytes:
    """The session key: $GELATO_CURATOR_SECRET, else <data_dir>/curator_secret (created 0600 when missing)."""
    return keys.load_secret(data_dir, SECRET_ENV, SECRET_FILE, environ)


def _sign(secret: bytes, payload: str) -> str:
    return hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()


def make_session(name: str, fingerprint: str, secret: bytes, now: float | None = None) -> str:
    """The cookie value for a curator who just logged in (with a fresh session id)."""
    encoded = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
    payload = f"{encoded}.{int(now if now is not None else time.time())}.{secrets.token_hex(16)}.{fingerprint}"
    return f"{payload}.{_sign(secret, payload)}"


def read_session(value: str | None, secret: bytes, now: float | None = None) -> tuple[str, str, str] | None:
    """(name, session id, fingerprint) from a cookie whose signature holds and that has not expired, else None."""
    if not value or value.count(".") != 4:
        return None
    payload, _, signature = value.rpartition(".")
    if not hmac.compare_digest(signature, _sign(secret, payload)):
        return None
    encoded, issued, session_id, fingerprint = payload.split(".")
    try:
        name = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        age = (now if now is not None else time.time()) - int(issued)
    except ValueError:
        return None
    if not 0 <= age <= SESSION_SECONDS:
        return None
    return name, session_id, fingerprint


def curator_from_cookies(cookies: Any, ctx: CurateContext | None = None) -> str | None:
    """The curator a request's cookies prove, checked against the bank (enabled, same password, session not
    logged out); else None."""
    from puzzles.bank.accounts import curator_fingerprint, session_revoked

    ctx = ctx or context()
    value = cookies.get(COOKIE) if cookies is not None else None
    session = read_session(value, ctx.secret)
    if session is None:
        return None
    name, session_id, fingerprint = session
    current = curator_fingerprint(ctx.bank, name)
    if current is None or not hmac.compare_digest(current, fingerprint) or session_revoked(ctx.bank, session_id):
        return None
    return name


def auth_dependency(request: Any) -> str | None:
    """For gr.mount_gradio_app: the curator name, or None (Gradio answers 401)."""
    try:
        return curator_from_cookies(request.cookies)
    except CuratorRequired:
        return None


def require_curator(request: Any) -> str:
    """The calling curator's name; CuratorRequired unless the request carries a valid curator session.

    Every curator handler calls this first, whatever the mount already checked.
    """
    cookies = getattr(request, "cookies", None) if request is not None else None
    try:
        name = curator_from_cookies(cookies) if cookies is not None else None
    except AttributeError:
        name = None
    if name is None:
        log.warning("curator action refused: no valid curator session")
        raise CuratorRequired("curator login required")
    return name


def login(name: str, password: str, client: str = "local") -> str | None:
    """Check a login (rate-limited per client and per name, failures logged); the cookie value to set, or None
    when refused. A try counts against the client before the password is checked (so concurrent tries cannot
    pass the limit together) and is given back when it succeeds."""
    from puzzles.bank.accounts import curator_fingerprint, verify_curator

    ctx = context()
    try:
        earlier_failures = ctx.client_failures.take(client)
    except RateLimited:
        log.warning("curator login refused for a client: too many failed logins from its address")
        return None
    if not verify_curator(ctx.bank, name, password, suspect=earlier_failures > 0):
        return None
    ctx.client_failures.give_back(client)
    fingerprint = curator_fingerprint(ctx.bank, name)
    if fingerprint is None:
        return None
    log.info("curator %s logged in", name)
    return make_session(name, fingerprint, ctx.secret)


def end_session(value: str | None) -> None:
    """Revoke the session of a valid cookie (logout); nothing to do for an invalid one."""
    from puzzles.bank.accounts import revoke_session

    ctx = context()
    session = read_session(value, ctx.secret)
    if session is not None and curator_from_cookies({COOKIE: value}, ctx) is not None:
        revoke_session(ctx.bank, session[0], session[1])
        log.info("curator %s logged out", session[0])


def login_page(message: str = "") -> str:
    """The login form (plain HTML: it must work before any curator page loads)."""
    from app.pages.plain_html import page

    note = f'<p role="alert" id="login-error">{html.escape(message)}</p>' if message else ""
    form = f"""{note}<form method="post" action="{LOGIN_PATH}">
<label for="name">Name</label><input id="name" name="name" autocomplete="username" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" id="login-submit">Log in</button></form>"""
    return page("Curator login", form)


def add_routes(app: Any, curate_path: str = "/curate") -> None:
    """GET/POST /curate-login and /curate-logout on the FastAPI app, and a redirect to the login page
    for browsers that open the curator pages without a session."""
    home = curate_path.rstrip("/") + "/"

    @app.get(LOGIN_PATH, response_class=HTMLResponse, include_in_schema=False)
    def login_form() -> HTMLResponse:
        return HTMLResponse(login_page())

    @app.post(LOGIN_PATH, include_in_schema=False)
    def login_submit(request: Request, name: str = Form(""), password: str = Form("")) -> Any:  # noqa: B008
        cookie = login(name.strip(), password, client_address(request.scope, context().trusted_proxies))
        if cookie is None:
            return HTMLResponse(login_page("Wrong name or password, or too many tries: wait and retry."), 401)
        response = RedirectResponse(home, status_code=303)
        response.set_cookie(COOKIE, cookie, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
        return response

    @app.api_route(LOGOUT_PATH, methods=["GET", "POST"], include_in_schema=False)
    def logout(request: Request) -> Any:
        end_session(request.cookies.get(COOKIE))
        response = RedirectResponse(LOGIN_PATH, status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.middleware("http")
    async def send_browsers_to_login(request: Request, call_next: Any) -> Any:
        # Only the page itself: API calls without a session keep Gradio's plain 401.
        if request.method == "GET" and request.url.path in (curate_path, home) and auth_dependency(request) is None:
            return RedirectResponse(LOGIN_PATH, status_code=303)
        return await call_next(request)
