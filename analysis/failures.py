"""The failure table: what went wrong in each run, where in the round, and why.

One row per failure: an instruction that got no reply or an error reply, a round
that went on without missing nodes (``degraded``), a fault flowerbed injected, a
run that did not end ``ok``. ``phase`` says where the node's message stopped,
from what the wire saw after the instruction was dispatched: nothing reached the
node (``downlink``), the model arrived but no reply left (``training``), the reply
started but was not picked up (``uplink``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from instrumentation.schema import EventKind

COLUMNS = (
    "run_id",
    "round",
    "node",
    "phase",
    "kind",
    "cause",
    "t_ns",
)


Transfer = tuple[str, int, int]  # direction, start_ns, bytes


def _transfers(events: Iterable[Mapping[str, Any]]) -> dict[str, list[Transfer]]:
    by_node: dict[str, list[Transfer]] = {}
    for e in events:
        if e.get("event") == EventKind.TRANSFER:
            by_node.setdefault(str(e["node"]), []).append(
                (str(e["direction"]), int(e["start_ns"]), int(e.get("bytes", 0)))
            )
    return by_node


def stopped_in(
    transfers: list[Transfer],
    dispatch_ns: int,
    until_ns: int,
    message_bytes: int,
) -> str:
    """Where a message stopped, from the node's transfers in [dispatch, until].

    Polls and heartbeats cross the link too, so only volume counts: the model has
    arrived once the downlink carried 90 % of the instruction's bytes, and the
    reply has started once an uplink burst carried half as much.
    """
    inside = [t for t in transfers if dispatch_ns <= t[1] <= until_ns]
    down = sum(b for d, _, b in inside if d == "down")
    if any(d == "up" and b >= 0.5 * message_bytes for d, _, b in inside):
        return "uplink"
    if down >= 0.9 * message_bytes:
        return "training"
    return "downlink"


def failure_table(events: list[dict[str, Any]], run_id: str) -> pd.DataFrame:
    """The failure rows of one run (empty, with the columns, when all went well)."""
    names: dict[int, str] = {}
    dispatched: dict[str, tuple[int, int]] = {}
    for e in events:
        if e.get("event") == EventKind.PHASE and e.get("node_id"):
            names[int(e["node_id"])] = str(e["node"])
        if e.get("event") == EventKind.DISPATCH:
            dispatched[str(e["message_id"])] = (
                int(e["dispatch_ns"]),
                int(e.get("bytes", 0)),
            )
    transfers = _transfers(events)
    end_ns = max((int(e.get("t_ns", 0)) for e in events), default=0)
    rows: list[dict[str, Any]] = []
    for e in events:
        kind = e.get("event")
        if kind == EventKind.FAILURE:
            node = str(e.get("node") or names.get(int(e.get("node_id", 0)), ""))
            node = node or f"node-id {e.get('node_id')}"
            sent = dispatched.get(str(e.get("message_id", "")))
            phase = (
                stopped_in(
                    transfers.get(node, []),
                    sent[0],
                    int(e.get("t_ns", end_ns)),
                    sent[1],
                )
                if sent is not None
                else "dispatch"
            )
            cause = str(e.get("reason", ""))
            if e.get("code") is not None:
                cause = f"error {e['code']}: {cause}"
            rows.append(
                {
                    "round": int(e.get("round", 0)),
                    "node": node,
                    "phase": f"{str(e.get('message_type', '')).split('.')[0]}:{phase}",
                    "kind": "no_reply" if "no reply" in cause else "error_reply",
                    "cause": cause,
                    "t_ns": int(e.get("t_ns", 0)),
                }
            )
        elif kind == EventKind.DEGRADED:
            rows.append(
                {
                    "round": int(e["round"]),
                    "node": "",
                    "phase": str(e.get("step", "")),
                    "kind": "degraded",
                    "cause": (
                        f"went on with {e['present']} of {e['wanted']} node(s) after "
                        f"waiting {float(e['waited_s']):g} s"
                    ),
                    "t_ns": int(e.get("t_ns", 0)),
                }
            )
        elif kind == EventKind.FAULT:
            rows.append(
                {
                    "round": int(e.get("round", 0)),
                    "node": str(e.get("node", "")),
                    "phase": "",
                    "kind": f"fault_{e.get('action', '')}",
                    "cause": str(e.get("kind", ""))
                    + (f" ({e['error']})" if e.get("error") else ""),
                    "t_ns": int(e.get("t_fault_ns", e.get("t_ns", 0))),
                }
            )
        elif kind == EventKind.RUN_END and e.get("status") != "ok":
            rows.append(
                {
                    "round": int(e.get("rounds", 0)),
                    "node": "",
                    "phase": "",
                    "kind": f"run_{e.get('status')}",
                    "cause": str(e.get("reason", "")).splitlines()[0][:300]
                    if e.get("reason")
                    else "",
                    "t_ns": int(e.get("t_ns", 0)),
                }
            )
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "run_id"])
    frame.insert(0, "run_id", run_id)
    return frame.sort_values("t_ns", kind="stable").reset_index(drop=True)
