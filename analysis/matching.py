"""What carried each message: its SuperNode log window and its captured bursts.

Every client-mod stamp (one message on one node) is matched with the SuperNode
log window that received its instruction or sent its reply, then with the
captured ``transfer`` bursts inside that window (docs/events.md gives the rules
and the fallbacks); :func:`match_transfers` does that for the phase table.
analysis/wire.py checks the matches and re-exports this module's names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from analysis.anatomy import Pickup, dispatches, pickups
from analysis.clocks import NodeClock, correct_events, node_clocks
from instrumentation.schema import EventKind

CLIENT_PHASES = ("training", "evaluation")
DIRECTIONS = ("down", "up")

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


@dataclass(frozen=True)
class Stamp:
    """A client-mod stamp of one message on one node (instants on the server clock).

    ``message_id`` is the instruction's id (absent in older logs); ``reply_id``
    the reply's, from the message's ``pickup`` event when there is one.
    ``dispatch_ns`` and ``pickup_ns`` are when the ServerApp pushed the
    instruction and received the reply (server clock), when recorded: no byte
    of the message is on the wire before the one or after the other.
    """

    node: str
    node_id: int
    round: int
    phase: str
    message_type: str
    start_ns: int
    end_ns: int
    bytes_in: int | None
    bytes_out: int | None
    source: str
    message_id: str
    reply_id: str
    dispatch_ns: int | None = None
    pickup_ns: int | None = None


@dataclass(frozen=True)
class Window:
    """A SuperNode log window: from "Receiving"/"Sending" to its "...successfully"."""

    node: str
    direction: str
    message_type: str
    message_id: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True)
class Burst:
    """A captured TCP payload burst in one direction between the server and a node."""

    node: str
    direction: str
    start_ns: int
    end_ns: int
    bytes: int
    packets: int | None = None
    retransmissions: int | None = None
    busy_ns: int | None = None
    owed_ns: int | None = None


def message_category(raw: object) -> str:
    """``train`` from ``train`` or ``train.something`` (Flower's sub-typed messages)."""
    return str(raw or "").split(".")[0]


def optional_int(raw: object) -> int | None:
    """``raw`` as an int, or None when it is missing or not a number."""
    if raw is None or isinstance(raw, bool):
        return None
    try:
        return int(raw)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return None


def stamps(
    events: Iterable[Mapping[str, Any]],
    picked: Mapping[str, Pickup],
    dispatched: Mapping[str, int] | None = None,
) -> list[Stamp]:
    """Every client-mod stamp; ``picked`` maps instruction ids to their pickup,
    ``dispatched`` to their dispatch instant."""
    dispatched = dispatched or {}
    out = []
    for e in events:
        if e.get("event") != EventKind.PHASE or e.get("phase") not in CLIENT_PHASES:
            continue
        message_id = str(e.get("message_id") or "")
        pickup = picked.get(message_id) if message_id else None
        out.append(
            Stamp(
                node=str(e["node"]),
                node_id=optional_int(e.get("node_id")) or 0,
                round=int(e["round"]),
                phase=str(e["phase"]),
                message_type=message_category(e.get("message_type")),
                start_ns=int(e["start_ns"]),
                end_ns=int(e["end_ns"]),
                bytes_in=optional_int(e.get("bytes_in")),
                bytes_out=optional_int(e.get("bytes_out")),
                source=str(e.get("source") or "client_mod"),
                message_id=message_id,
                reply_id=pickup.reply_id if pickup else "",
                dispatch_ns=dispatched.get(message_id) if message_id else None,
                pickup_ns=pickup.at_ns if pickup else None,
            )
        )
    return out


def _burst(e: Mapping[str, Any], clock: NodeClock | None = None) -> Burst:
    """A burst from a ``transfer`` event, or from a ``node_transfer`` event whose
    instants ``clock`` maps to the server clock."""
    start_ns, end_ns = int(e["start_ns"]), int(e["end_ns"])
    if clock is not None:
        start_ns, end_ns = clock.to_server(start_ns), clock.to_server(end_ns)
    return Burst(
        node=str(e["node"]),
        direction=str(e["direction"]),
        start_ns=start_ns,
        end_ns=end_ns,
        bytes=int(e["bytes"]),
        packets=optional_int(e.get("packets")),
        retransmissions=optional_int(e.get("retransmissions")),
        busy_ns=optional_int(e.get("busy_ns")),
        owed_ns=optional_int(e.get("owed_ns")),
    )


def bursts(events: Iterable[Mapping[str, Any]]) -> list[Burst]:
    """Every burst captured on the server side (``transfer``)."""
    return [_burst(e) for e in events if e.get("event") == EventKind.TRANSFER]


def node_bursts(
    events: Iterable[Mapping[str, Any]], clocks: Mapping[str, NodeClock]
) -> list[Burst]:
    """Every burst captured on a node's own interface (``node_transfer``).

    Their instants are on the node's clock: ``clocks`` (:func:`node_clocks`)
    maps them to the server clock; a node without an estimate keeps its own.
    """
    return [
        _burst(e, clocks.get(str(e["node"]), NodeClock(str(e["node"]))))
        for e in events
        if e.get("event") == EventKind.NODE_TRANSFER
    ]


def _pair_windows(
    logs: list[Mapping[str, Any]], node: str, start: str, end: str, direction: str
) -> list[Window]:
    """Pair each ``start`` log line with the next ``end`` line of the same message."""
    windows: list[Window] = []
    opened: Mapping[str, Any] | None = None
    for e in logs:
        if e.get("kind") == start:
            opened = e
        elif e.get("kind") == end and opened is not None:
            ids = (str(opened.get("message_id") or ""), str(e.get("message_id") or ""))
            if "" in ids or ids[0] == ids[1]:
                windows.append(
                    Window(
                        node=node,
                        direction=direction,
                        message_type=message_category(opened.get("message_type")),
                        message_id=ids[0],
                        start_ns=int(opened["at_ns"]),
                        end_ns=int(e["at_ns"]),
                    )
                )
            opened = None
    return windows


def windows(events: Iterable[Mapping[str, Any]]) -> list[Window]:
    """Receive (``down``) and send (``up``) windows of every node's SuperNode log."""
    by_node: dict[str, list[Mapping[str, Any]]] = {}
    for e in events:
        if e.get("event") == EventKind.SUPERNODE_LOG:
            by_node.setdefault(str(e["node"]), []).append(e)
    windows: list[Window] = []
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

    stamp: Stamp
    after_ns: int  # the previous stamp's end on the node
    before_ns: int  # the next stamp's start on the node

    def holds(self, t: Burst) -> bool:
        """Whether ``t`` can belong to this stamp's message in its direction."""
        if t.direction == "down":
            return t.start_ns > self.after_ns and t.end_ns < self.stamp.start_ns
        return self.stamp.end_ns < t.start_ns < self.before_ns


def _window_for(b: _Bounds, direction: str, windows: Sequence[Window]) -> Window | None:
    """The window logged with the message's id, else the receive window just
    before the stamp, or the send window just after.
    """
    mine = [
        w
        for w in windows
        if w.direction == direction and w.message_type == b.stamp.message_type
    ]
    wanted = b.stamp.message_id if direction == "down" else b.stamp.reply_id
    logged = [w for w in mine if wanted and w.message_id == wanted]
    if logged:
        return logged[0]
    if direction == "down":
        before = [
            w for w in mine if w.start_ns > b.after_ns and w.end_ns <= b.stamp.start_ns
        ]
        return max(before, key=lambda w: (w.end_ns, w.start_ns), default=None)
    after = [w for w in mine if b.stamp.end_ns <= w.start_ns < b.before_ns]
    return min(after, key=lambda w: (w.start_ns, w.end_ns), default=None)


def _in_window(window: Window, candidates: Sequence[Burst]) -> list[Burst]:
    """Every candidate that overlaps the window widened by WINDOW_SLACK_NS."""
    lo = window.start_ns - WINDOW_SLACK_NS
    hi = window.end_ns + WINDOW_SLACK_NS
    return [t for t in candidates if t.start_ns <= hi and t.end_ns >= lo]


def _gap_ns(a: Burst, b: Burst) -> int:
    """Idle time between two bursts, whichever comes first."""
    return max(a.start_ns, b.start_ns) - min(a.end_ns, b.end_ns)


def _walk(direction: str, size: int, candidates: Sequence[Burst]) -> list[Burst] | None:
    """Bursts next to the stamp, outwards, until they add up to the message.

    The walk goes backwards in time from the stamp for a downlink, forwards for an
    uplink. Small lone bursts at the stamp's side (EDGE_NOISE_SHARE, LONE_GAP_NS)
    are heartbeats or polls and are skipped.
    """
    if direction == "down":
        ordered = sorted(candidates, key=lambda t: (t.end_ns, t.start_ns), reverse=True)
    else:
        ordered = sorted(candidates, key=lambda t: (t.start_ns, t.end_ns))
    chosen: list[Burst] = []
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
class TransferMatch:
    """One message's instruction (``down``) or reply (``up``) and what carried it.

    ``window`` is its SuperNode log window, ``bursts`` the captured bursts found
    for it; ``complete`` says they add up to MIN_WIRE_SHARE of the counted bytes
    (when there is a count). ``reason`` says why neither gives a row.
    """

    stamp: Stamp
    direction: str
    window: Window | None
    bursts: tuple[Burst, ...]
    complete: bool
    reason: str

    @property
    def message_bytes(self) -> int | None:
        """Flower's count of the message's content."""
        return self.stamp.bytes_in if self.direction == "down" else self.stamp.bytes_out

    @property
    def source(self) -> str:
        """``capture``, ``supernode_log``, or ``""`` when there is no row."""
        if self.complete:
            return "capture"
        return "supernode_log" if self.window is not None else ""

    @property
    def span(self) -> tuple[int, int, int | None] | None:
        """The row's (start_ns, end_ns, wire bytes), or None when there is none.

        A captured span is clipped to the message's life at the ServerApp: a
        burst holds everything up to DEFAULT_GAP_S of silence, so the SuperNode's
        poll answered just before the dispatch, or its next request sent just
        after the reply, can share a burst with the message's own bytes.
        """
        if self.complete:
            start = min(t.start_ns for t in self.bursts)
            end = max(t.end_ns for t in self.bursts)
            if self.direction == "down" and self.stamp.dispatch_ns is not None:
                start = min(max(start, self.stamp.dispatch_ns), end)
            if self.direction == "up" and self.stamp.pickup_ns is not None:
                end = max(min(end, self.stamp.pickup_ns), start)
            return start, end, sum(t.bytes for t in self.bursts)
        if self.window is not None:
            return self.window.start_ns, self.window.end_ns, None
        return None


def _match(
    stamp: Stamp, direction: str, window: Window | None, candidates: Sequence[Burst]
) -> TransferMatch:
    size = stamp.bytes_in if direction == "down" else stamp.bytes_out
    if window is not None:
        inside = _in_window(window, candidates)
        enough = size is None or sum(t.bytes for t in inside) >= MIN_WIRE_SHARE * size
        return TransferMatch(
            stamp, direction, window, tuple(inside), bool(inside) and enough, ""
        )
    if size is None:
        return TransferMatch(stamp, direction, None, (), False, "message size missing")
    walked = _walk(direction, size, candidates)
    if walked is None:
        reason = (
            "no SuperNode log window, and no captured transfers adding up to "
            f"{MIN_WIRE_SHARE:.0%} of the message bytes"
        )
        return TransferMatch(stamp, direction, None, (), False, reason)
    return TransferMatch(stamp, direction, None, tuple(walked), True, "")


def match_transfers(
    stamped: Sequence[Stamp], captured: Sequence[Burst], logged: Sequence[Window]
) -> list[TransferMatch]:
    """The instruction and the reply of every stamp, node by node in time order.

    Two matches per stamp, consecutive: its instruction (``down``), its reply.

    All instants must be on one clock (the server's: see
    :func:`analysis.clocks.correct_events`).
    """
    out: list[TransferMatch] = []
    for node in sorted({s.node for s in stamped}):
        mine = sorted((s for s in stamped if s.node == node), key=lambda s: s.start_ns)
        theirs = [t for t in captured if t.node == node]
        their_windows = [w for w in logged if w.node == node]
        for i, stamp in enumerate(mine):
            bounds = _Bounds(
                stamp,
                after_ns=mine[i - 1].end_ns if i > 0 else -1,
                before_ns=mine[i + 1].start_ns if i + 1 < len(mine) else 2**63 - 1,
            )
            for direction in DIRECTIONS:
                window = _window_for(bounds, direction, their_windows)
                candidates = [
                    t for t in theirs if t.direction == direction and bounds.holds(t)
                ]
                out.append(_match(stamp, direction, window, candidates))
    return out


def transfer_matches(events: Sequence[Mapping[str, Any]]) -> list[TransferMatch]:
    """Every stamp's instruction and reply matches, from one run's raw events.

    Node-clock instants are mapped to the server clock first.
    """
    corrected = correct_events(events, node_clocks(events))
    dispatched = {d.message_id: d.at_ns for d in dispatches(corrected)}
    return match_transfers(
        stamps(corrected, pickups(corrected), dispatched),
        bursts(corrected),
        windows(corrected),
    )
