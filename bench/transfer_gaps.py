"""Inside one model transfer: its packet bursts, the gaps between them, their causes.

For every message transfer of a results folder that analysis/matching.py finds
complete in the server-side capture (``captures/<node>.pcap``), the payload
packets in the transfer's direction are split into bursts wherever the next one
comes more than ``--gap-ms`` later. Each gap is attributed by what happened on
the wire during it (docs/transfer-gaps.md explains the causes in Flower 1.42):

- ``backoff``: 0.8-1.2 s, 1.6-2.4 s, 3.2-4.8 s or 6.4-12 s with a request inside:
  an object pull that found the object not yet uploaded and slept
  (flwr/supercore/inflatable/inflatable_utils.py: ``pull_objects``);
- ``store-poll``: 0.4-0.6 s in an uplink (and not a back-off or the link): the
  SuperNode waiting for the ClientApp to hand over an object
  (flwr/supernode/start_client_internal.py: ``_push_messages``);
- ``request``: the receiver sent a request during the gap: one object's
  request/response round trip ending and the next one starting;
- ``link``: no longer than ``LINK_PACED_SLACK`` times the time the link needs
  for the larger packet next to it at the transfer's own paced rate (the median
  rate between its large packets): a shaper releasing one GSO super-packet (up
  to 64 kB) at a time on a slow link;
- ``stall``: nothing else on the wire: the sender paused inside a response
  (serialisation, hashing, a busy CPU) or before its first byte.

Each gap's time is also split by side: ``sender_s`` runs from the last packet
of the other direction inside the gap to the next data (the data sender's own
reaction: the SuperLink for a download, the SuperNode for an upload), the rest
is the peer's.

Prints, per network and direction, the bursts per transfer, the gaps'
distribution and causes, connections and requests per transfer, and the bytes
per burst; ``--detail`` adds one line per transfer.

    .venv/bin/python -m bench.transfer_gaps RESULTS_DIR [--gap-ms 20] [--detail]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.matching import TransferMatch, transfer_matches
from instrumentation.capture import TCP_SYN, Packet, read_packets
from instrumentation.events import read_events
from instrumentation.schema import EventKind

DEFAULT_GAP_MS = 20.0
# Model messages only: heartbeats, polls and evaluate replies are a few kB.
DEFAULT_MIN_BYTES = 100_000
# Flower's pull back-off: 1 s doubling to 10 s, each sleep jittered by +-20 %.
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 10.0
BACKOFF_JITTER = 0.2
# The SuperNode's wait for an object the ClientApp has not handed over yet.
STORE_POLL_S = (0.4, 0.6)
# Packets this close outside a transfer's span still belong to its exchange
# (the SYN and the request that precede the first payload byte).
EDGE_NS = 50_000_000
# A gap up to this many times the link's time for the larger packet next to it
# is the link's.
LINK_PACED_SLACK = 1.5
# Packets this large (GSO super-packets) show the rate the link paces them at.
PACED_PACKET_BYTES = 10_000
CAUSES = ("backoff", "store-poll", "request", "link", "stall")


@dataclass(frozen=True)
class PacketBurst:
    """Payload packets of one direction that follow each other within the gap."""

    start_ns: int
    end_ns: int
    bytes: int
    packets: int
    first_bytes: int = 0
    last_bytes: int = 0

    def __post_init__(self) -> None:
        if self.end_ns < self.start_ns:
            raise ValueError(f"end_ns {self.end_ns} is before start_ns {self.start_ns}")
        if self.bytes < 0 or self.packets < 1:
            raise ValueError("a burst has >= 1 packet and >= 0 bytes")


@dataclass(frozen=True)
class Gap:
    """Idle time of the data direction between two bursts, and what explains it."""

    start_ns: int
    end_ns: int
    requests: int
    cause: str
    sender_ns: int

    @property
    def duration_s(self) -> float:
        """The gap in seconds."""
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def sender_s(self) -> float:
        """From the peer's last packet inside the gap to the next data, in seconds."""
        return self.sender_ns / 1e9


