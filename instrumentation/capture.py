"""Packet capture with tcpdump, and its offline parsing into per-direction transfers.

Capture headers only (``-s 128``) with nanosecond timestamps, parse the pcap after
the run (a live Python sniffer cannot keep up with line rate), and cut each
direction's TCP payload packets into transfers. A transfer's ``start_ns``/``end_ns``
are the kernel's timestamps of its first and last payload packet on the captured
interface: on the sending side's shaped interface that is when the packets left
the shaper, which is what a receiver sees, unlike ``sendall()`` returning.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import signal
import struct
import subprocess
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scapy.utils import RawPcapReader

from instrumentation.link_pace import LinkPace
from instrumentation.schema import EventKind
from inventory.models import is_valid_ifname

# Why 0.25 s: when idle, Flower's SuperNode polls the SuperLink every 3 s (flwr
# 1.42 supernode/start_client_internal.py: ``time.sleep(3)``) and sends a heartbeat
# every 30 s, each a few hundred bytes. A model transfer is a burst of requests
# (a message is pulled or pushed as several objects) whose packets follow each
# other within an RTT (< 50 ms on the 5G, WiFi and Ethernet profiles, shaper queues
# included) or a serialisation time (~5 ms for a 1500-byte frame at 2.5 Mbit/s).
# A gap above 0.25 s is therefore an idle period between transfers, and a gap
# below it can never be an idle poll interval. Links with RTTs near 250 ms need a
# larger gap.
DEFAULT_GAP_S = 0.25
# Link + IPv4/IPv6 + the TCP fields up to the flags must fit in the snapshot.
MIN_SNAPLEN = 96
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0

# pcap link types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_ETHERTYPE_VLAN = frozenset({0x8100, 0x88A8})
_IPPROTO_TCP = 6

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_SEQ_MOD = 1 << 32


class CaptureError(RuntimeError):
    """tcpdump could not be started, did not start listening, or did not stop."""


def tcpdump_argv(
    interface: str,
    pcap_path: Path,
    port: int,
    snaplen: int = 128,
    buffer_kib: int | None = None,
    peer: str | None = None,
) -> list[str]:
    """Build the tcpdump command capturing TCP headers of ``port`` on ``interface``.

    ``peer`` (an IPv4 address) keeps only packets to or from it: on a lab server
    one interface carries every node's traffic, so each node's capture filters.

    ``-Z root`` stops tcpdump from switching to the ``tcpdump`` user after opening
    the interface: the file would then belong to that user (and rotated or
    AppArmor-confined writes fail in folders it may not write). ``-U`` writes each
    packet as it comes, so a killed tcpdump leaves a readable file.
    ``--immediate-mode`` is needed for a complete file: otherwise libpcap's
    TPACKET_V3 ring hands packets over in blocks (when full, or after 1 s), and
    the block still open when SIGINT arrives is lost; seen here: the last
    transfer before ``stop()`` missing from the pcap entirely. ``buffer_kib``
    (``-B``) enlarges the kernel ring when gigabit links drop packets.
    """
    if interface != "any" and not is_valid_ifname(interface):
        raise ValueError(f"invalid interface name {interface!r}")
    if not 0 < port < 65536:
        raise ValueError(f"port must be in 1..65535, got {port}")
    if snaplen < MIN_SNAPLEN:
        raise ValueError(
            f"snaplen {snaplen} cannot hold link, IP and TCP headers; "
            f"use >= {MIN_SNAPLEN}"
        )
    argv = ["tcpdump", "-i", interface, "-Z", "root", "--time-stamp-precision=nano"]
    argv += ["-s", str(snaplen), "-n", "-U", "--immediate-mode"]
    if buffer_kib is not None:
        if buffer_kib <= 0:
            raise ValueError(f"buffer_kib must be > 0, got {buffer_kib}")
        argv += ["-B", str(buffer_kib)]
    expression = f"tcp port {port}"
    if peer is not None:
        expression += f" and host {ipaddress.IPv4Address(peer)}"
    return argv + ["-w", str(pcap_path), expression]


@dataclass(frozen=True)
class CaptureStats:
    """The counters tcpdump prints when it stops.

    ``dropped_by_kernel`` > 0 means the pcap misses packets: transfers computed
    from it undercount bytes and must not be trusted.
    """

    captured: int
    received_by_filter: int
    dropped_by_kernel: int
    dropped_by_interface: int = 0


_STAT = re.compile(r"^(\d+) packets? (captured|received by filter|dropped by \w+)")


def parse_tcpdump_stats(stderr: str) -> CaptureStats:
    """Read tcpdump's closing counters from its stderr."""
    found: dict[str, int] = {}
    for line in stderr.splitlines():
        match = _STAT.match(line.strip())
        if match:
            found[match.group(2)] = int(match.group(1))
    if "captured" not in found:
        raise CaptureError(f"tcpdump printed no packet counters; its stderr:\n{stderr}")
    return CaptureStats(
        captured=found["captured"],
        received_by_filter=found.get("received by filter", 0),
        dropped_by_kernel=found.get("dropped by kernel", 0),
        dropped_by_interface=found.get("dropped by interface", 0),
    )


