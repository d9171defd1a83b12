"""Per-visitor rate limits for the writes a visitor makes (ratings, attempts), kept in this process.

A sliding window per key: at most `limit` events in `window_s` seconds. A refusal says what the limit is
and when to try again. The table of keys is pruned so a flood of fresh ids cannot grow it without bound.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

RATINGS_PER_MINUTE = 60
ATTEMPTS_PER_MINUTE = 60
MAX_KEYS = 100_000  # past this many tracked visitors, idle ones are dropped


class RateLimited(ValueError):
    """Too many writes from one visitor; the message says the limit and when to try again."""


class SlidingWindowLimiter:
    def __init__(self, what: str, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.what = what
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Count one event for `key`, or raise RateLimited when the window is already full."""
        now = self._clock()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and events[0] <= now - self.window_s:
                events.popleft()
            if len(events) >= self.limit:
                wait = max(1, int(events[0] + self.window_s - now + 0.999))
                raise RateLimited(f"too many {self.what}: at most {self.limit} per {self.window_s:g} s "
                                  f"for one visitor; try again in {wait} s")
            events.append(now)
            if len(self._events) > MAX_KEYS:
                self._prune(now)

    def _prune(self, now: float) -> None:
        idle = [key for key, events in self._events.items() if not events or events[-1] <= now - self.window_s]
        for key in idle:
            del self._events[key]

    def reset(self) -> None:
        with self._lock:
            self._events.clear()


ratings = SlidingWindowLimiter("ratings", RATINGS_PER_MINUTE)
attempts = SlidingWindowLimiter("attempts", ATTEMPTS_PER_MINUTE)
