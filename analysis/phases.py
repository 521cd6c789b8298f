"""Events of one run to the phase table (``phases.parquet``) of docs/events.md.

Compute phases come straight from ``phase`` events. Downlink and uplink rows come
from matching each client-mod stamp with the SuperNode log window that received
its instruction or sent its reply (``supernode_log`` events), then with every
captured ``transfer`` burst inside that window; docs/events.md gives the rules
and the fallbacks. A stamp with neither a window nor enough captured bytes gets
no transfer row: it is listed in the diagnostics instead, never filled with a
guessed number.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

PHASES = ("downlink", "training", "evaluation", "uplink", "aggregation")
CLIENT_PHASES = ("training", "evaluation")
SERVER_PHASES = ("aggregation",)

# The SuperNode's log line is stamped when our pipe reader gets it, and the first
# payload byte can precede "Receiving: ..." by a few ms: transfers this close to a
# log window still belong to it.
WINDOW_SLACK_NS = 50_000_000
# The wire carries a few % more than Flower's count_bytes() (gRPC and protobuf
# framing): captured bursts must add up to this share of it to be the message.
MIN_WIRE_SHARE = 0.9
# Without a log window, a burst next to the stamp that is smaller than this share
# of the message and lone (more than LONE_GAP_NS from the next burst outwards) is
# a SuperNode heartbeat or poll, not the first or last bytes of the message. The
# bursts of one message split by a busy CPU come a few tenths of a second apart.
EDGE_NOISE_SHARE = 0.01
LONE_GAP_NS = 1_000_000_000

COLUMNS = (
    "campaign",
    "run_id",
    "network",
    "strategy",
    "repetition",
    "round",
    "node",
    "phase",
    "message_type",
    "start_ns",
    "end_ns",
    "duration_s",
    "bytes",
    "message_bytes",
    "source",
)
DTYPES: dict[str, str] = {
    "campaign": "str",
    "run_id": "str",
    "network": "str",
    "strategy": "str",
    "repetition": "int64",
    "round": "int64",
    "node": "str",
    "phase": "str",
    "message_type": "str",
    "start_ns": "int64",
    "end_ns": "int64",
    "duration_s": "float64",
    "bytes": "Int64",
    "message_bytes": "Int64",
    "source": "str",
}
UNMATCHED_COLUMNS = (
    "run_id",
    "round",
    "node",
    "message_type",
    "direction",
    "message_bytes",
    "reason",
)


@dataclass(frozen=True)
class RunInfo:
    """Which run a set of events belongs to: the labels every phase row carries."""

    campaign: str
    run_id: str
    network: str
    strategy: str
    repetition: int

    def __post_init__(self) -> None:
        for name in ("campaign", "run_id", "network", "strategy"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"RunInfo.{name} must be a non-empty string")
        if isinstance(self.repetition, bool) or not isinstance(self.repetition, int):
            raise ValueError(
                f"RunInfo.repetition must be an int, got {self.repetition!r}"
            )
        if self.repetition < 1:
            raise ValueError(f"RunInfo.repetition is 1-based, got {self.repetition}")


@dataclass(frozen=True)
class _Stamp:
    """A client-mod stamp of one message on one node."""

    node: str
    round: int
    phase: str
    message_type: str
    start_ns: int
    end_ns: int
    bytes_in: int | None
    bytes_out: int | None


@dataclass(frozen=True)
class _Window:
    """A SuperNode log window: from "Receiving"/"Sending" to its "...successfully"."""

    node: str
    direction: str
    message_type: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True)
class _Transfer:
    """A captured TCP payload burst in one direction between the server and a node."""

    node: str
    direction: str
    start_ns: int
    end_ns: int
    bytes: int


def _message_type(raw: object) -> str:
    """``train`` from ``train`` or ``train.something`` (Flower's sub-typed messages)."""
    return str(raw or "").split(".")[0]


def _optional_int(raw: object) -> int | None:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        return int(raw)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return None


def _stamps(events: Iterable[Mapping[str, Any]]) -> list[_Stamp]:
    return [
        _Stamp(
            node=str(e["node"]),
            round=int(e["round"]),
            phase=str(e["phase"]),
            message_type=_message_type(e.get("message_type")),
            start_ns=int(e["start_ns"]),
            end_ns=int(e["end_ns"]),
            bytes_in=_optional_int(e.get("bytes_in")),
            bytes_out=_optional_int(e.get("bytes_out")),
        )
        for e in events
        if e.get("event") == "phase" and e.get("phase") in CLIENT_PHASES
    ]


def _transfers(events: Iterable[Mapping[str, Any]]) -> list[_Transfer]:
    return [
        _Transfer(
            node=str(e["node"]),
            direction=str(e["direction"]),
            start_ns=int(e["start_ns"]),
            end_ns=int(e["end_ns"]),
            bytes=int(e["bytes"]),
        )
        for e in events
        if e.get("event") == "transfer"
    ]


def _row(
    run: RunInfo,
    *,
    round_: int,
    node: str,
    phase: str,
    message_type: str,
    start_ns: int,
    end_ns: int,
    bytes_: int | None,
    message_bytes: int | None,
    source: str,
) -> dict[str, Any]:
    return {
        "campaign": run.campaign,
        "run_id": run.run_id,
        "network": run.network,
        "strategy": run.strategy,
        "repetition": run.repetition,
        "round": round_,
        "node": node,
        "phase": phase,
        "message_type": message_type,
        "start_ns": start_ns,
        "end_ns": end_ns,
        "duration_s": (end_ns - start_ns) / 1e9,
        "bytes": bytes_,
        "message_bytes": message_bytes,
        "source": source,
    }


def _pair_windows(
    logs: list[Mapping[str, Any]], node: str, start: str, end: str, direction: str
) -> list[_Window]:
    """Pair each ``start`` log line with the next ``end`` line of the same message."""
    windows: list[_Window] = []
    opened: Mapping[str, Any] | None = None
    for e in logs:
        if e.get("kind") == start:
            opened = e
        elif e.get("kind") == end and opened is not None:
            ids = (str(opened.get("message_id") or ""), str(e.get("message_id") or ""))
            if "" in ids or ids[0] == ids[1]:
                windows.append(
                    _Window(
                        node=node,
                        direction=direction,
                        message_type=_message_type(opened.get("message_type")),
                        start_ns=int(opened["at_ns"]),
                        end_ns=int(e["at_ns"]),
                    )
                )
            opened = None
    return windows


def _windows(events: Iterable[Mapping[str, Any]]) -> list[_Window]:
    """Receive (``down``) and send (``up``) windows of every node's SuperNode log."""
    by_node: dict[str, list[Mapping[str, Any]]] = {}
    for e in events:
        if e.get("event") == "supernode_log":
            by_node.setdefault(str(e["node"]), []).append(e)
    windows: list[_Window] = []
    for node, logs in by_node.items():
        logs.sort(key=lambda e: int(e["at_ns"]))
        windows += _pair_windows(logs, node, "receive_start", "receive_end", "down")
        windows += _pair_windows(logs, node, "send_start", "send_end", "up")
    return windows


@dataclass(frozen=True)
class _Bounds:
    """Where one stamp's instruction and reply can be: between its neighbours.

    The SuperNode handles one message at a time, so these ranges of successive
    stamps never overlap: no burst or log window can serve two messages.
    """

    stamp: _Stamp
    after_ns: int  # the previous stamp's end on the node
    before_ns: int  # the next stamp's start on the node

    def holds(self, t: _Transfer) -> bool:
        """Whether ``t`` can belong to this stamp's message in its direction."""
        if t.direction == "down":
            return t.start_ns > self.after_ns and t.end_ns < self.stamp.start_ns
        return self.stamp.end_ns < t.start_ns < self.before_ns


def _window_for(
    b: _Bounds, direction: str, windows: Sequence[_Window]
) -> _Window | None:
    """The receive window just before the stamp, or the send window just after."""
    mine = [
        w
        for w in windows
        if w.direction == direction and w.message_type == b.stamp.message_type
    ]
    if direction == "down":
        before = [
            w for w in mine if w.start_ns > b.after_ns and w.end_ns <= b.stamp.start_ns
        ]
        return max(before, key=lambda w: (w.end_ns, w.start_ns), default=None)
    after = [w for w in mine if b.stamp.end_ns <= w.start_ns < b.before_ns]
    return min(after, key=lambda w: (w.start_ns, w.end_ns), default=None)


def _in_window(window: _Window, candidates: Sequence[_Transfer]) -> list[_Transfer]:
    """Every candidate that overlaps the window widened by WINDOW_SLACK_NS."""
    lo = window.start_ns - WINDOW_SLACK_NS
    hi = window.end_ns + WINDOW_SLACK_NS
    return [t for t in candidates if t.start_ns <= hi and t.end_ns >= lo]


def _gap_ns(a: _Transfer, b: _Transfer) -> int:
    """Idle time between two bursts, whichever comes first."""
    return max(a.start_ns, b.start_ns) - min(a.end_ns, b.end_ns)


def _walk(
    direction: str, size: int, candidates: Sequence[_Transfer]
) -> list[_Transfer] | None:
    """Bursts next to the stamp, outwards, until they add up to the message.

    The walk goes backwards in time from the stamp for a downlink, forwards for an
    uplink. Small lone bursts at the stamp's side (EDGE_NOISE_SHARE, LONE_GAP_NS)
    are heartbeats or polls and are skipped.
    """
    if direction == "down":
        ordered = sorted(candidates, key=lambda t: (t.end_ns, t.start_ns), reverse=True)
    else:
        ordered = sorted(candidates, key=lambda t: (t.start_ns, t.end_ns))
    chosen: list[_Transfer] = []
    for i, t in enumerate(ordered):
        if not chosen and t.bytes < EDGE_NOISE_SHARE * size:
            following = ordered[i + 1] if i + 1 < len(ordered) else None
            if following is None or _gap_ns(t, following) > LONE_GAP_NS:
                continue
        chosen.append(t)
        if sum(c.bytes for c in chosen) >= MIN_WIRE_SHARE * size:
            return chosen
    return None


@dataclass(frozen=True)
class _Match:
    """What carried one message: its span, wire bytes and which method found it."""

    start_ns: int
    end_ns: int
    bytes: int | None
    source: str


def _from_transfers(transfers: Sequence[_Transfer]) -> _Match:
    return _Match(
        start_ns=min(t.start_ns for t in transfers),
        end_ns=max(t.end_ns for t in transfers),
        bytes=sum(t.bytes for t in transfers),
        source="capture",
    )


def _match(
    direction: str,
    size: int | None,
    window: _Window | None,
    candidates: Sequence[_Transfer],
) -> _Match | str:
    """The message's match, or the reason there is none."""
    if window is not None:
        inside = _in_window(window, candidates)
        complete = size is None or sum(t.bytes for t in inside) >= MIN_WIRE_SHARE * size
        if inside and complete:
            return _from_transfers(inside)
        return _Match(window.start_ns, window.end_ns, None, "supernode_log")
    if size is None:
        return "message size missing"
    walked = _walk(direction, size, candidates)
    if walked is None:
        return (
            "no SuperNode log window, and no captured transfers adding up to "
            f"{MIN_WIRE_SHARE:.0%} of the message bytes"
        )
    return _from_transfers(walked)


def _unmatched(
    run: RunInfo, stamp: _Stamp, direction: str, message_bytes: int | None, reason: str
) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "round": stamp.round,
        "node": stamp.node,
        "message_type": stamp.message_type,
        "direction": direction,
        "message_bytes": message_bytes,
        "reason": reason,
    }


