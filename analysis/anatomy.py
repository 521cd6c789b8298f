"""Round anatomy: each node's round tiled into phases that add up to its round time.

Two steps, both pure (docs/anatomy.md defines every phase):

1. **Clock correction** (analysis/clocks.py, whose names this module re-exports):
   every node-clock instant of a run mapped to the server clock.
2. **Tiling.** :func:`tile_node_round` splits a node's round, from the dispatch
   of its first message to the pickup of its last, into phases whose bounds
   follow each other (each start is the previous end), so their durations add up
   to the node's round time exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.clocks import CLOCK_COLUMNS as CLOCK_COLUMNS
from analysis.clocks import NODE_CLOCK as NODE_CLOCK
from analysis.clocks import SERVER_CLOCK as SERVER_CLOCK
from analysis.clocks import ClockPoint as ClockPoint
from analysis.clocks import NodeClock as NodeClock
from analysis.clocks import clock_frame as clock_frame
from analysis.clocks import clock_from_record as clock_from_record
from analysis.clocks import clock_records as clock_records
from analysis.clocks import clock_table as clock_table
from analysis.clocks import correct_events as correct_events
from analysis.clocks import node_clocks as node_clocks
from instrumentation.schema import EventKind

# Every phase a tiled node round can hold, in the order they follow each other.
ANATOMY_PHASES = (
    "dispatch_wait",
    "downlink",
    "client_startup",
    "training",
    "evaluation",
    "reply_handoff",
    "uplink",
    "pickup_wait",
    "server_other",
    "aggregation",
    "unresolved",
)
# Phases the tiling derives from the instants around them (not measured directly).
GAP_PHASES = (
    "dispatch_wait",
    "client_startup",
    "reply_handoff",
    "pickup_wait",
    "server_other",
    "unresolved",
)
SERVER_NODE = "server"
# Message categories that have phases ("" where an event names none).
ANATOMY_MESSAGE_TYPES = frozenset({"train", "evaluate", ""})
# The gap between two measured instants of one message, named by what bounds it.
_GAP_NAMES = {
    ("dispatch", "downlink"): "dispatch_wait",
    ("downlink", "handler"): "client_startup",
    ("handler", "uplink"): "reply_handoff",
    ("uplink", "pickup"): "pickup_wait",
}
ANATOMY_COLUMNS = {
    "run_id": "str",
    "round": "int64",
    "node": "str",
    "tiled": "bool",
    "round_start_ns": "Int64",
    "round_end_ns": "Int64",
    "note": "str",
}


def anatomy_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Tiling records (``df.attrs["anatomy"]``) as a typed table."""
    df = pd.DataFrame.from_records(list(records), columns=list(ANATOMY_COLUMNS))
    return df.astype(ANATOMY_COLUMNS)


# --- tiling -----------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """A measured phase of one message, its instants already on the server clock.

    ``clock`` says which clock the instants were read on (``server`` for the
    capture, ``node`` for the client mod and the SuperNode log); ``row`` is the
    caller's index of the phase's row, handed back in the :class:`Tile`.
    """

    phase: str
    start_ns: int
    end_ns: int
    source: str
    clock: str
    row: int

    def __post_init__(self) -> None:
        if self.clock not in (SERVER_CLOCK, NODE_CLOCK):
            raise ValueError(f"Span.clock must be 'server' or 'node': {self.clock!r}")


@dataclass(frozen=True)
class Trace:
    """Everything known about one message (instruction and reply) on one node."""

    node: str
    round: int
    message_type: str
    message_id: str
    dispatch_ns: int
    pickup_ns: int | None
    downlink: Span | None = None
    handler: Span | None = None
    uplink: Span | None = None


@dataclass(frozen=True)
class Tile:
    """One phase of a tiled node round. ``row`` is the measured span's, else None."""

    phase: str
    message_type: str
    message_id: str
    start_ns: int
    end_ns: int
    source: str
    uncertainty_s: float
    row: int | None


@dataclass(frozen=True)
class _Instant:
    """A bound of a phase: when, on which clock, and what it bounds."""

    kind: str
    at_ns: int
    clock: str


def _gap_uncertainty(a: _Instant, b: _Instant, node_uncertainty_s: float) -> float:
    return 0.0 if a.clock == b.clock else node_uncertainty_s


