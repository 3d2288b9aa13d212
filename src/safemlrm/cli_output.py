"""Tables for people, JSON and CSV for scripts: the one way every command prints rows.

A terminal table never cuts a cell: an identifier a user must type (a card name, a judge label) is
shown whole. Columns are kept left to right while their narrowest readable width fits the terminal
(80 columns when piped); the rest are left out with a note naming them and `--format json` / `csv`,
which always carry everything. Cells are plain text, never Rich markup (names come from data).
"""
from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text

from .errors import SafeMLRMError

FORMATS = ("table", "json", "csv")
_WIDE_CELL = 40  # a cell longer than this may wrap (prose); shorter ones are identifiers kept on one line


def check_format(fmt: str, formats: Sequence[str] = FORMATS) -> str:
    if fmt not in formats:
        raise SafeMLRMError(f"--format must be one of {', '.join(formats)}, not {fmt!r}")
    return fmt


def _min_width(header: str, cells: list[str]) -> int:
    words = [w for w in header.split()] or [""]
    need = max(len(w) for w in words)
    for c in cells:
        longest = max((len(w) for w in c.split()), default=0)
        need = max(need, len(c) if len(c) <= _WIDE_CELL else min(longest, _WIDE_CELL))
    return need


def fit_columns(columns: list[str], rows: list[list[str]], width: int) -> list[int]:
    """Indices of the columns that fit `width` (the first is always kept)."""
    kept: list[int] = []
    used = 1  # the table's left border
    for i, col in enumerate(columns):
        w = _min_width(col, [r[i] for r in rows]) + 3  # padding and border
        if kept and used + w > width:
            break
        kept.append(i)
        used += w
    return kept


def render_table(console: Console, title: str, columns: list[str], rows: list[list[Any]], note: str = "",
                 justify: dict[str, JustifyMethod] | None = None) -> None:
    cells = [["" if v is None else str(v) for v in r] for r in rows]
    kept = fit_columns(columns, cells, console.width)
    t = Table(title=title or None, title_justify="left")
    for i in kept:
        t.add_column(columns[i], overflow="fold", justify=(justify or {}).get(columns[i], "left"),
                     min_width=min(_min_width(columns[i], [r[i] for r in cells]), console.width - 4))
    for r in cells:
        t.add_row(*(Text(r[i]) for i in kept))
    if not cells:
        t.add_row(*(Text("-") for _ in kept))
    console.print(t)
    left_out = [columns[i] for i in range(len(columns)) if i not in kept]
    if left_out:
        console.print(Text(f"left out to fit {console.width} columns: {', '.join(left_out)} "
                           f"(widen the terminal, or use --format json or csv)", style="dim"))
    if note:
        console.print(Text(note, style="dim"))


def emit(console: Console, fmt: str, title: str, columns: list[str], rows: list[list[Any]], note: str = "") -> None:
    """Rows as a table on `console`, or as JSON (a list of objects) or CSV (with its header) on stdout."""
    if fmt == "json":
        sys.stdout.write(json.dumps([dict(zip(columns, r)) for r in rows], ensure_ascii=False, indent=1) + "\n")
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(columns)
        w.writerows(["" if v is None else v for v in r] for r in rows)
        sys.stdout.write(buf.getvalue())
    else:
        render_table(console, title, columns, rows, note)


def emit_sections(console: Console, fmt: str, sections: list[tuple[str, str, list[str], list[list[Any]]]]) -> None:
    """Several tables (name, title, columns, rows): one JSON object of row lists, CSV sections each
    after a `# name` line, or one terminal table each."""
    if fmt == "json":
        doc = {name: [dict(zip(cols, r)) for r in rows] for name, _, cols, rows in sections}
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
        return
    for i, (name, title, cols, rows) in enumerate(sections):
        if fmt == "csv":
            sys.stdout.write(("\n" if i else "") + f"# {name}\n")
        emit(console, fmt, title, cols, rows)
