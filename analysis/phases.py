"""Events of one run to the phase table (``phases.parquet``) of docs/events.md.

Node-clock instants are first mapped to the server clock (analysis/clocks.py).
Compute phases come straight from ``phase`` events. Downlink and uplink rows come
from matching each client-mod stamp with the SuperNode log window that received
its instruction or sent its reply (``supernode_log`` events), then with every
captured ``transfer`` burst inside that window; docs/events.md gives the rules
and the fallbacks. A stamp with neither a window nor enough captured bytes gets
no transfer row: it is listed in the diagnostics instead, never filled with a
guessed number. When the run has ``dispatch`` and ``pickup`` events, each node's
round is then tiled into the phases of docs/anatomy.md.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.anatomy import (
    ANATOMY_PHASES,
    MeasuredMessage,
    Span,
    Tile,
    aggregation_spans,
    dispatches,
    pickups,
    tile_run,
)
from analysis.clocks import (
    NODE_CLOCK,
    SERVER_CLOCK,
    clock_records,
    correct_events,
    node_clocks,
)

# The matching rules' constants live with the matching; re-exported here.
from analysis.matching import EDGE_NOISE_SHARE as EDGE_NOISE_SHARE
from analysis.matching import LONE_GAP_NS as LONE_GAP_NS
from analysis.matching import MIN_WIRE_SHARE as MIN_WIRE_SHARE
from analysis.matching import WINDOW_SLACK_NS as WINDOW_SLACK_NS
from analysis.matching import (
    Stamp,
    TransferMatch,
    bursts,
    match_transfers,
    stamps,
    windows,
)
from instrumentation.schema import EventKind

# The measured phases (every run has them); a tiled round adds docs/anatomy.md's.
PHASES = ("downlink", "training", "evaluation", "uplink", "aggregation")
CLIENT_PHASES = ("training", "evaluation")
SERVER_PHASES = ("aggregation",)

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
    "uncertainty_s",
    "message_id",
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
    "uncertainty_s": "float64",
    "message_id": "str",
}
# The diagnostics a phase table carries in ``df.attrs`` (lists of plain records).
ATTRS = ("unmatched", "clock", "anatomy")
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
    uncertainty_s: float = 0.0,
    message_id: str = "",
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
        "uncertainty_s": uncertainty_s,
        "message_id": message_id,
    }


def _unmatched(
    run: RunInfo, stamp: Stamp, direction: str, message_bytes: int | None, reason: str
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


def _span(phase: str, row: dict[str, Any], index: int) -> Span:
    """The measured span of a row just built, for the tiling."""
    clock = SERVER_CLOCK if row["source"] == "capture" else NODE_CLOCK
    return Span(phase, row["start_ns"], row["end_ns"], row["source"], clock, index)


def _stamp_row(run: RunInfo, stamp: Stamp) -> dict[str, Any]:
    return _row(
        run,
        round_=stamp.round,
        node=stamp.node,
        phase=stamp.phase,
        message_type=stamp.message_type,
        start_ns=stamp.start_ns,
        end_ns=stamp.end_ns,
        bytes_=None,
        message_bytes=None,
        source=stamp.source,
        message_id=stamp.message_id,
    )


def _transfer_row(run: RunInfo, match: TransferMatch) -> dict[str, Any] | None:
    span = match.span
    if span is None:
        return None
    start_ns, end_ns, wire_bytes = span
    return _row(
        run,
        round_=match.stamp.round,
        node=match.stamp.node,
        phase="downlink" if match.direction == "down" else "uplink",
        message_type=match.stamp.message_type,
        start_ns=start_ns,
        end_ns=end_ns,
        bytes_=wire_bytes,
        message_bytes=match.message_bytes,
        source=match.source,
        message_id=match.stamp.message_id,
    )


def _message_rows(
    run: RunInfo, matches: Sequence[TransferMatch]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[MeasuredMessage]]:
    """Compute, downlink and uplink rows of every stamp, and the stamps without one.

    Also returns each stamp as a :class:`MeasuredMessage` whose spans point at
    their rows, for the tiling.
    """
    rows: list[dict[str, Any]] = []
    unmatched: list[dict[str, Any]] = []
    measured: list[MeasuredMessage] = []
    # match_transfers gives each stamp's instruction then its reply.
    for pair in zip(matches[0::2], matches[1::2], strict=True):
        stamp = pair[0].stamp
        handler = _stamp_row(run, stamp)
        spans = {"handler": _span(stamp.phase, handler, len(rows))}
        rows.append(handler)
        for match in pair:
            row = _transfer_row(run, match)
            if row is None:
                unmatched.append(
                    _unmatched(
                        run, stamp, match.direction, match.message_bytes, match.reason
                    )
                )
                continue
            spans[match.direction] = _span(row["phase"], row, len(rows))
            rows.append(row)
        measured.append(
            MeasuredMessage(
                node=stamp.node,
                node_id=stamp.node_id,
                round=stamp.round,
                message_type=stamp.message_type,
                message_id=stamp.message_id,
                handler=spans["handler"],
                downlink=spans.get("down"),
                uplink=spans.get("up"),
            )
        )
    return rows, unmatched, measured


def _server_rows(
    run: RunInfo, events: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Aggregation rows (node ``server``), straight from the server timer's events."""
    return [
        _row(
            run,
            round_=int(e["round"]),
            node=str(e["node"]),
            phase=str(e["phase"]),
            message_type="",
            start_ns=int(e["start_ns"]),
            end_ns=int(e["end_ns"]),
            bytes_=None,
            message_bytes=None,
            source=str(e.get("source") or "server_timer"),
        )
        for e in events
        if e.get("event") == EventKind.PHASE and e.get("phase") in SERVER_PHASES
    ]