def _message_tiles(trace: Trace, pickup_ns: int, node_u: float) -> list[Tile]:
    """Dispatch -> pickup of one message: measured spans and the gaps between."""
    tiles: list[Tile] = []
    cursor = _Instant("dispatch", trace.dispatch_ns, SERVER_CLOCK)

    def gap(to: _Instant) -> None:
        name = _GAP_NAMES.get((cursor.kind, to.kind), "unresolved")
        tiles.append(
            Tile(
                name,
                trace.message_type,
                trace.message_id,
                cursor.at_ns,
                to.at_ns,
                "derived",
                _gap_uncertainty(cursor, to, node_u),
                None,
            )
        )

    for kind, span in (
        ("downlink", trace.downlink),
        ("handler", trace.handler),
        ("uplink", trace.uplink),
    ):
        if span is None:
            continue
        gap(_Instant(kind, span.start_ns, span.clock))
        tiles.append(
            Tile(
                span.phase,
                trace.message_type,
                trace.message_id,
                span.start_ns,
                span.end_ns,
                span.source,
                0.0,
                span.row,
            )
        )
        cursor = _Instant(kind, span.end_ns, span.clock)
    gap(_Instant("pickup", pickup_ns, SERVER_CLOCK))
    return tiles


def _between_tiles(
    after_ns: int, before_ns: int, aggregation: tuple[int, int] | None
) -> list[Tile]:
    """Pickup of one message -> dispatch of the next: aggregation and the rest."""

    def tile(phase: str, start: int, end: int, source: str) -> Tile:
        return Tile(phase, "", "", start, end, source, 0.0, None)

    if aggregation is not None:
        lo, hi = max(after_ns, aggregation[0]), min(before_ns, aggregation[1])
        if lo < hi:
            pieces = [
                tile("server_other", after_ns, lo, "derived"),
                tile("aggregation", lo, hi, "server_timer"),
                tile("server_other", hi, before_ns, "derived"),
            ]
            return [
                t for t in pieces if t.phase == "aggregation" or t.end_ns > t.start_ns
            ]
    return [tile("server_other", after_ns, before_ns, "derived")]


def tile_node_round(
    traces: Sequence[Trace],
    aggregation: tuple[int, int] | None,
    node_uncertainty_s: float,
) -> list[Tile] | str:
    """The phases of one node's round, in order, or why it cannot be tiled.

    ``traces`` are the node's messages of the round; ``aggregation`` is the
    round's aggregation stamp (server clock) or None; ``node_uncertainty_s`` the
    node's clock-offset uncertainty (NaN when unknown), given to every phase
    bounded by one node and one server instant. The tiles run from the first
    dispatch to the last pickup, each starting where the previous ends; a stretch
    whose inner instants are missing is one ``unresolved`` tile.
    """
    if not traces:
        return "no message"
    ordered = sorted(traces, key=lambda t: t.dispatch_ns)
    missing = [t.message_id or t.message_type for t in ordered if t.pickup_ns is None]
    if missing:
        return f"no pickup of message {missing[0]}"
    tiles: list[Tile] = []
    for i, trace in enumerate(ordered):
        pickup_ns = trace.pickup_ns
        assert pickup_ns is not None  # checked above
        if i:
            previous = tiles[-1].end_ns
            if trace.dispatch_ns < previous:
                return (
                    f"message {trace.message_id or trace.message_type} was dispatched "
                    "before the previous one was picked up"
                )
            tiles += _between_tiles(previous, trace.dispatch_ns, aggregation)
        tiles += _message_tiles(trace, pickup_ns, node_uncertainty_s)
    return tiles


def inconsistencies(tiles: Sequence[Tile]) -> list[str]:
    """Derived phases shorter than zero by more than their clock uncertainty.

    A negative gap means the measured phases around it overlap once on one
    clock: within the uncertainty that is clock error, beyond it the data
    disagree (a wrong match, or a clock estimate that does not hold).
    """
    notes = []
    for t in tiles:
        if t.row is not None or t.end_ns >= t.start_ns:
            continue
        excess_s = (t.start_ns - t.end_ns) / 1e9
        if math.isnan(t.uncertainty_s) or excess_s > t.uncertainty_s:
            notes.append(
                f"{t.phase} of {t.message_type or 'the gap'} is {-excess_s:.6f} s"
            )
    return notes


