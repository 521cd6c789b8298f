"""HTML pieces every report section is made of: escaped cells, tables, notes, figures.

Everything is inline (figures as data URIs), so a page made of these pieces reads
offline. A figure that cannot be drawn (its ``draw`` raises ValueError) becomes a
note, never a crash.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd


def esc(value: object) -> str:
    """``value`` as HTML text (``None`` as empty)."""
    return html.escape("" if value is None else str(value))


def fmt(value: object, digits: int = 3) -> str:
    """Numbers for tables: fixed decimals for floats, ``–`` for missing values."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if value is pd.NA:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    row_classes: Sequence[str] | None = None,
    numeric: Callable[[int], bool] = lambda _: False,
    table_id: str | None = None,
) -> str:
    """A ``<table>`` in a box that scrolls sideways: a header row, one row per item.

    Numbers (columns where ``numeric`` is true) are right-aligned.
    """
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells = "".join(
            f'<td class="num">{esc(v)}</td>' if numeric(j) else f"<td>{esc(v)}</td>"
            for j, v in enumerate(row)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    # A wide table scrolls inside its own box, never the page.
    return (
        f'<div class="wide"><table{ident}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def details(summary: str, body: str, open_: bool = False) -> str:
    """A folded ``<details>``: ``summary`` (text) shows, ``body`` (HTML) opens."""
    if not body:
        return ""
    state = " open" if open_ else ""
    return f"<details{state}><summary>{esc(summary)}</summary>{body}</details>"


def paragraph(text: str) -> str:
    """A plain paragraph of ``text``."""
    return f"<p>{esc(text)}</p>"


def note(text: str) -> str:
    """A paragraph in the note style (grey, italic)."""
    return f'<p class="note">{esc(text)}</p>'


def embed(png: Path, caption: str, figure_id: str | None = None) -> str:
    """A ``<figure>`` with ``png`` inlined as a data URI and its caption."""
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    ident = f' id="{esc(figure_id)}"' if figure_id else ""
    return (
        f'<figure{ident}><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def figure(
    draw: Callable[[], tuple[Path, Path]], caption: str, figure_id: str | None = None
) -> str:
    """Draw a figure (PNG and PDF) and embed its PNG; a ValueError becomes a note."""
    try:
        png, _ = draw()
    except ValueError as exc:
        return note(f"No figure: {exc}.")
    return embed(png, caption, figure_id)


def section(title: str, body: str, section_id: str | None = None) -> str:
    """A ``<section>`` with an ``<h2>`` title."""
    ident = f' id="{esc(section_id)}"' if section_id else ""
    return f"<section{ident}><h2>{esc(title)}</h2>{body}</section>"


def safe_name(text: str) -> str:
    """``text`` as a file-name part: anything but letters, digits, ``_.-`` to ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "unnamed"


# Rows a listing table shows at most (its CSV has them all; the count is complete).
MAX_LISTED = 200
# A table longer than this folds into <details> (its summary says how long).
FOLD_ROWS = 8


def folded(summary: str, body: str, rows: int) -> str:
    """``body`` as it is when it has at most :data:`FOLD_ROWS` rows, else folded."""
    return body if rows <= FOLD_ROWS else details(f"{summary} ({rows} rows)", body)
