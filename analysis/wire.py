"""What carried each message, checked: capture against the SuperNode, bytes by view.

Each message is matched with the SuperNode log window and the captured bursts
that carried it in analysis/matching.py (re-exported here). On top of the
matches, :func:`reconcile_transfers` sets the capture's view of each transfer
beside the SuperNode's and flags where they disagree, adds what the capture on
the node's own interface saw (``node_transfer``), and :func:`byte_accounting`
sets Flower's byte count beside the wire's and the NIC counters'.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from analysis.clocks import NodeClock, clock_from_record, node_clocks
from analysis.matching import CLIENT_PHASES as CLIENT_PHASES
from analysis.matching import DIRECTIONS as DIRECTIONS
from analysis.matching import EDGE_NOISE_SHARE as EDGE_NOISE_SHARE
from analysis.matching import LONE_GAP_NS as LONE_GAP_NS
from analysis.matching import MIN_WIRE_SHARE as MIN_WIRE_SHARE
from analysis.matching import WINDOW_SLACK_NS as WINDOW_SLACK_NS
from analysis.matching import Burst as Burst
from analysis.matching import Stamp as Stamp
from analysis.matching import TransferMatch as TransferMatch
from analysis.matching import Window as Window
from analysis.matching import bursts as bursts
from analysis.matching import match_transfers as match_transfers
from analysis.matching import message_category as message_category
from analysis.matching import node_bursts as node_bursts
from analysis.matching import optional_int as optional_int
from analysis.matching import stamps as stamps
from analysis.matching import transfer_matches as transfer_matches
from analysis.matching import windows as windows
from analysis.system import bytes_between
from instrumentation.link_pace import LinkPace
from instrumentation.schema import EventKind

# --- capture against the SuperNode's view -----------------------------------------

RECONCILE_DTYPES = {
    "run_id": "str",
    "network": "str",
    "node": "str",
    "round": "int64",
    "message_type": "str",
    "message_id": "str",
    "direction": "str",
    "message_bytes": "Int64",
    "wire_start_ns": "Int64",
    "wire_end_ns": "Int64",
    "wire_s": "float64",
    "wire_bytes": "Int64",
    "node_wire_start_ns": "Int64",
    "node_wire_end_ns": "Int64",
    "node_wire_s": "float64",
    "node_wire_bytes": "Int64",
    "side_diff_s": "float64",
    "log_start_ns": "Int64",
    "log_end_ns": "Int64",
    "log_s": "float64",
    "diff_s": "float64",
    "diff_pct": "float64",
    "disagrees": "boolean",
    "bursts": "int64",
    "packets": "Int64",
    "retransmissions": "Int64",
    "goodput_mbit": "float64",
    "busy_s": "float64",
    "gaps_s": "float64",
}


def _sum_known(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _node_side(
    m: TransferMatch, wire: tuple[int, int, int | None] | None, seen: Sequence[Burst]
) -> tuple[int, int, int] | None:
    """(start_ns, end_ns, bytes) of the node-side bursts of the match's node and
    direction that overlap the server-side wire interval (else the SuperNode
    window) widened by WINDOW_SLACK_NS; None when there are none.

    The slack keeps a short message whose two sides are one one-way delay apart
    (a few ms on a real link) from missing its node-side burst.
    """
    if wire is not None:
        lo, hi = wire[0], wire[1]
    elif m.window is not None:
        lo, hi = m.window.start_ns, m.window.end_ns
    else:
        return None
    lo, hi = lo - WINDOW_SLACK_NS, hi + WINDOW_SLACK_NS
    hits = [
        b
        for b in seen
        if b.node == m.stamp.node
        and b.direction == m.direction
        and b.start_ns <= hi
        and b.end_ns >= lo
    ]
    if not hits:
        return None
    return (
        min(b.start_ns for b in hits),
        max(b.end_ns for b in hits),
        sum(b.bytes for b in hits),
    )


def _link_busy_ns(carried: Sequence[Burst]) -> int | None:
    """The link-busy time of one message: its bursts' own, plus the part of each
    pause between two bursts that the link still owed (LinkPace, without the
    round-trip allowance the capture applies inside a burst). None when a burst
    was captured before link-busy time was recorded."""
    if any(t.busy_ns is None for t in carried):
        return None
    ordered = sorted(carried, key=lambda t: t.start_ns)
    busy = sum(t.busy_ns or 0 for t in ordered)
    pace = LinkPace()
    end_ns, owed_ns = None, None
    for t in ordered:
        if end_ns is not None and owed_ns is not None and t.start_ns > end_ns:
            busy += pace.busy_part_ns(t.start_ns - end_ns, owed_ns)
        if end_ns is None or t.end_ns >= end_ns:
            end_ns, owed_ns = t.end_ns, t.owed_ns
    return busy


def _reconciled(
    run: tuple[str, str],
    m: TransferMatch,
    seen_at_node: Sequence[Burst],
    threshold_s: float,
    threshold_share: float,
) -> dict[str, Any]:
    wire = m.span if m.complete else None
    wire_s = None if wire is None else (wire[1] - wire[0]) / 1e9
    node = _node_side(m, wire, seen_at_node)
    node_s = None if node is None else (node[1] - node[0]) / 1e9
    log_s = None if m.window is None else (m.window.end_ns - m.window.start_ns) / 1e9
    diff_s = None if wire_s is None or log_s is None else log_s - wire_s
    disagrees = None
    if diff_s is not None and wire_s is not None:
        disagrees = abs(diff_s) > max(threshold_s, threshold_share * wire_s)
    carried = m.bursts if m.complete else ()
    wire_bytes = None if wire is None else wire[2]
    goodput = None
    if wire_s and wire_bytes is not None:
        goodput = wire_bytes * 8 / wire_s / 1e6
    busy = _link_busy_ns(carried)
    busy_s = None if busy is None or wire_s is None else busy / 1e9
    return {
        "run_id": run[0],
        "network": run[1],
        "node": m.stamp.node,
        "round": m.stamp.round,
        "message_type": m.stamp.message_type,
        "message_id": m.stamp.message_id,
        "direction": m.direction,
        "message_bytes": m.message_bytes,
        "wire_start_ns": None if wire is None else wire[0],
        "wire_end_ns": None if wire is None else wire[1],
        "wire_s": wire_s,
        "wire_bytes": wire_bytes,
        "node_wire_start_ns": None if node is None else node[0],
        "node_wire_end_ns": None if node is None else node[1],
        "node_wire_s": node_s,
        "node_wire_bytes": None if node is None else node[2],
        "side_diff_s": None if node_s is None or wire_s is None else node_s - wire_s,
        "log_start_ns": None if m.window is None else m.window.start_ns,
        "log_end_ns": None if m.window is None else m.window.end_ns,
        "log_s": log_s,
        "diff_s": diff_s,
        "diff_pct": None if diff_s is None or not wire_s else 100 * diff_s / wire_s,
        "disagrees": disagrees,
        "bursts": len(carried),
        "packets": _sum_known(t.packets for t in carried),
        "retransmissions": _sum_known(t.retransmissions for t in carried),
        "goodput_mbit": goodput,
        "busy_s": busy_s,
        "gaps_s": None if busy_s is None or wire_s is None else wire_s - busy_s,
    }


def reconcile_transfers(
    events: Sequence[Mapping[str, Any]],
    threshold_s: float = 0.02,
    threshold_share: float = 0.05,
) -> pd.DataFrame:
    """Per message transfer of one run: the capture's and the SuperNode's durations.

    One row per stamp and direction that has a capture or a log window. ``wire_*``
    come from the captured bursts (server clock; null unless they add up to the
    message), ``log_*`` from the SuperNode log window (mapped to the server
    clock). ``diff_s`` = log - wire, ``diff_pct`` = 100 * diff / wire, and
    ``disagrees`` = ``|diff_s| > max(threshold_s, threshold_share * wire_s)``
    (null when one side is missing). ``packets`` and ``retransmissions`` sum the
    capture's bursts; ``goodput_mbit`` = wire bytes * 8 / wire seconds / 1e6.

    ``node_wire_*`` come from the capture on the node's own interface
    (``node_transfer``, mapped to the server clock with the run's ``clock``
    estimates): the node's bursts of that direction that overlap the
    server-side wire interval (without one, the SuperNode window) widened by
    ``WINDOW_SLACK_NS``; ``side_diff_s`` = node_wire_s - wire_s. All null when
    the node side was not captured.
    """
    if threshold_s < 0 or threshold_share < 0:
        raise ValueError(
            f"thresholds must be >= 0, got threshold_s={threshold_s}, "
            f"threshold_share={threshold_share}"
        )
    run_id = next((str(e["run_id"]) for e in events if e.get("run_id")), "")
    network = next(
        (
            str(e["network"])
            for e in events
            if e.get("event") in (EventKind.RUN_START, EventKind.TRANSFER)
            and e.get("network")
        ),
        "",
    )
    seen_at_node = node_bursts(events, node_clocks(events))
    rows = [
        _reconciled((run_id, network), m, seen_at_node, threshold_s, threshold_share)
        for m in transfer_matches(events)
        if m.complete or m.window is not None
    ]
    df = pd.DataFrame.from_records(rows, columns=list(RECONCILE_DTYPES))
    return df.astype(RECONCILE_DTYPES)


# --- bytes: Flower, wire, NIC -----------------------------------------------------

ACCOUNTING_DTYPES = {
    "run_id": "str",
    "network": "str",
    "round": "int64",
    "node": "str",
    "message_type": "str",
    "message_id": "str",
    "direction": "str",
    "source": "str",
    "start_ns": "int64",
    "end_ns": "int64",
    "flower_bytes": "Int64",
    "wire_bytes": "Int64",
    "nic_bytes": "float64",
    "overhead": "float64",
    "nic_overhead": "float64",
    "nic_note": "str",
}
# The node's NIC counter that carried each direction.
_NIC_DIRECTION = {"down": "recv", "up": "sent"}


def _ratio_minus_one(part: object, whole: object) -> float:
    if pd.isna(part) or pd.isna(whole) or not whole:  # type: ignore[call-overload]
        return math.nan
    return float(part) / float(whole) - 1  # type: ignore[arg-type]


def _node_clocks(phases: pd.DataFrame) -> dict[tuple[str, str], NodeClock]:
    """(run, node) -> its clock correction, rebuilt from ``phases.attrs["clock"]``."""
    return {
        (str(r["run_id"]), str(r["node"])): clock_from_record(r)
        for r in phases.attrs.get("clock", [])
    }


def _nic_bytes(
    system: pd.DataFrame | None,
    nics: Mapping[str, str],
    row: Mapping[str, Any],
    clock: NodeClock | None,
) -> tuple[float, str]:
    """NIC bytes of the row's node over its interval, or NaN and why not."""
    node = str(row["node"])
    if system is None:
        return math.nan, "no system table"
    if node not in nics:
        return math.nan, f"no NIC given for node {node!r}"
    table = system
    if "run_id" in system.columns:
        table = system[system["run_id"] == row["run_id"]]
    start, end = int(row["start_ns"]), int(row["end_ns"])
    if clock is not None and clock.known:
        start, end = clock.to_node(start), clock.to_node(end)
    direction = _NIC_DIRECTION[str(row["direction"])]
    try:
        return bytes_between(table, node, nics[node], start, end, direction), ""
    except ValueError as exc:
        return math.nan, str(exc)