# --- a run's messages -------------------------------------------------------------


@dataclass(frozen=True)
class Dispatch:
    """An instruction the ServerApp pushed (``dispatch`` event, server clock)."""

    message_id: str
    node_id: int
    message_type: str
    round: int
    at_ns: int


@dataclass(frozen=True)
class Pickup:
    """A reply the ServerApp received (``pickup`` event, server clock)."""

    message_id: str
    reply_id: str
    at_ns: int


@dataclass(frozen=True)
class MeasuredMessage:
    """A message's measured spans on one node: the client mod's stamp and matches."""

    node: str
    node_id: int
    round: int
    message_type: str
    message_id: str
    handler: Span
    downlink: Span | None
    uplink: Span | None


def _instant(e: Mapping[str, Any], key: str) -> int:
    """The event's ``key`` instant, else when it was written (older writers)."""
    raw = e.get(key)
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    return int(e["t_ns"])


def dispatches(events: Iterable[Mapping[str, Any]]) -> list[Dispatch]:
    """Every train or evaluate ``dispatch`` with a message id, at ``dispatch_ns``
    (else ``t_ns``). Other messages (a strategy's queries) have no phases."""
    return [
        Dispatch(
            message_id=str(e["message_id"]),
            node_id=int(e["node_id"]),
            message_type=str(e.get("message_type") or "").split(".")[0],
            round=int(e["round"]),
            at_ns=_instant(e, "dispatch_ns"),
        )
        for e in events
        if e.get("event") == EventKind.DISPATCH
        and e.get("message_id")
        and str(e.get("message_type") or "").split(".")[0] in ANATOMY_MESSAGE_TYPES
    ]


def pickups(events: Iterable[Mapping[str, Any]]) -> dict[str, Pickup]:
    """The first ``pickup`` of each instruction id, at ``pickup_ns`` (else ``t_ns``)."""
    out: dict[str, Pickup] = {}
    for e in events:
        if e.get("event") == EventKind.PICKUP and e.get("message_id"):
            message_id = str(e["message_id"])
            out.setdefault(
                message_id,
                Pickup(
                    message_id, str(e.get("reply_id") or ""), _instant(e, "pickup_ns")
                ),
            )
    return out


def aggregation_spans(
    events: Iterable[Mapping[str, Any]],
) -> dict[int, tuple[int, int]]:
    """Per round, the server's aggregation stamp (earliest start, latest end)."""
    spans: dict[int, tuple[int, int]] = {}
    for e in events:
        if e.get("event") != EventKind.PHASE or e.get("phase") != "aggregation":
            continue
        start, end = int(e["start_ns"]), int(e["end_ns"])
        known = spans.get(int(e["round"]))
        if known is not None:
            start, end = min(start, known[0]), max(end, known[1])
        spans[int(e["round"])] = (start, end)
    return spans


def _record(
    run_id: str,
    key: tuple[int, str],
    note: str,
    tiles: Sequence[Tile] = (),
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "round": key[0],
        "node": key[1],
        "tiled": bool(tiles),
        "round_start_ns": tiles[0].start_ns if tiles else None,
        "round_end_ns": tiles[-1].end_ns if tiles else None,
        "note": note,
    }


def _claim(
    measured: Sequence[MeasuredMessage], sent: Sequence[Dispatch]
) -> dict[str, int]:
    """Dispatch id -> index of the measured message it is.

    By the stamp's message id; for stamps without one (older client mods), the
    only dispatch to the node of that round and type.
    """
    by_id = {d.message_id: d for d in sent}
    claimed: dict[str, int] = {}
    for i, m in enumerate(measured):
        dispatch = by_id.get(m.message_id) if m.message_id else None
        if dispatch is None and not m.message_id and m.node_id:
            same = [
                d
                for d in sent
                if (d.node_id, d.round, d.message_type)
                == (m.node_id, m.round, m.message_type)
            ]
            dispatch = same[0] if len(same) == 1 else None
        if dispatch is not None and dispatch.message_id not in claimed:
            claimed[dispatch.message_id] = i
    return claimed


