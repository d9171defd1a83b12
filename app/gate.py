"""The HTTP gate in front of both Blocks: what every request passes before Gradio sees it.

- Bodies are bounded before they are read: over `max_request_mb` (event calls: 1 MB) is 413; a body without a
  Content-Length is read only up to that bound.
- Event calls of the playground (queue/join, run, call) must name an event it has: an unknown fn_index or name
  is a 404 with one log line, not a traceback. Their values must be of the kinds the event's inputs take
  (app.event_values): 422 naming the input. Known ones pass the per-client limits of app.limits (queue
  places, new visitor ids, writes, submissions): 429 with the reason. Calls that join the queue are admitted
  one at a time, so a burst sent at once counts its own places as a sequence does.
- Uploads count against the client's upload bytes per hour.
- Every response carries the security headers; X-Forwarded-Host is dropped unless proxies are trusted, so
  links and redirects never point at a host the caller names.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from app.event_values import named_data
from app.event_values import refusal as value_refusal
from app.limits import EVENT_BODY_BYTES, ClientLimits, RateLimited, client_address, places_taken

log = logging.getLogger(__name__)

API = "/gradio_api/"
EVENT_ROUTES = ("queue/join", "run/", "api/", "call/")
STREAM_ROUTE = "queue/data"  # an event's messages, read with the session_hash that joined it
QUEUED_ROUTES = ("queue/join", "call/")  # answered as soon as the event is in the queue (run/ waits for its end)
UPLOAD_ROUTE = "upload"
MAX_SESSION_HASH = 100  # Gradio's clients send 10 to 12 characters; each one is a key the queue keeps
BODY_METHODS = (b"POST", b"PUT", b"PATCH")
FRAME_ANCESTORS = "'self' https://huggingface.co"  # a Space is shown inside a page of huggingface.co
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline' https:; font-src 'self' data: https:; img-src 'self' data: blob:; "
    "media-src 'self' data: blob:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; "
    f"base-uri 'self'; form-action 'self'; frame-ancestors {FRAME_ANCESTORS}"
)


def security_headers() -> list[tuple[bytes, bytes]]:
    headers = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
               (b"content-security-policy", CONTENT_SECURITY_POLICY.encode())]
    if not os.environ.get("SPACE_ID"):  # X-Frame-Options cannot name huggingface.co; CSP covers Spaces
        headers.append((b"x-frame-options", b"SAMEORIGIN"))
    return headers


class Gate:
    """ASGI middleware; `blocks` gives the playground's Blocks (for its events and its queue)."""

    def __init__(self, app: Any, limits: ClientLimits, blocks: Callable[[], Any]):
        self.app, self.limits, self.blocks = app, limits, blocks
        self.headers = security_headers()
        self.admission = asyncio.Lock()  # one queued call from check to queue at a time

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._with_headers(send)
        if self.limits.trusted_proxies == 0:
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"x-forwarded-host"]
        path, client = scope["path"], client_address(scope, self.limits.trusted_proxies)
        if path == API + STREAM_ROUTE and not self._session_known(scope):
            await _session_not_found(send)
            return
        is_event = path.startswith(API) and path[len(API):].startswith(EVENT_ROUTES)
        cap = EVENT_BODY_BYTES if is_event else self.limits.max_request_bytes
        declared = _content_length(scope)
        if scope["method"].encode() in BODY_METHODS:
            if declared is not None and declared > cap:
                await _answer(send, 413, f"request body over {cap // 1024**2} MB")
                return
            if declared is None or is_event:
                body = await _read_body(receive, cap)
                if body is None:
                    await _answer(send, 413, f"request body over {cap // 1024**2} MB")
                    return
                declared, receive = len(body), _replay(body, receive)
                if is_event and path[len(API):].startswith(QUEUED_ROUTES):
                    await self._admit(path[len(API):], body, client, scope, receive, send)
                    return
                if is_event:
                    refusal = self._check_event(path[len(API):], body, client)
                    if refusal is not None:
                        await _answer(send, *refusal)
                        return
            if path == API + UPLOAD_ROUTE:
                try:
                    self.limits.uploads.take(client, declared)
                except RateLimited as error:
                    await _answer(send, 429, str(error))
                    return
        await self.app(scope, receive, send)

    async def _admit(self, route: str, body: bytes, client: str, scope: dict[str, Any], receive: Any,
                     send: Any) -> None:
        """A call that joins the queue: checked and queued before the next one is checked (the queue counts
        a client's places only once its events are in it)."""
        started = asyncio.Event()

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        async with self.admission:
            refusal = self._check_event(route, body, client)
            if refusal is not None:
                await _answer(send, *refusal)
                return
            call = asyncio.ensure_future(self.app(scope, receive, sending))
            answered = asyncio.ensure_future(started.wait())
            await asyncio.wait([call, answered], return_when=asyncio.FIRST_COMPLETED)
            answered.cancel()
        await call

    def _session_known(self, scope: dict[str, Any]) -> bool:
        """Whether the queue holds messages for the stream's session_hash (no Blocks yet: Gradio answers)."""
        blocks = self.blocks()
        if blocks is None:
            return True
        session = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash", [""])[0]
        return session in blocks._queue.pending_messages_per_session

    def _check_event(self, route: str, body: bytes, client: str) -> tuple[int, str] | None:
        """(status, message) refusing an event call, or None to let it through."""
        blocks = self.blocks()
        try:
            payload = json.loads(body or b"{}")
        except RecursionError:
            return 422, "the request's JSON is nested too deeply"
        except ValueError:
            return None  # Gradio answers malformed JSON itself (422)
        if blocks is None or not isinstance(payload, dict):
            return None
        session = payload.get("session_hash")
        if isinstance(session, str) and len(session) > MAX_SESSION_HASH:
            return 422, f"a session_hash has at most {MAX_SESSION_HASH} characters"
        fn = _find_event(blocks, route, payload)
        if fn is None:
            log.info("refused a call to an unknown event (%s)", route.split("/")[0])
            return 404, "unknown event"
        if route.startswith("call/v2"):  # values by parameter name, not a data list
            data, problem = named_data(fn, payload)
            problem = problem or (value_refusal(fn, data) if data is not None else None)
        else:
            data = payload.get("data") if isinstance(payload.get("data"), list) else None
            problem = value_refusal(fn, data) if data is not None else None
        data = data or []
        if problem is not None:
            log.info("refused %s from a client: %s", fn.api_name, problem)
            return 422, problem
        try:
            self.limits.check_event(client, fn.api_name, _lacks_visitor_id(fn, data),
                                    places_taken(_queued(blocks), client, self.limits.trusted_proxies))
        except RateLimited as error:
            log.info("refused %s from a client: %s", fn.api_name, error)
            return 429, str(error)
        return None

    def _with_headers(self, send: Any) -> Any:
        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *(h for h in self.headers if h[0] not in present)]
            await send(message)

        return sending


