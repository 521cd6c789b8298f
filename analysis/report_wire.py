"""Report sections on the wire: transfers (wire vs SuperNode log) and bytes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from analysis.damage import TRANSFERS, Damage
from analysis.html import MAX_LISTED, folded
from analysis.html import fmt as _fmt
from analysis.html import note as _note
from analysis.html import table as _table
from analysis.results_files import read_csv_table
from analysis.summary import network_order

TRANSFER_COLUMNS = (
    "node",
    "round",
    "message_type",
    "direction",
    "wire_s",
    "log_s",
    "diff_s",
    "diff_pct",
    "disagrees",
    "retransmissions",
    "goodput_mbit",
)


# Shown beside wire_s when transfers.csv has them (a capture on the node's side).
NODE_SIDE_TRANSFER_COLUMNS = ("node_wire_s", "side_diff_s")


BYTE_COLUMNS = ("flower_bytes", "wire_bytes", "nic_bytes", "overhead")


def read_csv(
    path: Path,
    required: Sequence[str],
    damage: Damage | None = None,
    affects: Sequence[str] = (TRANSFERS,),
) -> tuple[pd.DataFrame | None, str]:
    """A CSV with ``required`` columns, or None and a note saying what is wrong.

    One that is there but unreadable is recorded in ``damage``.
    """
    return read_csv_table(path, required, damage, affects)


def _as_bool(values: pd.Series) -> pd.Series:
    if values.dtype == bool:
        return values
    text = values.astype(str).str.strip().str.lower()
    return text.isin(("true", "1", "yes"))


def transfers_section(results_dir: Path, damage: Damage | None = None) -> str:
    table, problem = read_csv(results_dir / "transfers.csv", TRANSFER_COLUMNS, damage)
    if table is None:
        return _note(problem)
    disagrees = table[_as_bool(table["disagrees"])]
    labels = [c for c in ("run_id", "network") if c in table.columns]
    columns = [*labels]
    for c in TRANSFER_COLUMNS:
        if c != "disagrees":
            columns.append(c)
        if c == "wire_s":
            columns += [n for n in NODE_SIDE_TRANSFER_COLUMNS if n in table.columns]
    diff = pd.to_numeric(table["diff_s"], errors="coerce").abs()
    summary = (
        f"<p>{len(disagrees)} of {len(table)} transfers disagree between the wire "
        "(captured payload bytes) and the SuperNode's log window; median "
        f"|wire − log| {_fmt(float(diff.median()))} s.</p>"
    ) + _node_side_summary(table)
    if disagrees.empty:
        return summary
    shown = disagrees.head(MAX_LISTED)
    rows = [
        [_transfer_cell(c, v) for c, v in zip(columns, record, strict=True)]
        for record in shown[columns].to_numpy().tolist()
    ]
    more = len(disagrees) - len(shown)
    return (
        summary
        + folded(
            "The disagreeing transfers",
            _table(columns, rows, numeric=lambda j: j >= len(labels) + 4),
            len(rows),
        )
        + (_note(f"{more} more disagreeing transfers not listed.") if more else "")
    )


def _node_side_summary(table: pd.DataFrame) -> str:
    """What the capture on the nodes' own interfaces saw, when there was one."""
    if not set(NODE_SIDE_TRANSFER_COLUMNS) <= set(table.columns):
        return ""
    seen = pd.to_numeric(table["node_wire_s"], errors="coerce").notna()
    if not seen.any():
        return _note(
            "No transfer was seen by a capture on the node's own interface "
            "(node_wire_s is empty): node-side capture off or lost."
        )
    side = pd.to_numeric(table.loc[seen, "side_diff_s"], errors="coerce").abs()
    return (
        f"<p>The nodes' own interfaces saw {int(seen.sum())} of {len(table)} "
        f"transfers; median |node − server| duration {_fmt(float(side.median()))} s, "
        f"largest {_fmt(float(side.max()))} s (side_diff_s = node_wire_s − wire_s; "
        "a queue growing between the two capture points during a transfer makes "
        "it positive for a downlink, negative for an uplink: docs/anatomy.md).</p>"
    )


def _transfer_cell(column: str, value: object) -> str:
    if column == "diff_pct" and isinstance(value, float):
        return _fmt(value, 1)
    return _fmt(value)


def bytes_csv_section(results_dir: Path, damage: Damage | None = None) -> str:
    table, problem = read_csv(results_dir / "bytes.csv", (), damage, ("bytes table",))
    if table is None:
        return _note(problem)
    metrics = [c for c in BYTE_COLUMNS if c in table.columns]
    keys = [c for c in ("network", "message_type", "direction") if c in table.columns]
    if not metrics:
        return _note(f"bytes.csv has none of the columns {list(BYTE_COLUMNS)}.")
    notes = "" if "network" in keys else _note("bytes.csv has no network column.")
    values = table[metrics].apply(pd.to_numeric, errors="coerce")
    if keys:
        frame = pd.concat([table[keys].astype(str), values], axis=1)
        grouped = frame.groupby(keys, sort=True)
        medians = grouped[metrics].median()
        medians["n"] = grouped.size()
        medians = medians.reset_index()
    else:
        medians = values.median().to_frame().T
        medians["n"] = len(table)
    if "network" in keys:
        order = {n: i for i, n in enumerate(network_order(medians["network"]))}
        position = medians["network"].map(order)
        medians = medians.assign(_o=position).sort_values("_o", kind="stable")
    rows = [
        [*(r[k] for k in keys), *(_bytes_cell(m, r[m]) for m in metrics), r["n"]]
        for r in medians.to_dict("records")
    ]
    headers = [*keys, *(f"median {m}" for m in metrics), "n"]
    return (
        folded(
            "Median bytes per message",
            _table(headers, rows, numeric=lambda j: j >= len(keys)),
            len(rows),
        )
        + notes
        + _note(
            "flower_bytes: Flower's count_bytes() of the message content; "
            "wire_bytes: TCP payload captured; nic_bytes: the NIC counters' bytes "
            "(headers and other traffic included); overhead as bytes.csv defines it."
        )
    )


def _bytes_cell(metric: str, value: object) -> str:
    if metric == "overhead":
        return _fmt(value)
    if isinstance(value, float) and value == value:
        return f"{value:,.0f}"
    return "–"
