"""The error policy of every `python -m puzzles ...` and `python -m engine.<tool>` command.

Exit status:
- 0 (EXIT_OK): the command did its job;
- 1 (EXIT_FAILURE): it failed on what it was given - a missing or unreadable file, a bad pack or bundle,
  a name that is not there, a value out of range - and says so in one line `PROG: error: MESSAGE` on stderr;
  `validate` also exits 1 when it finds problems;
- 2 (EXIT_USAGE): the command line itself is wrong (argparse says why, in the same shape).
Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
# What bad input raises here: our own errors derive from these (PackError, BundleError, NotFoundError, ...)
EXPECTED_ERRORS = (ValueError, LookupError, OSError)


def report(prog: str, error: BaseException) -> None:
    """One line on stderr, however many lines the error's message has."""
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"{prog}: error: {message}", file=sys.stderr)


def run(body: Callable[[], object], prog: str) -> int:
    """Run a command's body; returns its exit status (a non-int result counts as success)."""
    try:
        status = body()
    except EXPECTED_ERRORS as error:
        report(prog, error)
        return EXIT_FAILURE
    return status if isinstance(status, int) else EXIT_OK


def main_exit(main: Callable[[], object], prog: str) -> None:
    """`if __name__ == "__main__":` of a command: run `main` and exit with the policy's status."""
    sys.exit(run(main, prog))
