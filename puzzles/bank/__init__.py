"""The puzzle bank: puzzles, images, ratings, attempts and curators in one SQL database.

The app talks to the bank through the verb-named functions of `puzzles.bank.repository`, and the curator
pages through the rooms of their own jobs: `accounts` (curator accounts), `backup` (backups and restores),
`stats` (curator statistics and their plots) and `drafts` (generating puzzles as drafts). Each call is one
short transaction and returns plain values, never ORM objects.
"""

from __future__ import annotations

from puzzles.bank.db import Bank, connect

__all__ = ["Bank", "connect"]