def split_bursts(payload: Iterable[tuple[int, int]], gap_ns: int) -> list[PacketBurst]:
    """Cut ``(t_ns, payload_len)`` packets into bursts at idle times above ``gap_ns``.

    Packets need not be sorted; zero-length ones (pure ACKs) are ignored.
    """
    if gap_ns <= 0:
        raise ValueError(f"gap_ns must be > 0, got {gap_ns}")
    bursts: list[PacketBurst] = []
    start = end = size = count = first = last = 0
    for t_ns, length in sorted(p for p in payload if p[1] > 0):
        if count and t_ns - end > gap_ns:
            bursts.append(PacketBurst(start, end, size, count, first, last))
            count = size = 0
        if not count:
            start, first = t_ns, length
        end, size, count, last = t_ns, size + length, count + 1, length
    if count:
        bursts.append(PacketBurst(start, end, size, count, first, last))
    return bursts


def paced_rate_bps(payload: Iterable[tuple[int, int]]) -> float:
    """Median rate (bit/s) at which large packets follow each other: each large
    packet's bits over the time since the packet before it; 0 when unknown.
    """
    ordered = sorted(p for p in payload if p[1] > 0)
    rates = [
        length * 8 / ((t_ns - prev_ns) / 1e9)
        for (prev_ns, _), (t_ns, length) in zip(ordered, ordered[1:], strict=False)
        if length >= PACED_PACKET_BYTES and t_ns > prev_ns
    ]
    return statistics.median(rates) if rates else 0.0


def _backoff_sleeps_s() -> list[float]:
    """Flower's successive retry sleeps before jitter: 1, 2, 4, 8, 10 s."""
    sleeps = [BACKOFF_BASE_S]
    while sleeps[-1] < BACKOFF_CAP_S:
        sleeps.append(min(sleeps[-1] * 2, BACKOFF_CAP_S))
    return sleeps


def _is_backoff(duration_s: float) -> bool:
    return any(
        s * (1 - BACKOFF_JITTER) <= duration_s <= s * (1 + BACKOFF_JITTER)
        for s in _backoff_sleeps_s()
    )


def classify_gap(
    duration_s: float, requests: int, direction: str, link_s: float = 0.0
) -> str:
    """The likely cause of a gap (module docstring): one of ``CAUSES``."""
    if requests and _is_backoff(duration_s):
        return "backoff"
    if duration_s <= LINK_PACED_SLACK * link_s:
        return "link"
    if direction == "up" and STORE_POLL_S[0] <= duration_s <= STORE_POLL_S[1]:
        return "store-poll"
    return "request" if requests else "stall"


def gaps_between(
    bursts: Sequence[PacketBurst],
    other: Sequence[int],
    direction: str,
    rate_bps: float = 0.0,
) -> list[Gap]:
    """The gaps between consecutive bursts; ``other`` are the instants of the other
    direction's payload packets (requests for a download, responses for an upload),
    ``rate_bps`` the link's paced rate (0: unknown, no gap is the link's).
    """
    gaps = []
    for before, after in zip(bursts, bursts[1:], strict=False):
        inside = [t for t in other if before.end_ns < t < after.start_ns]
        duration = (after.start_ns - before.end_ns) / 1e9
        # A shaper's token debt for the packet before the gap or the one after.
        frame = max(before.last_bytes, after.first_bytes)
        link_s = frame * 8 / rate_bps if rate_bps else 0.0
        cause = classify_gap(duration, len(inside), direction, link_s)
        sender = after.start_ns - max(inside, default=before.end_ns)
        gaps.append(Gap(before.end_ns, after.start_ns, len(inside), cause, sender))
    return gaps


def count_requests(packets: Sequence[Packet], server_port: int) -> int:
    """HTTP requests in ``packets``: runs of the node's payload packets on one
    connection (the node asks in both directions: it pulls objects and pushes them).
    """
    runs = 0
    last: dict[int, bool] = {}
    for p in sorted(packets, key=lambda p: p.t_ns):
        if not p.payload_len:
            continue
        node_port = p.dport if p.sport == server_port else p.sport
        from_node = p.dport == server_port
        if from_node and not last.get(node_port, False):
            runs += 1
        last[node_port] = from_node
    return runs