def _with_tiles(
    run: RunInfo,
    rows: list[dict[str, Any]],
    tiles: Mapping[tuple[int, str], Sequence[Tile]],
) -> list[dict[str, Any]]:
    """Rows plus the derived tiles, each tiled round's rows in tiling order.

    A tiled round's rows sort by ``_anchor`` (its first dispatch) then ``_seq``
    (its place in the tiling): a derived phase shorter than zero (clock error)
    would otherwise sort before the phase it follows.
    """
    out = list(rows)
    for (round_, node), chain in tiles.items():
        anchor = chain[0].start_ns
        for seq, tile in enumerate(chain):
            if tile.row is not None:
                row = out[tile.row]
                row["message_id"] = tile.message_id
            else:
                row = _row(
                    run,
                    round_=round_,
                    node=node,
                    phase=tile.phase,
                    message_type=tile.message_type,
                    start_ns=tile.start_ns,
                    end_ns=tile.end_ns,
                    bytes_=None,
                    message_bytes=None,
                    source=tile.source,
                    uncertainty_s=tile.uncertainty_s,
                    message_id=tile.message_id,
                )
                out.append(row)
            row["_anchor"], row["_seq"] = anchor, seq
    return out


def empty_phases() -> pd.DataFrame:
    """A phase table with no rows but the contract's columns and dtypes."""
    df = pd.DataFrame({c: pd.Series(dtype=DTYPES[c]) for c in COLUMNS})
    df.attrs = {name: [] for name in ATTRS}
    return df


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    if not rows:
        return empty_phases()
    order = {p: i for i, p in enumerate(ANATOMY_PHASES)}
    anchor = [r.get("_anchor", r["start_ns"]) for r in rows]
    seq = [r.get("_seq", order.get(r["phase"], len(order))) for r in rows]
    df = pd.DataFrame.from_records(rows, columns=list(COLUMNS)).astype(DTYPES)
    df["_anchor"], df["_seq"] = anchor, seq
    df = df.sort_values(["round", "node", "_anchor", "_seq"], kind="stable")
    return df.drop(columns=["_anchor", "_seq"]).reset_index(drop=True)


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

    Node-clock instants are first mapped to the server clock with the run's
    ``clock`` estimates (docs/anatomy.md). Returns one row per (round, node,
    phase, message_type) for the measured phases (docs/events.md); when the run
    has ``dispatch`` and ``pickup`` events, each node's round is also tiled with
    the derived phases of docs/anatomy.md. Diagnostics in ``df.attrs``:
    ``unmatched`` (stamps whose instruction or reply has neither a SuperNode log
    window nor enough captured bytes, see :func:`unmatched_frame`), ``clock``
    (the per-node correction, see :func:`analysis.clocks.clock_frame`) and
    ``anatomy`` (per round and node: tiled or why not, see
    :func:`analysis.anatomy.anatomy_frame`).
    """
    clocks = node_clocks(events)
    corrected = correct_events(events, clocks)
    picked = pickups(corrected)
    sent = dispatches(corrected)
    stamped = stamps(corrected, picked, {d.message_id: d.at_ns for d in sent})
    matches = match_transfers(stamped, bursts(corrected), windows(corrected))
    rows, unmatched, measured = _message_rows(run, matches)
    rows += _server_rows(run, corrected)
    tiles, anatomy = tile_run(
        measured,
        sent,
        picked,
        aggregation_spans(corrected),
        clocks,
        run.run_id,
    )
    df = _frame(_with_tiles(run, rows, tiles))
    df.attrs = {
        "unmatched": unmatched,
        "clock": clock_records(events, run.run_id),
        "anatomy": anatomy,
    }
    return df


def _attrs(frames: Iterable[pd.DataFrame]) -> dict[Hashable | None, Any]:
    """The diagnostics of several phase tables, concatenated per kind."""
    attrs: dict[str, list[Any]] = {name: [] for name in ATTRS}
    for frame in frames:
        for name in ATTRS:
            attrs[name].extend(frame.attrs.get(name, []))
    return {name: records for name, records in attrs.items()}


def concat_phases(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Stack the phase tables of several runs, keeping their diagnostics."""
    frames = list(frames)
    non_empty = [f for f in frames if len(f)]
    if non_empty:
        df = pd.concat(non_empty, ignore_index=True).astype(DTYPES)[list(COLUMNS)]
    else:
        df = empty_phases()
    df.attrs = _attrs(frames)
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
    out.attrs = _attrs([df])
    out.to_parquet(path, engine="pyarrow", index=False)
    return path


# Columns added after the first phase tables were written, and what an older
# table gets for them on reading: unknown uncertainty, no message id.
_LATER_COLUMNS: dict[str, Any] = {"uncertainty_s": float("nan"), "message_id": ""}


def read_phases(path: Path) -> pd.DataFrame:
    """Read a phase table written by :func:`write_phases`, with contract dtypes.

    Tables written before ``uncertainty_s`` and ``message_id`` existed get NaN
    and ``""`` for them.
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"no phase table at {path}; run `flowerbed campaign run` first "
            "(it writes phases.parquet into the results folder)"
        )
    df = pd.read_parquet(path, engine="pyarrow")
    for column, default in _LATER_COLUMNS.items():
        if column not in df.columns:
            df[column] = default
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path} is not a flowerbed phase table: columns {missing} are missing"
        )
    out = df[list(COLUMNS)].astype(DTYPES)
    out.attrs = _attrs([df])
    return out
