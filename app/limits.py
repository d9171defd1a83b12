"""Per-visitor rate limits for the writes a visitor makes (ratings, attempts), counted in the bank.

A sliding window per visitor: at most `limit` writes in `window_s` seconds. The count comes from the ratings
and attempts tables themselves (`repository.recent_activity`), so every replica sharing the bank enforces one
limit and a restart forgets nothing. A rating that updates an earlier one counts from its update. Writes that
race past the check at the very same moment can overshoot the limit by the number of concurrent requests.
A refusal says what the limit is and when to try again.
"""
from __future__ import annotations

from collections.abc import Callable
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
