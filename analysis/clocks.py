"""Node clocks mapped to the server's: offset estimates and corrected instants.

``clock`` events carry each node's offset estimate (node clock minus server clock)
at the start and the end of a run, per path. :func:`node_clocks` keeps, per node
and per ``when``, the estimate with the smallest uncertainty, and
:meth:`NodeClock.to_server` maps a node instant to the server clock with the offset
interpolated linearly between the two. :func:`correct_events` applies it to every
node-clock instant of a run (docs/anatomy.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from instrumentation.schema import EventKind

# Fixed-point steps mapping a node instant to the server clock (NodeClock.to_server).
_FIXED_POINT_STEPS = 4
# Which clock an instant was read on.
SERVER_CLOCK = "server"
NODE_CLOCK = "node"
CLOCK_COLUMNS = {
    "run_id": "str",
    "node": "str",
    "offset_start_ns": "Int64",
    "offset_end_ns": "Int64",
    "uncertainty_ns": "Int64",
    "path": "str",
    "at_start_ns": "Int64",
    "at_end_ns": "Int64",
}


@dataclass(frozen=True)
class ClockPoint:
    """One offset estimate of a node's clock (node minus server), taken at ``at_ns``.

    ``at_ns`` is a server-clock instant (the ``clock`` event's ``t_ns``).
    """

    node: str
    path: str
    when: str
    at_ns: int
    offset_ns: int
    uncertainty_ns: int

    def __post_init__(self) -> None:
        if self.when not in ("start", "end"):
            raise ValueError(
                f"clock estimate of node {self.node!r} has when={self.when!r}; "
                "expected 'start' or 'end'"
            )
        if self.uncertainty_ns < 0:
            raise ValueError(
                f"clock estimate of node {self.node!r} ({self.path}, {self.when}) "
                f"has a negative uncertainty {self.uncertainty_ns} ns"
            )


@dataclass(frozen=True)
class NodeClock:
    """How a node's instants map to the server clock: its start and end estimates.

    Either estimate may be missing; with neither, the offset is unknown and
    instants are left as they are (:attr:`known` is False).
    """

    node: str
    start: ClockPoint | None = None
    end: ClockPoint | None = None

    def __post_init__(self) -> None:
        for point in (self.start, self.end):
            if point is not None and point.node != self.node:
                raise ValueError(
                    f"NodeClock of {self.node!r} got an estimate of {point.node!r}"
                )

    @property
    def known(self) -> bool:
        """Whether at least one estimate exists."""
        return self.start is not None or self.end is not None

    @property
    def uncertainty_ns(self) -> int | None:
        """The larger uncertainty of the estimates used (None when unknown)."""
        points = [p.uncertainty_ns for p in (self.start, self.end) if p is not None]
        return max(points) if points else None

    @property
    def uncertainty_s(self) -> float:
        """:attr:`uncertainty_ns` in seconds, NaN when the offset is unknown."""
        ns = self.uncertainty_ns
        return math.nan if ns is None else ns / 1e9

    @property
    def path(self) -> str:
        """The path of the estimates used (``a|b`` when start and end differ)."""
        paths = [p.path for p in (self.start, self.end) if p is not None]
        return "|".join(dict.fromkeys(paths))

    def offset_at(self, server_ns: int) -> int | None:
        """Offset at a server instant: linear between the estimates, clamped."""
        points = sorted(
            (p for p in (self.start, self.end) if p is not None),
            key=lambda p: p.at_ns,
        )
        if not points:
            return None
        first, last = points[0], points[-1]
        if server_ns <= first.at_ns or last.at_ns == first.at_ns:
            return first.offset_ns
        if server_ns >= last.at_ns:
            return last.offset_ns
        slope_num = (last.offset_ns - first.offset_ns) * (server_ns - first.at_ns)
        return first.offset_ns + round(slope_num / (last.at_ns - first.at_ns))

    def to_server(self, node_ns: int) -> int:
        """The server-clock instant of ``node_ns``; unchanged when unknown.

        The offset is interpolated at the (server-clock) instant itself, found by
        fixed-point steps from the node instant: each shrinks the error by the
        drift rate (1e-4 at most for a working clock), so a few are exact.
        """
        server_ns = node_ns
        for _ in range(_FIXED_POINT_STEPS):
            offset = self.offset_at(server_ns)
            if offset is None or node_ns - offset == server_ns:
                break
            server_ns = node_ns - offset
        return server_ns

    def to_node(self, server_ns: int) -> int:
        """The node-clock instant of ``server_ns``: the inverse of :meth:`to_server`."""
        offset = self.offset_at(server_ns)
        return server_ns if offset is None else server_ns + offset


def _clock_points(events: Iterable[Mapping[str, Any]]) -> list[ClockPoint]:
    points = []
    for e in events:
        # A failed probe has no offset; a "when" other than start/end is no
        # estimate of this run's bounds.
        if (
            e.get("event") != EventKind.CLOCK
            or e.get("offset_ns") is None
            or e.get("when") not in ("start", "end")
        ):
            continue
        points.append(
            ClockPoint(
                node=str(e["node"]),
                path=str(e.get("path") or ""),
                when=str(e.get("when")),
                at_ns=int(e.get("at_ns") or e["t_ns"]),
                offset_ns=int(e["offset_ns"]),
                uncertainty_ns=int(e["uncertainty_ns"]),
            )
        )
    return points


def node_clocks(events: Iterable[Mapping[str, Any]]) -> dict[str, NodeClock]:
    """Per node with a ``clock`` event: its best start and end estimates.

    Best = smallest uncertainty among the paths probed at that ``when`` (ties go
    to the estimate written first). ``injected_offset_ns`` is never used: an
    emulated node's correction comes from its measured estimate, as on hardware.
    """
    best: dict[tuple[str, str], ClockPoint] = {}
    for point in _clock_points(events):
        key = (point.node, point.when)
        if key not in best or point.uncertainty_ns < best[key].uncertainty_ns:
            best[key] = point
    nodes = sorted({node for node, _ in best})
    return {
        n: NodeClock(n, start=best.get((n, "start")), end=best.get((n, "end")))
        for n in nodes
    }


def _client_stamp(e: Mapping[str, Any]) -> bool:
    return (
        e.get("event") == EventKind.PHASE
        and e.get("phase") in ("training", "evaluation")
        and e.get("source") in (None, "", "client_mod")
    )


# Node-clock instants of each event kind (docs/events.md).
_NODE_CLOCK_KEYS = {
    EventKind.PHASE: ("start_ns", "end_ns", "process_start_ns"),
    EventKind.SUPERNODE_LOG: ("at_ns",),
}


def correct_events(
    events: Iterable[Mapping[str, Any]], clocks: Mapping[str, NodeClock]
) -> list[dict[str, Any]]:
    """Copies of ``events`` with every node-clock instant on the server clock.

    Node-clock instants: the client mod's ``start_ns``, ``end_ns`` and
    ``process_start_ns``, and ``supernode_log`` ``at_ns``. Nodes without a clock
    estimate keep their instants. Other events are copied unchanged.
    """
    out = []
    for e in events:
        copy = dict(e)
        kind = e.get("event")
        clock = clocks.get(str(e.get("node")))
        on_node = kind == EventKind.SUPERNODE_LOG or _client_stamp(e)
        if clock is not None and on_node:
            for key in _NODE_CLOCK_KEYS[EventKind(str(kind))]:
                if isinstance(e.get(key), int) and not isinstance(e.get(key), bool):
                    copy[key] = clock.to_server(int(e[key]))
        out.append(copy)
    return out


def clock_records(
    events: Sequence[Mapping[str, Any]], run_id: str
) -> list[dict[str, Any]]:
    """The per-node correction table as plain records (``df.attrs["clock"]``).

    One record per node that has a clock estimate or a node-clock event; a node
    without estimates has null offsets and path ``""`` (offset unknown: its
    instants were not corrected).
    """
    clocks = node_clocks(events)
    seen = {
        str(e["node"])
        for e in events
        if e.get("event") == EventKind.SUPERNODE_LOG or _client_stamp(e)
    }
    records = []
    for node in sorted(seen | set(clocks)):
        clock = clocks.get(node, NodeClock(node))
        records.append(
            {
                "run_id": run_id,
                "node": node,
                "offset_start_ns": None
                if clock.start is None
                else clock.start.offset_ns,
                "offset_end_ns": None if clock.end is None else clock.end.offset_ns,
                "uncertainty_ns": clock.uncertainty_ns,
                "path": clock.path,
                "at_start_ns": None if clock.start is None else clock.start.at_ns,
                "at_end_ns": None if clock.end is None else clock.end.at_ns,
            }
        )
    return records


def clock_from_record(record: Mapping[Any, Any]) -> NodeClock:
    """Rebuild a node's correction from its :func:`clock_records` record."""
    node = str(record["node"])
    points = {}
    for when in ("start", "end"):
        offset = record.get(f"offset_{when}_ns")
        if offset is None or pd.isna(offset):
            continue
        uncertainty = record.get("uncertainty_ns")
        points[when] = ClockPoint(
            node=node,
            path=str(record.get("path") or ""),
            when=when,
            at_ns=int(record[f"at_{when}_ns"]),
            offset_ns=int(offset),
            uncertainty_ns=0 if uncertainty is None else int(uncertainty),
        )
    return NodeClock(node, start=points.get("start"), end=points.get("end"))


def clock_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Correction records (``df.attrs["clock"]``) as a typed table."""
    df = pd.DataFrame.from_records(list(records), columns=list(CLOCK_COLUMNS))
    return df.astype(CLOCK_COLUMNS)


def clock_table(events: Sequence[Mapping[str, Any]], run_id: str = "") -> pd.DataFrame:
    """The per-node correction table of one run's events, as a DataFrame.

    Columns: ``run_id``, ``node``, ``offset_start_ns``, ``offset_end_ns`` (node
    minus server; null when that estimate is missing), ``uncertainty_ns`` (the
    larger of the two used), ``path`` (network the estimates were probed on),
    ``at_start_ns``, ``at_end_ns`` (server instants of the estimates).
    """
    return clock_frame(clock_records(events, run_id))