@dataclass(frozen=True)
class TransferGaps:
    """One message transfer cut into bursts, with its gaps and connections."""

    network: str
    node: str
    round: int
    message_type: str
    direction: str
    start_ns: int
    end_ns: int
    bursts: tuple[PacketBurst, ...]
    gaps: tuple[Gap, ...]
    connections: int
    syns: int
    requests: int
    paced_bps: float = 0.0

    @property
    def span_s(self) -> float:
        """First to last payload byte in the data direction, in seconds."""
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def bytes(self) -> int:
        """Payload bytes in the data direction (retransmissions included)."""
        return sum(b.bytes for b in self.bursts)


def _flows(p: Packet, server_ip: str, server_port: int) -> tuple[str, int] | None:
    """(direction, node port) of a packet to or from the server port."""
    if p.src == server_ip and p.sport == server_port:
        return "down", p.dport
    if p.dst == server_ip and p.dport == server_port:
        return "up", p.sport
    return None


def cut_transfer(
    match: TransferMatch,
    packets: Sequence[Packet],
    server: tuple[str, int],
    network: str,
    gap_ns: int,
) -> TransferGaps | None:
    """The bursts and gaps of one matched transfer; None when it has no span."""
    span = match.span if match.complete else None
    if span is None:
        return None
    lo, hi = span[0] - EDGE_NS, span[1] + EDGE_NS
    if match.window is not None:
        lo = min(lo, match.window.start_ns - EDGE_NS)
    near = [(p, f) for p in packets if lo <= p.t_ns <= hi and (f := _flows(p, *server))]
    data = [
        (p.t_ns, p.payload_len)
        for p, (direction, _) in near
        if direction == match.direction and span[0] <= p.t_ns <= span[1]
    ]
    other = [
        p.t_ns
        for p, (direction, _) in near
        if p.payload_len and direction != match.direction
    ]
    bursts = split_bursts(data, gap_ns)
    if not bursts:
        return None
    rate = paced_rate_bps(data)
    return TransferGaps(
        network=network,
        node=match.stamp.node,
        round=match.stamp.round,
        message_type=match.stamp.message_type,
        direction=match.direction,
        start_ns=bursts[0].start_ns,
        end_ns=bursts[-1].end_ns,
        bursts=tuple(bursts),
        gaps=tuple(gaps_between(bursts, other, match.direction, rate)),
        connections=len({port for _, (_, port) in near}),
        syns=sum(1 for p, _ in near if p.flags & TCP_SYN and p.dport == server[1]),
        requests=count_requests([p for p, _ in near], server[1]),
        paced_bps=rate,
    )


def _server(events: Sequence[Mapping[str, Any]]) -> tuple[str, int, str]:
    """(server IP, port, network) from the run's ``run_start`` event."""
    start = next(e for e in events if e.get("event") == EventKind.RUN_START)
    host, _, port = str(start["address"]).rpartition(":")
    return host, int(port), str(start.get("network", ""))


def run_gaps(run_dir: Path, gap_ns: int, min_bytes: int) -> list[TransferGaps]:
    """Every model transfer of one run, cut into bursts."""
    events = read_events(run_dir / "events.jsonl")
    server_ip, port, network = _server(events)
    packets: dict[str, list[Packet]] = {}
    out = []
    for match in transfer_matches(events):
        size = match.message_bytes
        if size is None or size < min_bytes:
            continue
        node = match.stamp.node
        if node not in packets:
            pcap = run_dir / "captures" / f"{node}.pcap"
            packets[node] = read_packets(pcap) if pcap.exists() else []
        cut = cut_transfer(match, packets[node], (server_ip, port), network, gap_ns)
        if cut is not None:
            out.append(cut)
    return out


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _spread(values: Sequence[float], fmt: str) -> str:
    if not values:
        return "-"
    return (
        f"median {statistics.median(values):{fmt}}, "
        f"p90 {_quantile(values, 0.9):{fmt}}, max {max(values):{fmt}}"
    )


