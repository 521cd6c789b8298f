"""Events of one run to the phase table (``phases.parquet``) of docs/events.md.

Compute phases come straight from ``phase`` events; downlink and uplink rows come
from matching each client-mod stamp with the captured ``transfer`` that carried
its instruction or reply. A stamp with no matching transfer gets no transfer row:
it is listed in the diagnostics instead, never filled with a guessed number.
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

# Flower's SuperNode polls and heartbeats between messages: a transfer must carry
# at least this share of the message's counted bytes to be the message itself.
MIN_BYTES_SHARE = 0.5

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
class _Transfer:
    """A captured TCP payload burst in one direction between the server and a node."""

    index: int
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
    found = [e for e in events if e.get("event") == "transfer"]
    return [
        _Transfer(
            index=i,
            node=str(e["node"]),
            direction=str(e["direction"]),
            start_ns=int(e["start_ns"]),
            end_ns=int(e["end_ns"]),
            bytes=int(e["bytes"]),
        )
        for i, e in enumerate(found)
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


def _big_enough(transfer: _Transfer, message_bytes: int) -> bool:
    return transfer.bytes >= MIN_BYTES_SHARE * message_bytes


def _match_downlink(
    stamp: _Stamp, downs: Sequence[_Transfer], after_ns: int, used: set[int]
) -> _Transfer | None:
    """The last big-enough down transfer inside (previous stamp's end, this start)."""
    assert stamp.bytes_in is not None
    candidates = [
        t
        for t in downs
        if t.index not in used
        and t.start_ns > after_ns
        and t.end_ns < stamp.start_ns
        and _big_enough(t, stamp.bytes_in)
    ]
    return max(candidates, key=lambda t: (t.end_ns, t.start_ns), default=None)


def _match_uplink(
    stamp: _Stamp, ups: Sequence[_Transfer], before_ns: int, used: set[int]
) -> _Transfer | None:
    """The first big-enough up transfer inside (this end, next stamp's start)."""
    assert stamp.bytes_out is not None
    candidates = [
        t
        for t in ups
        if t.index not in used
        and t.start_ns > stamp.end_ns
        and t.start_ns < before_ns
        and _big_enough(t, stamp.bytes_out)
    ]
    return min(candidates, key=lambda t: (t.start_ns, t.end_ns), default=None)


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
    run: RunInfo, stamps: list[_Stamp], transfers: list[_Transfer]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Downlink and uplink rows of every stamp, and the stamps left without one."""
    rows: list[dict[str, Any]] = []
    unmatched: list[dict[str, Any]] = []
    used: set[int] = set()
    for node in sorted({s.node for s in stamps}):
        mine = sorted((s for s in stamps if s.node == node), key=lambda s: s.start_ns)
        downs = [t for t in transfers if t.node == node and t.direction == "down"]
        ups = [t for t in transfers if t.node == node and t.direction == "up"]
        for i, stamp in enumerate(mine):
            after_ns = mine[i - 1].end_ns if i > 0 else -1
            before_ns = mine[i + 1].start_ns if i + 1 < len(mine) else 2**63 - 1
            for direction, size in (("down", stamp.bytes_in), ("up", stamp.bytes_out)):
                if size is None:
                    unmatched.append(
                        _unmatched(run, stamp, direction, None, "message size missing")
                    )
                    continue
                if direction == "down":
                    match = _match_downlink(stamp, downs, after_ns, used)
                else:
                    match = _match_uplink(stamp, ups, before_ns, used)
                if match is None:
                    reason = "no captured transfer of at least half the message bytes"
                    unmatched.append(_unmatched(run, stamp, direction, size, reason))
                    continue
                used.add(match.index)
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
                        source="capture",
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
    docs/events.md. Client-mod stamps whose instruction or reply has no captured
    transfer get no downlink/uplink row; they are listed, one record per missing
    direction, in ``df.attrs["unmatched"]`` (see :func:`unmatched_frame`).
    """
    stamps = _stamps(events)
    transfer_rows, unmatched = _transfer_rows(run, stamps, _transfers(events))
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
