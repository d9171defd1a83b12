"""Per-visitor rate limits for the writes a visitor makes (ratings, attempts), counted in the bank.

A sliding window per visitor: at most `limit` writes in `window_s` seconds. The count comes from the ratings
and attempts tables themselves (`repository.recent_activity`), so every replica sharing the bank enforces one
limit and a restart forgets nothing. A rating that updates an earlier one counts from its update. Writes that
race past the check at the very same moment can overshoot the limit by the number of concurrent requests.
A refusal says what the limit is and when to try again.

Per-visitor limits vanish when a caller drops or forges its id, so the same writes are also counted per client
address (`client_address`, with a set number of trusted proxy hops), in memory (`Window`): ratings and answers
per minute, new visitor ids, upload bytes and submissions per hour, and places in the queue. `ClientLimits`
holds one app's windows; app.gate applies them to each request. Each replica counts its own clients.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

RATINGS_PER_MINUTE = 60
ATTEMPTS_PER_MINUTE = 60


class RateLimited(ValueError):
    """Too many writes from one visitor; the message says the limit and when to try again."""


def _utc_now() -> datetime:
    from puzzles.bank.models import utc_now

    return utc_now()


class BankLimiter:
    """At most `limit` writes of kind `what` ("ratings" or "attempts") per visitor in `window_s` seconds."""

    def __init__(self, what: str, limit: int, window_s: float = 60.0, clock: Callable[[], datetime] = _utc_now):
        self.what = what
        self.limit = limit
        self.window_s = window_s
        self._clock = clock

    def check(self, bank: Any, visitor: str) -> None:
        """Raise RateLimited when `visitor` already made `limit` writes in the window; the write itself counts
        once it is stored."""
        from puzzles.bank.repository import recent_activity

        now = self._clock()
        activity = recent_activity(bank, visitor, self.what, self.window_s, now=now)
        if activity.count < self.limit:
            return
        age = (now - (activity.oldest or now)).total_seconds()
        wait = max(1, int(self.window_s - age + 0.999))
        raise RateLimited(f"too many {self.what}: at most {self.limit} per {self.window_s:g} s "
                          f"for one visitor; try again in {wait} s")


ratings = BankLimiter("ratings", RATINGS_PER_MINUTE)
attempts = BankLimiter("attempts", ATTEMPTS_PER_MINUTE)


MAX_CLIENTS = 10_000  # addresses remembered per window; the least recently seen are forgotten first
EVENT_BODY_BYTES = 1024**2  # an event call carries ids, text and numbers; files go through /upload
WRITE_EVENTS = ("rate", "attempt", "challenge_answer", "grid_check")  # events that store a rating or an answer
SUBMIT_EVENTS = ("submit",)


class Window:
    """At most `limit` units per key in any `window_s` seconds, counted in memory under one lock (a check and
    its count are one step), for at most MAX_CLIENTS keys."""

    def __init__(self, what: str, limit: int, window_s: float, unit: int = 1, unit_name: str = "",
                 clock: Callable[[], float] = time.monotonic):
        self.what, self.limit, self.window_s = what, limit, window_s
        self.unit, self.unit_name = unit, unit_name
        self._clock = clock
        self._lock = threading.Lock()
        self._spent: OrderedDict[str, deque[tuple[float, int]]] = OrderedDict()

    def take(self, key: str, amount: int = 1) -> int:
        """Count `amount` for `key` and return what was counted before, or raise RateLimited (counting nothing)
        when it would pass the limit."""
        now = self._clock()
        with self._lock:
            spent = self._spent.pop(key, None) or deque()
            while spent and now - spent[0][0] >= self.window_s:
                spent.popleft()
            used = sum(units for _, units in spent)
            self._spent[key] = spent
            while len(self._spent) > MAX_CLIENTS:
                self._spent.popitem(last=False)
            if used + amount > self.limit * self.unit:
                wait = max(1, int(self.window_s - (now - spent[0][0]) + 0.999)) if spent else int(self.window_s)
                raise RateLimited(f"too many {self.what} from your address: at most {self.limit}{self.unit_name} "
                                  f"per {_span(self.window_s)}; try again in {wait} s")
            spent.append((now, amount))
            return used

    def give_back(self, key: str) -> None:
        """Undo the latest `take` of `key` (what it counted turned out not to count, e.g. a good login)."""
        with self._lock:
            spent = self._spent.get(key)
            if spent:
                spent.pop()


def _span(seconds: float) -> str:
    return "hour" if seconds == 3600 else "minute" if seconds == 60 else f"{seconds:g} s"


def client_address(scope: dict[str, Any], trusted_proxies: int) -> str:
    """The caller's address: the TCP peer, or with `trusted_proxies` proxies in front the address the outermost
    trusted one saw (counted from the right of X-Forwarded-For; entries further left are the client's word)."""
    peer = (scope.get("client") or ("unknown", 0))[0]
    if trusted_proxies <= 0:
        return peer
    forwarded = ",".join(value.decode("latin-1") for name, value in scope.get("headers", ())
                         if name == b"x-forwarded-for")
    chain = [hop.strip() for hop in forwarded.split(",") if hop.strip()] + [peer]
    return chain[-(trusted_proxies + 1)] if len(chain) > trusted_proxies else chain[0]


@dataclass
class ClientLimits:
    """One app's limits per client address (settings in app.settings, described in docs/security.md)."""

    trusted_proxies: int
    max_request_bytes: int
    queue_places: int
    writes: Window
    new_visitors: Window
    uploads: Window
    submissions: Window

    @classmethod
    def from_settings(cls, settings: Any) -> ClientLimits:
        mb = 1024**2
        return cls(
            trusted_proxies=settings.trusted_proxies,
            max_request_bytes=settings.max_request_mb * mb,
            queue_places=settings.queue_places,
            writes=Window("ratings and answers", settings.writes_per_minute, 60),
            new_visitors=Window("new visitor ids", settings.new_visitors_per_hour, 3600),
            uploads=Window("uploads", settings.upload_mb_per_hour, 3600, unit=mb, unit_name=" MB"),
            submissions=Window("submissions", settings.submissions_per_hour, 3600),
        )

    def check_event(self, client: str, api_name: str | None, new_visitor: bool, places_taken: int) -> None:
        """RateLimited when this client may not start the event now."""
        if places_taken >= self.queue_places:
            raise RateLimited(f"too many requests from your address in the queue (at most {self.queue_places} "
                              "at once); wait for them to finish")
        if new_visitor:
            self.new_visitors.take(client)
        if api_name in WRITE_EVENTS:
            self.writes.take(client)
        elif api_name in SUBMIT_EVENTS:
            self.submissions.take(client)


def places_taken(events: Iterable[Any], client: str, trusted_proxies: int) -> int:
    """How many of the queue's events (waiting or running) came from `client`."""
    count = 0
    for event in events:
        request = getattr(event, "request", None)
        scope = getattr(request, "scope", None)
        if scope is not None and client_address(scope, trusted_proxies) == client:
            count += 1
    return count
