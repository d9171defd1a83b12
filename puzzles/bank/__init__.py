"""The puzzle bank: puzzles, images, ratings, attempts and curators in one SQL database.

The app talks to the bank only through the verb-named functions of `puzzles.bank.repository` and
`puzzles.bank.accounts`; each call is one short transaction and returns plain values, never ORM objects.
"""

from __future__ import annotations

from puzzles.bank.db import Bank, connect

__all__ = ["Bank", "connect"]
