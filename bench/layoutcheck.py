"""Issue #30's comparisons, read off one run's rows: what the reading order costs on
zoned pages (whole page against zone by zone, the same pages and boxes), and what a
turned page costs (a `SET-rotN` set against the upright `SET`, same runner)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bench.report import OK, Row

TURNED = re.compile(r"(?P<source>.+)-rot(?P<angle>\d+)")


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def layout_notes(rows: Sequence[Row]) -> list[str]:
    """One line per zoned set and per turned set, for every runner that read it."""
    scored = {(r.runner, r.set): r for r in rows if r.status == OK and r.cer is not None}
    notes = []
    for (runner, name), row in scored.items():
        if row.cer_whole_page is not None:
            delta = 100 * (row.cer_whole_page - row.cer)
            notes.append(
                f"{name} / {runner}: whole page {_pct(row.cer_whole_page)} against "
                f"{_pct(row.cer)} zone by zone ({delta:+.2f} points)"
            )
        turned = TURNED.fullmatch(name)
        upright = turned and scored.get((runner, turned.group("source")))
        if upright:
            delta = 100 * (row.cer - upright.cer)
            notes.append(
                f"{name} / {runner}: {_pct(row.cer)} against {_pct(upright.cer)} upright "
                f"({delta:+.2f} points)"
            )
    return notes