def tile_run(
    measured: Sequence[MeasuredMessage],
    sent: Sequence[Dispatch],
    received: Mapping[str, Pickup],
    aggregations: Mapping[int, tuple[int, int]],
    clocks: Mapping[str, NodeClock],
    run_id: str,
) -> tuple[dict[tuple[int, str], list[Tile]], list[dict[str, Any]]]:
    """Tile every (round, node) of a run; return the tiles and one record per pair.

    A record (``df.attrs["anatomy"]``) says whether the pair was tiled, its
    round's bounds, and a note: why it was not tiled, or derived phases that
    came out negative beyond their clock uncertainty.
    """
    stamped = sorted({(m.round, m.node) for m in measured})
    if not sent:
        note = (
            "no dispatch/pickup events (an older log, or an app run without "
            "flowerbed's measured Grid): measured phases only"
        )
        return {}, [_record(run_id, key, note) for key in stamped]
    claimed = _claim(measured, sent)
    names = {m.node_id: m.node for m in measured if m.node_id}
    traces: dict[tuple[int, str], list[Trace]] = {}
    records: list[dict[str, Any]] = []
    for d in sent:
        index = claimed.get(d.message_id)
        m = measured[index] if index is not None else None
        node = m.node if m is not None else names.get(d.node_id)
        if node is None:
            records.append(
                _record(
                    run_id,
                    (d.round, f"node_id {d.node_id}"),
                    f"message {d.message_id} went to a node that stamped nothing",
                )
            )
            continue
        pickup = received.get(d.message_id)
        traces.setdefault((d.round, node), []).append(
            Trace(
                node=node,
                round=d.round,
                message_type=d.message_type,
                message_id=d.message_id,
                dispatch_ns=d.at_ns,
                pickup_ns=None if pickup is None else pickup.at_ns,
                downlink=None if m is None else m.downlink,
                handler=None if m is None else m.handler,
                uplink=None if m is None else m.uplink,
            )
        )
    orphans = {
        (m.round, m.node): m.message_id or m.message_type
        for i, m in enumerate(measured)
        if i not in claimed.values()
    }
    tiles: dict[tuple[int, str], list[Tile]] = {}
    for key in sorted(set(traces) | set(orphans)):
        if key in orphans:
            note = f"client-mod stamp of message {orphans[key]} has no dispatch event"
            records.append(_record(run_id, key, note))
            continue
        clock = clocks.get(key[1], NodeClock(key[1]))
        result = tile_node_round(
            traces[key], aggregations.get(key[0]), clock.uncertainty_s
        )
        if isinstance(result, str):
            records.append(_record(run_id, key, result))
            continue
        tiles[key] = result
        records.append(_record(run_id, key, "; ".join(inconsistencies(result)), result))
    return tiles, records


def node_round_times(phases: pd.DataFrame) -> pd.DataFrame:
    """Per (run, round, node) of tiled rounds: the sum of the node's phases.

    Sums the rows of every node but ``server`` whose round was tiled (``tiled``
    in ``df.attrs["anatomy"]``), so the server's own aggregation row is not
    counted twice. Columns: ``run_id``, ``round``, ``node``, ``round_s`` (sum of
    durations), ``span_s`` (last end - first start, equal to ``round_s`` when
    the rows tile), ``max_phase_uncertainty_s`` (the largest clock uncertainty
    of one phase's duration; NaN when one is unknown, a node without a clock
    estimate). The round time itself runs from a dispatch to a pickup, both on
    the server clock: its split into phases is uncertain, its total is not.
    """
    records = anatomy_frame(phases.attrs.get("anatomy", []))
    tiled = records[records["tiled"]][["run_id", "round", "node"]]
    rows = phases[phases["node"] != SERVER_NODE].merge(
        tiled, on=["run_id", "round", "node"], how="inner"
    )
    grouped = rows.groupby(["run_id", "round", "node"], sort=True)
    out = grouped.agg(
        round_s=("duration_s", "sum"),
        first_ns=("start_ns", "min"),
        last_ns=("end_ns", "max"),
        max_phase_uncertainty_s=("uncertainty_s", lambda u: u.max(skipna=False)),
    ).reset_index()
    out["span_s"] = (out["last_ns"] - out["first_ns"]) / 1e9
    return out.drop(columns=["first_ns", "last_ns"])