def summary_lines(transfers: Sequence[TransferGaps]) -> list[str]:
    """The per network and direction summary."""
    lines = []
    groups: dict[tuple[str, str], list[TransferGaps]] = {}
    for t in transfers:
        groups.setdefault((t.network, t.direction), []).append(t)
    for (network, direction), group in sorted(groups.items()):
        gaps = [g for t in group for g in t.gaps]
        lines.append(f"{network} {direction}: {len(group)} model transfers")
        lines.append(
            f"  span s:            {_spread([t.span_s for t in group], '.3f')}"
        )
        paced = [t.paced_bps / 1e6 for t in group if t.paced_bps]
        floor = [t.bytes * 8 / t.paced_bps for t in group if t.paced_bps]
        lines.append(f"  paced Mbit/s:      {_spread(paced, '.0f')}")
        lines.append(f"  bytes at paced s:  {_spread(floor, '.3f')}")
        lines.append(
            f"  bursts/transfer:   {_spread([len(t.bursts) for t in group], '.0f')}"
        )
        lines.append(
            f"  gap s:             {_spread([g.duration_s for g in gaps], '.3f')}"
        )
        for cause in CAUSES:
            mine = [g.duration_s for g in gaps if g.cause == cause]
            if mine:
                share = sum(mine) / sum(t.span_s for t in group)
                lines.append(
                    f"    {cause:<11} {len(mine):3d} gaps, {sum(mine):6.2f} s "
                    f"({share:.0%} of spans); {_spread(mine, '.3f')}"
                )
        flower = [g for g in gaps if g.cause != "link"]
        sender = sum(g.sender_s for g in flower)
        total = sum(g.duration_s for g in flower)
        side = "SuperLink" if direction == "down" else "SuperNode"
        lines.append(
            f"  non-link gaps:     {total:.2f} s, of which {sender:.2f} s "
            f"({sender / total if total else 0:.0%}) the sender's ({side}) "
            "reaction after the peer's last packet"
        )
        lines.append(
            "  connections:       "
            f"{_spread([t.connections for t in group], '.0f')}; SYNs "
            f"{_spread([t.syns for t in group], '.0f')}"
        )
        lines.append(
            f"  HTTP requests:     {_spread([t.requests for t in group], '.0f')}"
        )
        per_burst = [b.bytes / 1e3 for t in group for b in t.bursts]
        lines.append(f"  kB/burst:          {_spread(per_burst, '.1f')}")
        busy = [sum((b.end_ns - b.start_ns) for b in t.bursts) / 1e9 for t in group]
        lines.append(f"  in bursts s:       {_spread(busy, '.3f')}")
    return lines


def detail_line(t: TransferGaps) -> str:
    """One transfer: its span, bursts and every gap with its cause."""
    gaps = " ".join(f"{g.duration_s * 1e3:.0f}ms:{g.cause}" for g in t.gaps)
    return (
        f"{t.network:<8} {t.node:<8} r{t.round} {t.message_type:<8} {t.direction:<4} "
        f"{t.span_s:6.3f}s {t.bytes / 1e6:5.2f}MB {len(t.bursts):2d} bursts "
        f"{t.connections} conn {t.syns} syn {t.requests:2d} req | {gaps}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Print the gap summary (and optionally every transfer) of a results folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a campaign's results folder")
    parser.add_argument("--gap-ms", type=float, default=DEFAULT_GAP_MS)
    parser.add_argument("--min-bytes", type=int, default=DEFAULT_MIN_BYTES)
    parser.add_argument("--detail", action="store_true", help="one line per transfer")
    args = parser.parse_args(argv)
    runs = sorted(p.parent for p in args.results.glob("runs/*/events.jsonl"))
    if not runs:
        print(f"no runs/*/events.jsonl under {args.results}", file=sys.stderr)
        return 1
    gap_ns = int(args.gap_ms * 1e6)
    transfers = [t for run in runs for t in run_gaps(run, gap_ns, args.min_bytes)]
    print(f"{args.results}: {len(transfers)} model transfers, gap > {args.gap_ms} ms")
    if args.detail:
        for t in transfers:
            print(detail_line(t))
    print("\n".join(summary_lines(transfers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