def _transfer_rows(
    run: RunInfo,
    stamps: list[_Stamp],
    transfers: list[_Transfer],
    windows: list[_Window],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Downlink and uplink rows of every stamp, and the stamps left without one."""
    rows: list[dict[str, Any]] = []
    unmatched: list[dict[str, Any]] = []
    for node in sorted({s.node for s in stamps}):
        mine = sorted((s for s in stamps if s.node == node), key=lambda s: s.start_ns)
        theirs = [t for t in transfers if t.node == node]
        logged = [w for w in windows if w.node == node]
        for i, stamp in enumerate(mine):
            bounds = _Bounds(
                stamp,
                after_ns=mine[i - 1].end_ns if i > 0 else -1,
                before_ns=mine[i + 1].start_ns if i + 1 < len(mine) else 2**63 - 1,
            )
            for direction, size in (("down", stamp.bytes_in), ("up", stamp.bytes_out)):
                window = _window_for(bounds, direction, logged)
                candidates = [
                    t for t in theirs if t.direction == direction and bounds.holds(t)
                ]
                match = _match(direction, size, window, candidates)
                if isinstance(match, str):
                    unmatched.append(_unmatched(run, stamp, direction, size, match))
                    continue
                rows.append(
                    _row(
                        run,
                        round_=stamp.round,
                        node=node,
                        phase="downlink" if direction == "down" else "uplink",
                        message_type=stamp.message_type,
                        start_ns=match.start_ns,
                        end_ns=match.end_ns,
                        bytes_=match.bytes,
                        message_bytes=size,
                        source=match.source,
                    )
                )
    return rows, unmatched


def _compute_rows(
    run: RunInfo, events: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Training, evaluation and aggregation rows, straight from the ``phase`` events."""
    rows = []
    for e in events:
        if (
            e.get("event") != "phase"
            or e.get("phase") not in CLIENT_PHASES + SERVER_PHASES
        ):
            continue
        client = e["phase"] in CLIENT_PHASES
        rows.append(
            _row(
                run,
                round_=int(e["round"]),
                node=str(e["node"]),
                phase=str(e["phase"]),
                message_type=_message_type(e.get("message_type")) if client else "",
                start_ns=int(e["start_ns"]),
                end_ns=int(e["end_ns"]),
                bytes_=None,
                message_bytes=None,
                source=str(
                    e.get("source") or ("client_mod" if client else "server_timer")
                ),
            )
        )
    return rows


def empty_phases() -> pd.DataFrame:
    """A phase table with no rows but the contract's columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=DTYPES[c]) for c in COLUMNS})


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    if not rows:
        return empty_phases()
    df = pd.DataFrame.from_records(rows, columns=list(COLUMNS)).astype(DTYPES)
    order = {p: i for i, p in enumerate(PHASES)}
    df["_phase_order"] = df["phase"].map(order)
    df = df.sort_values(["round", "node", "start_ns", "_phase_order"], kind="stable")
    return df.drop(columns="_phase_order").reset_index(drop=True)


def unmatched_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The diagnostics records (``df.attrs["unmatched"]``) as a small table."""
    df = pd.DataFrame.from_records(list(records), columns=list(UNMATCHED_COLUMNS))
    return df.astype(
        {
            "run_id": "str",
            "round": "int64",
            "node": "str",
            "message_type": "str",
            "direction": "str",
            "message_bytes": "Int64",
            "reason": "str",
        }
    )


def phases_from_events(events: list[dict[str, Any]], run: RunInfo) -> pd.DataFrame:
    """Build the phase table of one run from its events.

    Returns one row per (round, node, phase, message_type) with the columns of
    docs/events.md. Client-mod stamps whose instruction or reply has neither a
    SuperNode log window nor enough captured bytes get no downlink/uplink row;
    they are listed, one record per missing direction, in ``df.attrs["unmatched"]``
    (see :func:`unmatched_frame`).
    """
    stamps = _stamps(events)
    transfer_rows, unmatched = _transfer_rows(
        run, stamps, _transfers(events), _windows(events)
    )
    df = _frame(_compute_rows(run, events) + transfer_rows)
    df.attrs["unmatched"] = unmatched
    return df


def concat_phases(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Stack the phase tables of several runs, keeping their unmatched diagnostics."""
    frames = list(frames)
    unmatched: list[dict[str, Any]] = []
    for frame in frames:
        unmatched.extend(frame.attrs.get("unmatched", []))
    non_empty = [f for f in frames if len(f)]
    if non_empty:
        df = pd.concat(non_empty, ignore_index=True).astype(DTYPES)[list(COLUMNS)]
    else:
        df = empty_phases()
    df.attrs = {"unmatched": unmatched}
    return df


def write_phases(df: pd.DataFrame, path: Path) -> Path:
    """Write the phase table to parquet (diagnostics travel in its pandas metadata)."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"cannot write {path}: the phase table lacks columns {missing}; "
            "build it with analysis.phases.phases_from_events"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    out = df[list(COLUMNS)].astype(DTYPES)
    out.attrs = {"unmatched": list(df.attrs.get("unmatched", []))}
    out.to_parquet(path, engine="pyarrow", index=False)
    return path


def read_phases(path: Path) -> pd.DataFrame:
    """Read a phase table written by :func:`write_phases`, with contract dtypes."""
    if not path.is_file():
        raise FileNotFoundError(
            f"no phase table at {path}; run `flowerbed campaign run` first "
            "(it writes phases.parquet into the results folder)"
        )
    df = pd.read_parquet(path, engine="pyarrow")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path} is not a flowerbed phase table: columns {missing} are missing"
        )
    attrs = dict(df.attrs)
    out = df[list(COLUMNS)].astype(DTYPES)
    out.attrs = {"unmatched": list(attrs.get("unmatched", []))}
    return out