class Capture:
    """A running tcpdump: ``start()`` waits till it listens, ``stop()`` gets counters.

    ``prefix`` runs it elsewhere, e.g. ``["ip", "netns", "exec", "ns1"]`` (which
    execs tcpdump, so signals reach it directly). Also a context manager.
    """

    def __init__(
        self,
        interface: str,
        pcap_path: Path,
        port: int,
        *,
        snaplen: int = 128,
        buffer_kib: int | None = None,
        prefix: Sequence[str] = (),
        peer: str | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self.pcap_path = Path(pcap_path)
        self.argv = list(prefix) + tcpdump_argv(
            interface, self.pcap_path, port, snaplen, buffer_kib, peer
        )
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: list[str] = []
        self._listening = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def stderr(self) -> str:
        """What tcpdump has written to stderr so far."""
        return "".join(self._stderr)

    def start(self) -> None:
        """Start tcpdump and return once it is capturing; CaptureError otherwise."""
        if self._proc is not None:
            raise CaptureError("capture already started")
        if shutil.which("tcpdump") is None:
            raise CaptureError(
                "tcpdump not found on PATH; install the apt package 'tcpdump' "
                "(apt-get install tcpdump)"
            )
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise CaptureError(f"cannot run {' '.join(self.argv)}: {exc}") from exc
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._listening.wait(0.05):
            if self._proc.poll() is not None:
                self._join_reader(deadline)
                raise CaptureError(
                    f"{' '.join(self.argv)} exited with {self._proc.returncode} before "
                    f"listening; its stderr:\n{self.stderr}"
                )
            if time.monotonic() > deadline:
                self._kill()
                raise CaptureError(
                    f"{' '.join(self.argv)} did not report 'listening on' within "
                    f"{self.start_timeout_s} s; its stderr:\n{self.stderr}"
                )

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            line = raw.decode("utf-8", "replace")
            self._stderr.append(line)
            if "listening on" in line:
                self._listening.set()

    def _join_reader(self, deadline: float) -> None:
        if self._reader is not None:
            self._reader.join(max(0.0, deadline - time.monotonic()))

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(self.stop_timeout_s)

    def stop(self) -> CaptureStats:
        """Stop tcpdump (SIGINT, SIGKILL at the deadline) and return its counters."""
        if self._proc is None:
            raise CaptureError("capture was never started")
        deadline = time.monotonic() + self.stop_timeout_s
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self._kill()
                raise CaptureError(
                    f"tcpdump (pid {self._proc.pid}) ignored SIGINT for "
                    f"{self.stop_timeout_s} s and was killed; {self.pcap_path} may be "
                    "incomplete"
                ) from None
        self._join_reader(deadline)
        return parse_tcpdump_stats(self.stderr)

    def __enter__(self) -> Capture:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self.stop()


@dataclass(frozen=True)
class Packet:
    """The TCP/IP header fields of one captured packet that transfers are built from.

    ``payload_len`` comes from the IP length fields, not the captured bytes, since
    the snapshot length cuts the payload off.
    """

    t_ns: int
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    payload_len: int
    flags: int

    def __post_init__(self) -> None:
        if self.payload_len < 0:
            raise ValueError(f"payload_len must be >= 0, got {self.payload_len}")
        if not 0 <= self.seq < _SEQ_MOD:
            raise ValueError(f"seq must be a 32-bit value, got {self.seq}")


def _link_payload(linktype: int, frame: bytes) -> tuple[int, int] | None:
    """(ethertype, offset of the network header) of a frame, None if not IP."""
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return None
        offset, ethertype = 14, struct.unpack_from("!H", frame, 12)[0]
        while ethertype in _ETHERTYPE_VLAN and len(frame) >= offset + 4:
            ethertype = struct.unpack_from("!H", frame, offset + 2)[0]
            offset += 4
        return ethertype, offset
    if linktype == LINKTYPE_LINUX_SLL:
        return (
            (struct.unpack_from("!H", frame, 14)[0], 16) if len(frame) >= 16 else None
        )
    if linktype == LINKTYPE_LINUX_SLL2:
        return (struct.unpack_from("!H", frame, 0)[0], 20) if len(frame) >= 20 else None
    if linktype == LINKTYPE_RAW and frame:
        version = frame[0] >> 4
        return (_ETHERTYPE_IPV4 if version == 4 else _ETHERTYPE_IPV6), 0
    if linktype == LINKTYPE_NULL and len(frame) >= 4:
        family = struct.unpack_from("=I", frame, 0)[0]
        return (_ETHERTYPE_IPV4 if family == 2 else _ETHERTYPE_IPV6), 4
    return None


def parse_frame(linktype: int, frame: bytes, wirelen: int, t_ns: int) -> Packet | None:
    """Decode one captured frame into a :class:`Packet`; None if it is not TCP/IP.

    The IP length field gives the payload size. A GSO super-packet above 64 KiB
    (BIG TCP) carries length 0 there, so the frame's wire length is used instead.
    """
    link = _link_payload(linktype, frame)
    if link is None:
        return None
    ethertype, ip = link
    if ethertype == _ETHERTYPE_IPV4 and len(frame) >= ip + 20:
        ihl = (frame[ip] & 0x0F) * 4
        total = struct.unpack_from("!H", frame, ip + 2)[0] or wirelen - ip
        if frame[ip + 9] != _IPPROTO_TCP or ihl < 20:
            return None
        src = str(ipaddress.IPv4Address(frame[ip + 12 : ip + 16]))
        dst = str(ipaddress.IPv4Address(frame[ip + 16 : ip + 20]))
        tcp, ip_payload = ip + ihl, total - ihl
    elif ethertype == _ETHERTYPE_IPV6 and len(frame) >= ip + 40:
        # Extension headers are not followed: our servers do not send them.
        if frame[ip + 6] != _IPPROTO_TCP:
            return None
        ip_payload = struct.unpack_from("!H", frame, ip + 4)[0] or wirelen - ip - 40
        src = str(ipaddress.IPv6Address(frame[ip + 8 : ip + 24]))
        dst = str(ipaddress.IPv6Address(frame[ip + 24 : ip + 40]))
        tcp = ip + 40
    else:
        return None
    if len(frame) < tcp + 14:
        return None
    sport, dport, seq = struct.unpack_from("!HHI", frame, tcp)
    data_offset = (frame[tcp + 12] >> 4) * 4
    return Packet(
        t_ns=t_ns,
        src=src,
        dst=dst,
        sport=sport,
        dport=dport,
        seq=seq,
        payload_len=max(0, ip_payload - data_offset),
        flags=frame[tcp + 13],
    )


def read_packets(pcap_path: Path | str) -> list[Packet]:
    """TCP packets of a pcap or pcapng file, with integer-nanosecond timestamps.

    Handles Ethernet (veth, bridges), Linux cooked SLL/SLL2 (``-i any``), raw IP
    and BSD loopback captures; non-TCP frames are skipped.
    """
    packets: list[Packet] = []
    reader: Any = RawPcapReader(str(pcap_path))
    try:
        for frame, meta in reader:
            if hasattr(meta, "tsresol"):  # pcapng: per-interface resolution
                ticks = (meta.tshigh << 32) | meta.tslow
                t_ns = ticks * 1_000_000_000 // meta.tsresol
                linktype = meta.linktype
            else:
                sub = meta.usec if reader.nano else meta.usec * 1000
                t_ns = meta.sec * 1_000_000_000 + sub
                linktype = reader.linktype
            packet = parse_frame(linktype, frame, meta.wirelen, t_ns)
            if packet is not None:
                packets.append(packet)
    finally:
        reader.close()
    return packets


@dataclass(frozen=True)
class Transfer:
    """A burst of TCP payload in one direction between the server and one node.

    ``bytes`` counts each sequence range once; ``retransmissions`` counts payload
    packets whose range (or part of it) was already seen on their connection.
    ``packets`` counts captured frames, which on a GSO-capable interface can each
    carry several on-wire segments. ``busy_ns`` is the part of the span the
    link was busy and ``owed_ns`` how long after ``end_ns`` the link's pace
    still explains silence (:class:`LinkPace`): analysis carries the split
    across the pauses between the bursts of one message.
    """

    direction: str
    node_ip: str
    start_ns: int
    end_ns: int
    bytes: int
    packets: int
    retransmissions: int
    connections: int
    busy_ns: int = 0
    owed_ns: int = 0

    def __post_init__(self) -> None:
        if self.direction not in ("down", "up"):
            raise ValueError(
                f"direction must be 'down' or 'up', got {self.direction!r}"
            )
        if self.end_ns < self.start_ns:
            raise ValueError(f"end_ns {self.end_ns} is before start_ns {self.start_ns}")
        counts = (self.bytes, self.packets, self.retransmissions)
        if min(*counts, self.busy_ns, self.owed_ns) < 0:
            raise ValueError(
                "bytes, packets, retransmissions, busy_ns and owed_ns must be >= 0"
            )

    @property
    def duration_s(self) -> float:
        """First to last payload packet, in seconds."""
        return (self.end_ns - self.start_ns) / 1e9


@dataclass
class _SeqCoverage:
    """Sequence ranges already seen on one connection and direction.

    Sequence numbers are unwrapped to 64 bits relative to the first one seen, so
    transfers over 4 GiB and ISNs near 2**32 work.
    """

    last_raw: int | None = None
    last_abs: int = 0
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)

    def _unwrap(self, seq: int) -> int:
        if self.last_raw is None:
            self.last_raw, self.last_abs = seq, 0
            return 0
        delta = (seq - self.last_raw + (1 << 31)) % _SEQ_MOD - (1 << 31)
        self.last_raw, self.last_abs = seq, self.last_abs + delta
        return self.last_abs

    def add(self, seq: int, length: int) -> int:
        """Record ``[seq, seq + length)``; return how many of its bytes are new."""
        start = self._unwrap(seq)
        end = start + length
        lo = bisect_left(self.ends, start)  # first range that ends at/after start
        hi = bisect_right(self.starts, end)  # ranges that start at/before end
        overlapped = sum(
            max(0, min(end, self.ends[i]) - max(start, self.starts[i]))
            for i in range(lo, hi)
        )
        if lo < hi:
            start, end = min(start, self.starts[lo]), max(end, self.ends[hi - 1])
        self.starts[lo:hi] = [start]
        self.ends[lo:hi] = [end]
        return length - overlapped


