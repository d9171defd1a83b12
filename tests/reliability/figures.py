"""Figures the reliability tests collect, printed as one summary line at the end of the run (conftest.py)."""
from __future__ import annotations

from typing import Any

FIGURES: dict[str, Any] = {"cases_tried": 0, "cases_passed": 0, "requests": 0, "errors": 0, "refused_busy": 0,
                           "lost_writes": 0, "acknowledged_writes": 0, "server_paths_tried": 0,
                           "server_paths_refused": 0, "limit_bypasses_tried": 0, "limit_bypasses_held": 0,
                           "curator_fetches_tried": 0, "curator_fetches_refused": 0}


def add(**counts: int) -> None:
    for name, value in counts.items():
        FIGURES[name] = FIGURES.get(name, 0) + value


def summary_line() -> str:
    f = FIGURES
    return (f"reliability: cases tried {f['cases_tried']} / passed {f['cases_passed']}, requests {f['requests']}, "
            f"errors {f['errors']}, busy refusals {f['refused_busy']}, acknowledged writes "
            f"{f['acknowledged_writes']}, lost writes {f['lost_writes']}, server paths tried "
            f"{f['server_paths_tried']} / refused {f['server_paths_refused']}, limit bypasses tried "
            f"{f['limit_bypasses_tried']} / held {f['limit_bypasses_held']}, curator-file fetches tried "
            f"{f['curator_fetches_tried']} / refused {f['curator_fetches_refused']}")
