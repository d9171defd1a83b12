"""The ranking chart: one bar per candidate, its probability among the candidates, coloured by role.

Plain HTML rather than a plot component: every chart is drawn from scratch, so colours and the legend can
never carry over from an earlier one, and it reads the same on a phone.
"""
from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

COLOURS = {"answer": "#1f9d55", "pick": "#e8590c", "other": "#98a2b3"}
LEGEND = {"answer": "the answer", "pick": "the model's pick", "other": "other candidates"}


def _legend(roles: set[str]) -> str:
    items = "".join(
        f"<span class='gelato-legend-item' data-role='{role}'><span class='gelato-swatch' "
        f"style='background:{COLOURS[role]}'></span>{LEGEND[role]}</span>"
        for role in COLOURS if role in roles
    )
    return f"<div class='gelato-legend'>{items}</div>"


def _bar(row: Mapping[str, Any]) -> str:
    percent = 100.0 * row["probability"]
    note = " · the model's pick" if row["picked"] else ""
    tooltip = (f"Candidate #{row['candidate']}: {percent:.1f}% of the probability among the candidates{note} "
               f"(log-likelihood {row['score']:.1f})")
    return (
        f"<div class='gelato-bar-row' data-candidate='{row['candidate']}' data-role='{row['role']}' "
        f"data-picked='{str(row['picked']).lower()}' title='{html.escape(tooltip, quote=True)}'>"
        f"<span class='gelato-bar-label'>#{row['candidate']}</span>"
        f"<span class='gelato-bar-track'><span class='gelato-bar' style='width:{max(percent, 0.5):.1f}%;"
        f"background:{COLOURS[row['role']]}'></span></span>"
        f"<span class='gelato-bar-value'>{percent:.0f}%{' ◀ pick' if row['picked'] else ''}</span></div>"
    )


def chart_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """The chart for `app.solving.ranking_rows` rows; an empty string when there is nothing to rank."""
    if not rows:
        return ""
    roles = {row["role"] for row in rows} | {"pick", "other"}
    bars = "".join(_bar(row) for row in rows)
    heading = "<div class='gelato-chart-title'>How likely each candidate is, says the model</div>"
    return f"<div class='gelato-ranking'>{heading}{_legend(roles)}{bars}</div>"