def byte_accounting(
    phases: pd.DataFrame,
    system_table: pd.DataFrame | None,
    nics: Mapping[str, str] | None = None,
    *,
    node_clock: bool = True,
) -> pd.DataFrame:
    """Per downlink/uplink row of a phase table: Flower's, the wire's, the NIC's bytes.

    ``flower_bytes`` is Flower's ``count_bytes()`` of the content
    (``message_bytes``), ``wire_bytes`` the captured TCP payload (``bytes``;
    null for a row from the SuperNode log), ``nic_bytes`` what the node's NIC
    (``nics[node]``) counted in that direction over the row's interval
    (:func:`analysis.system.bytes_between`; NaN with ``nic_note`` saying why
    when there is no system table, no NIC for the node, or no samples around
    the interval). ``overhead`` = wire / Flower - 1 (gRPC, protobuf, HTTP/2
    framing), ``nic_overhead`` = NIC / Flower - 1 (adds TCP/IP headers, ACKs
    and whatever else the node sent or received meanwhile).

    The system samples are stamped on the node's clock: with ``node_clock`` the
    interval (server clock) is mapped back to it with the correction in
    ``phases.attrs["clock"]``. Pass ``node_clock=False`` when the samples are
    on the server's clock (an emulated node whose offset is only injected into
    the instrumentation's stamps).
    """
    moved = phases[phases["phase"].isin(("downlink", "uplink"))]
    clocks = _node_clocks(phases) if node_clock else {}
    rows = []
    for raw in moved.to_dict("records"):
        row = {str(k): v for k, v in raw.items()}
        direction = "down" if row["phase"] == "downlink" else "up"
        record = {**row, "direction": direction}
        clock = clocks.get((str(row["run_id"]), str(row["node"])))
        nic, note = _nic_bytes(system_table, nics or {}, record, clock)
        rows.append(
            {
                "run_id": row["run_id"],
                "network": row["network"],
                "round": row["round"],
                "node": row["node"],
                "message_type": row["message_type"],
                "message_id": row.get("message_id", ""),
                "direction": direction,
                "source": row["source"],
                "start_ns": row["start_ns"],
                "end_ns": row["end_ns"],
                "flower_bytes": row["message_bytes"],
                "wire_bytes": row["bytes"],
                "nic_bytes": nic,
                "overhead": _ratio_minus_one(row["bytes"], row["message_bytes"]),
                "nic_overhead": _ratio_minus_one(nic, row["message_bytes"]),
                "nic_note": note,
            }
        )
    df = pd.DataFrame.from_records(rows, columns=list(ACCOUNTING_DTYPES))
    return df.astype(ACCOUNTING_DTYPES)