def _find_event(blocks: Any, route: str, payload: dict[str, Any]) -> Any:
    """The event a call names (fn_index first, as Gradio does), or None; an event that runs only in the browser
    (a js function, no Python one) is none the server knows."""
    index = payload.get("fn_index")
    if index is not None:
        fn = blocks.fns.get(index) if isinstance(index, int) and not isinstance(index, bool) else None
    elif route == "queue/join":
        fn = None
    else:
        name = route.rstrip("/").split("/")[-1]  # run/NAME, api/NAME, call/NAME, call/v2/NAME
        fn = next((fn for fn in blocks.fns.values() if fn.api_name == name), None)
    return fn if fn is not None and fn.fn is not None else None


def _lacks_visitor_id(fn: Any, data: list[Any]) -> bool:
    """Whether the call carries no valid visitor id where the event takes one (the app will issue a new id)."""
    import gradio as gr

    from app.visitors import is_visitor_id

    for position, block in enumerate(fn.inputs):
        if isinstance(block, gr.BrowserState):
            return not is_visitor_id(data[position] if position < len(data) else None)
    return False


def _queued(blocks: Any) -> list[Any]:
    """Every event of the queue, waiting or running."""
    queue = blocks._queue
    waiting = [event for line in queue.event_queue_per_concurrency_id.values() for event in line.queue]
    running = [event for job in queue.active_jobs if job for event in job]
    return waiting + running


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _read_body(receive: Any, cap: int) -> bytes | None:
    """The whole body, or None as soon as it passes `cap` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    """A receive that gives the body already read, then waits on the connection as before."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _session_not_found(send: Any) -> None:
    """Gradio's own answer to a stream of no session (one message that says so, which its clients act on),
    without the traceback Gradio logs after it."""
    message = {"msg": "unexpected_error", "event_id": None, "message": "404: Not Found", "session_not_found": True,
               "success": False}
    body = f"data: {json.dumps(message)}\n\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8")]})
    await send({"type": "http.response.body", "body": body})


async def _answer(send: Any, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 429:
        headers.append((b"retry-after", b"60"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