@dataclass
class _Burst:
    start_ns: int
    end_ns: int
    link_free_ns: int
    bytes: int = 0
    packets: int = 0
    retransmissions: int = 0
    busy_ns: int = 0
    node_ports: set[int] = field(default_factory=set)

    def freeze(self, direction: str, node_ip: str) -> Transfer:
        return Transfer(
            direction=direction,
            node_ip=node_ip,
            start_ns=self.start_ns,
            end_ns=self.end_ns,
            bytes=self.bytes,
            packets=self.packets,
            retransmissions=self.retransmissions,
            connections=len(self.node_ports),
            busy_ns=self.busy_ns,
            owed_ns=max(0, self.link_free_ns - self.end_ns),
        )


def segment_transfers(
    packets: Iterable[Packet],
    server_ip: str,
    server_port: int,
    gap_s: float = DEFAULT_GAP_S,
    pace: LinkPace | None = None,
) -> list[Transfer]:
    """Cut the payload packets to and from ``server_ip:server_port`` into transfers.

    Per node and direction (``down``: server to node, ``up``: node to server),
    across all the node's connections to the server, a transfer ends where no
    payload packet follows for more than ``gap_s`` (see ``DEFAULT_GAP_S`` for
    why 0.25 s). Each transfer's ``busy_ns`` sums the parts of the pauses between
    its packets that ``pace`` (default: rates unknown, no delay) calls the
    link's, and ``owed_ns`` is what the link still owed after its last packet.
    Returned in order of ``start_ns``.
    """
    pace = pace or LinkPace()
    if gap_s <= 0:
        raise ValueError(f"gap_s must be > 0, got {gap_s}")
    server = str(ipaddress.ip_address(server_ip))
    gap_ns = int(gap_s * 1e9)
    coverage: dict[tuple[str, int, str, int], _SeqCoverage] = {}
    open_bursts: dict[tuple[str, str], _Burst] = {}
    done: list[Transfer] = []
    for p in sorted(packets, key=lambda p: p.t_ns):
        if p.payload_len == 0:
            continue
        if p.src == server and p.sport == server_port:
            direction, node_ip, node_port = "down", p.dst, p.dport
        elif p.dst == server and p.dport == server_port:
            direction, node_ip, node_port = "up", p.src, p.sport
        else:
            continue
        # SYN occupies one sequence number before the data it may carry.
        seq = (p.seq + 1) % _SEQ_MOD if p.flags & TCP_SYN else p.seq
        flow = coverage.setdefault((p.src, p.sport, p.dst, p.dport), _SeqCoverage())
        new = flow.add(seq, p.payload_len)
        key = (node_ip, direction)
        burst = open_bursts.get(key)
        if burst is None or p.t_ns - burst.end_ns > gap_ns:
            if burst is not None:
                done.append(burst.freeze(direction, node_ip))
            burst = open_bursts[key] = _Burst(p.t_ns, p.t_ns, link_free_ns=p.t_ns)
        else:
            owed = burst.link_free_ns - burst.end_ns
            burst.busy_ns += pace.busy_part_ns(p.t_ns - burst.end_ns, owed)
        burst.link_free_ns = max(burst.link_free_ns, p.t_ns) + pace.need_ns(
            direction, p.payload_len
        )
        burst.end_ns = p.t_ns
        burst.bytes += new
        burst.packets += 1
        burst.retransmissions += int(new < p.payload_len)
        burst.node_ports.add(node_port)
    done += [b.freeze(d, ip) for (ip, d), b in open_bursts.items()]
    return sorted(done, key=lambda t: (t.start_ns, t.direction, t.node_ip))


def transfer_events(
    transfers: Iterable[Transfer], node: str, network: str
) -> list[dict[str, Any]]:
    """The ``transfer`` events of docs/events.md, ready for ``EventLog.append(**e)``.

    All ``transfers`` are attributed to ``node``: segment a capture of several
    nodes per node IP first (``Transfer.node_ip``).
    """
    return [
        {
            "event": EventKind.TRANSFER,
            "node": node,
            "network": network,
            "direction": t.direction,
            "start_ns": t.start_ns,
            "end_ns": t.end_ns,
            "bytes": t.bytes,
            "packets": t.packets,
            "retransmissions": t.retransmissions,
            "busy_ns": t.busy_ns,
            "owed_ns": t.owed_ns,
            "source": "capture",
        }
        for t in transfers
    ]
