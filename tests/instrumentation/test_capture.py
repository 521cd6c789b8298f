"""Tests of instrumentation/capture.py: tcpdump command, pcap parsing, transfer cutting.

The root tests build their own pair of network namespaces joined by a shaped veth,
move real TCP traffic across it and check the parsed transfers against what was sent.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether
from scapy.packet import Packet as ScapyPacket
from scapy.packet import Raw

from instrumentation.capture import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    TCP_ACK,
    TCP_PSH,
    TCP_SYN,
    Capture,
    CaptureError,
    CaptureStats,
    Packet,
    Transfer,
    parse_frame,
    parse_tcpdump_stats,
    read_packets,
    segment_transfers,
    tcpdump_argv,
    transfer_events,
)
from instrumentation.link_pace import LinkPace

# ---------------------------------------------------------------- tcpdump_argv

_FILTER = "tcp port 9092"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("veth0", Path("/r/run.pcap"), 9092),
            [
                "tcpdump",
                "-i",
                "veth0",
                "-Z",
                "root",
                "--time-stamp-precision=nano",
                "-s",
                "128",
                "-n",
                "-U",
                "--immediate-mode",
                "-w",
                "/r/run.pcap",
                _FILTER,
            ],
        ),
        (
            ("any", Path("x.pcap"), 9092, 256),
            [
                "tcpdump",
                "-i",
                "any",
                "-Z",
                "root",
                "--time-stamp-precision=nano",
                "-s",
                "256",
                "-n",
                "-U",
                "--immediate-mode",
                "-w",
                "x.pcap",
                _FILTER,
            ],
        ),
        (
            ("eth0", Path("a b.pcap"), 443, 128, 8192),
            [
                "tcpdump",
                "-i",
                "eth0",
                "-Z",
                "root",
                "--time-stamp-precision=nano",
                "-s",
                "128",
                "-n",
                "-U",
                "--immediate-mode",
                "-B",
                "8192",
                "-w",
                "a b.pcap",
                "tcp port 443",
            ],
        ),
    ],
)
def test_tcpdump_argv(args: tuple[object, ...], expected: list[str]) -> None:
    assert tcpdump_argv(*args) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("eth0; rm", Path("x"), 1), "invalid interface"),
        (("eth0", Path("x"), 0), "port"),
        (("eth0", Path("x"), 70000), "port"),
        (("eth0", Path("x"), 80, 60), "snaplen"),
        (("eth0", Path("x"), 80, 128, 0), "buffer_kib"),
    ],
)
def test_tcpdump_argv_rejects_bad_input(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tcpdump_argv(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (
            "tcpdump: listening on v0, link-type EN10MB (Ethernet), snapshot length "
            "128 bytes\n1432 packets captured\n1440 packets received by filter\n"
            "3 packets dropped by kernel\n",
            CaptureStats(captured=1432, received_by_filter=1440, dropped_by_kernel=3),
        ),
        (
            "1 packet captured\n1 packet received by filter\n0 packets dropped by "
            "kernel\n7 packets dropped by interface\n",
            CaptureStats(1, 1, 0, dropped_by_interface=7),
        ),
    ],
)
def test_parse_tcpdump_stats(stderr: str, expected: CaptureStats) -> None:
    assert parse_tcpdump_stats(stderr) == expected


def test_parse_tcpdump_stats_without_counters_shows_stderr() -> None:
    with pytest.raises(CaptureError, match="No such device"):
        parse_tcpdump_stats("tcpdump: vx: No such device exists\n")


def test_missing_tcpdump_names_the_apt_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CaptureError, match="apt package 'tcpdump'"):
        Capture("lo", tmp_path / "x.pcap", 80).start()


# ---------------------------------------------------------------- frame parsing

_PAYLOAD = b"z" * 1000
_SNAP = 128


def _tcp(payload: bytes = _PAYLOAD) -> ScapyPacket:
    return TCP(
        sport=9092,
        dport=40000,
        seq=123456,
        flags="PA",
        options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))],
    ) / Raw(payload)


@pytest.mark.parametrize(
    ("linktype", "frame", "src", "dst"),
    [
        (
            LINKTYPE_ETHERNET,
            Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / _tcp(),
            "10.0.0.1",
            "10.0.0.2",
        ),
        (
            LINKTYPE_ETHERNET,
            Ether() / IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x01" * 8) / _tcp(),
            "10.0.0.1",
            "10.0.0.2",
        ),
        (
            LINKTYPE_LINUX_SLL,
            CookedLinux(proto=0x0800) / IP(src="10.0.0.1", dst="10.0.0.2") / _tcp(),
            "10.0.0.1",
            "10.0.0.2",
        ),
        (
            LINKTYPE_LINUX_SLL2,
            CookedLinuxV2(proto=0x0800) / IP(src="10.0.0.1", dst="10.0.0.2") / _tcp(),
            "10.0.0.1",
            "10.0.0.2",
        ),
        (
            LINKTYPE_ETHERNET,
            Ether() / IPv6(src="fd00::1", dst="fd00::2") / _tcp(),
            "fd00::1",
            "fd00::2",
        ),
    ],
)
def test_parse_frame_takes_payload_length_from_headers_not_snapshot(
    linktype: int, frame: ScapyPacket, src: str, dst: str
) -> None:
    raw = bytes(frame)
    packet = parse_frame(linktype, raw[:_SNAP], len(raw), 7)

    assert packet == Packet(
        t_ns=7,
        src=src,
        dst=dst,
        sport=9092,
        dport=40000,
        seq=123456,
        payload_len=1000,
        flags=TCP_PSH | TCP_ACK,
    )


def test_parse_frame_skips_non_tcp() -> None:
    raw = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2", proto=17) / Raw(b"x" * 8))
    assert parse_frame(LINKTYPE_ETHERNET, raw, len(raw), 0) is None


def _write_nano_pcap(path: Path, frames: list[tuple[int, bytes]]) -> None:
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, _SNAP, 1))
        for t_ns, raw in frames:
            cap = raw[:_SNAP]
            sec, nsec = divmod(t_ns, 1_000_000_000)
            f.write(struct.pack("<IIII", sec, nsec, len(cap), len(raw)) + cap)


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


def _write_nano_pcapng(path: Path, frames: list[tuple[int, bytes]]) -> None:
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    tsresol = struct.pack("<HH", 9, 1) + _pad4(b"\x09") + struct.pack("<HH", 0, 0)
    idb = _block(1, struct.pack("<HHI", 1, 0, _SNAP) + tsresol)
    epbs = b""
    for t_ns, raw in frames:
        cap = raw[:_SNAP]
        head = struct.pack(
            "<IIIII", 0, t_ns >> 32, t_ns & 0xFFFFFFFF, len(cap), len(raw)
        )
        epbs += _block(6, head + _pad4(cap))
    path.write_bytes(shb + idb + epbs)


@pytest.mark.parametrize("writer", [_write_nano_pcap, _write_nano_pcapng])
def test_read_packets_keeps_integer_nanoseconds(tmp_path: Path, writer: object) -> None:
    # Two instants 1 ns apart, more digits than a float of seconds can hold.
    t0 = 1_761_000_000_123_456_789
    raw = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / _tcp())
    udp = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2", proto=17) / Raw(b"u"))
    path = tmp_path / "run.pcap"
    writer(path, [(t0, raw), (t0 + 1, udp), (t0 + 1, raw)])  # type: ignore[operator]

    packets = read_packets(path)

    assert [p.t_ns for p in packets] == [t0, t0 + 1]
    assert all(type(p.t_ns) is int for p in packets)
    assert {p.payload_len for p in packets} == {1000}


# ---------------------------------------------------------------- segment_transfers

SERVER, NODE, OTHER = "10.1.0.1", "10.1.0.11", "10.1.0.12"
PORT = 9092
MS = 1_000_000


def _down(
    t_ms: float, seq: int, length: int, port: int = 50000, node: str = NODE
) -> Packet:
    return Packet(int(t_ms * MS), SERVER, node, PORT, port, seq, length, TCP_ACK)


def _up(
    t_ms: float, seq: int, length: int, port: int = 50000, node: str = NODE
) -> Packet:
    return Packet(int(t_ms * MS), node, SERVER, port, PORT, seq, length, TCP_ACK)


def test_two_bursts_separated_by_more_than_the_gap_are_two_transfers() -> None:
    packets = [_down(t, 1000 + i * 1448, 1448) for i, t in enumerate([0, 5, 10])]
    packets += [_down(t, 1000 + (3 + i) * 1448, 1448) for i, t in enumerate([300, 301])]
    packets += [_down(11, 0, 0)]  # a pure ACK-like packet carries no payload

    transfers = segment_transfers(packets, SERVER, PORT, gap_s=0.25)

    # every pause inside each burst is under BUSY_GAP_S: the link was busy throughout
    assert transfers == [
        Transfer("down", NODE, 0, 10 * MS, 3 * 1448, 3, 0, 1, busy_ns=10 * MS),
        Transfer("down", NODE, 300 * MS, 301 * MS, 2 * 1448, 2, 0, 1, busy_ns=1 * MS),
    ]


def test_link_busy_time_leaves_out_pauses_the_link_does_not_explain() -> None:
    # 0-4 ms packets back to back, a 100 ms host stall, then 2 more packets
    times = [0, 1, 2, 3, 4, 104, 105]
    packets = [_up(t, i * 1448, 1448) for i, t in enumerate(times)]

    (transfer,) = segment_transfers(packets, SERVER, PORT, gap_s=0.25)

    assert transfer.busy_ns == 5 * MS  # the 100 ms stall is a gap
    assert (transfer.end_ns - transfer.start_ns) - transfer.busy_ns == 100 * MS


def test_link_pace_counts_a_slow_links_frame_time_and_round_trip_as_busy() -> None:
    # 64 kB GSO frames 200 ms apart: at 2.6 Mbit/s the shaper needs 209 ms each
    frames = [_down(t, i * 65_000, 65_000) for i, t in enumerate([0, 200, 400])]
    slow = LinkPace(down_mbit=2.6, up_mbit=1.0)
    assert segment_transfers(frames, SERVER, PORT, pace=slow)[0].busy_ns == 400 * MS
    # on a gigabit link only the frames' own 0.58 ms each are the link's
    fast = LinkPace(down_mbit=940.0, up_mbit=940.0)
    (transfer,) = segment_transfers(frames, SERVER, PORT, pace=fast)
    assert transfer.busy_ns == 2 * fast.need_ns("down", 65_000)
    assert 0.5 * MS < fast.need_ns("down", 65_000) < 0.6 * MS
    # ...unless a 150 ms round trip explains the pauses (TCP waiting for its ACKs)
    far = LinkPace(down_mbit=940.0, up_mbit=940.0, rtt_s=0.15)
    assert segment_transfers(frames, SERVER, PORT, pace=far)[0].busy_ns == 400 * MS


def test_link_busy_time_follows_a_shaper_that_releases_whole_gso_frames() -> None:
    # What the e2e 4 Mbit/s uplink looks like: the shaper releases one 64 kB
    # GSO frame at a time, the receiver sees it as 4 GRO frames back to back,
    # then nothing for the ~135 ms the tokens take to come back.
    pace = LinkPace(up_mbit=4.0)
    packets, seq = [], 0
    for run in range(10):
        for k in range(4):
            packets.append(_up(run * 135 + k * 0.1, seq, 16_000))
            seq += 16_000
    (transfer,) = segment_transfers(packets, SERVER, PORT, gap_s=0.25, pace=pace)
    span = transfer.end_ns - transfer.start_ns
    assert transfer.busy_ns == span  # every pause is what the link owed
    # the link owes the last run's time after it: analysis carries it across
    # the pause to the message's next burst
    assert 0.12 * 1e9 < transfer.owed_ns < 0.14 * 1e9


def test_a_host_stall_on_a_slow_link_is_the_links_only_for_what_it_owed() -> None:
    pace = LinkPace(up_mbit=4.0)
    # 48 kB at 4 Mbit/s: the link owes ~100 ms; the host then stalls 400 ms
    packets = [_up(0, 0, 48_000), _up(400, 48_000, 1448)]
    (transfer,) = segment_transfers(packets, SERVER, PORT, gap_s=0.5, pace=pace)
    owed = pace.need_ns("up", 48_000)
    assert 0.09 * 1e9 < owed < 0.11 * 1e9
    assert transfer.busy_ns == owed
    assert (transfer.end_ns - transfer.start_ns) - transfer.busy_ns == 400 * MS - owed


def test_link_pace_refuses_impossible_rates() -> None:
    with pytest.raises(ValueError, match="down_mbit"):
        LinkPace(down_mbit=0.0)
    with pytest.raises(ValueError, match="rtt_s"):
        LinkPace(rtt_s=-1.0)


def test_gap_just_below_the_threshold_keeps_one_transfer() -> None:
    packets = [_down(0, 0, 100), _down(249, 100, 100)]
    assert len(segment_transfers(packets, SERVER, PORT, gap_s=0.25)) == 1


def test_retransmitted_bytes_are_counted_once() -> None:
    packets = [
        _down(0, 5000, 1000),
        _down(1, 6000, 1000),
        _down(2, 5000, 1000),  # full retransmission
        _down(3, 6500, 1000),  # half old, half new
        _down(4, 9000, 500),  # leaves a hole 7500..9000
        _down(5, 7500, 1500),  # fills the hole: new bytes, not a retransmission
    ]

    (transfer,) = segment_transfers(packets, SERVER, PORT)

    assert transfer.bytes == 9500 - 5000
    assert transfer.packets == 6
    assert transfer.retransmissions == 2
    assert transfer.end_ns == 5 * MS


def test_sequence_numbers_wrapping_past_2_32_are_not_retransmissions() -> None:
    top = 2**32 - 1000
    packets = [_down(0, top, 1000), _down(1, 0, 1000), _down(2, 1000, 1000)]

    (transfer,) = segment_transfers(packets, SERVER, PORT)

    assert (transfer.bytes, transfer.retransmissions) == (3000, 0)


def test_syn_with_data_counts_from_the_sequence_number_after_it() -> None:
    syn = Packet(0, NODE, SERVER, 50000, PORT, 99, 100, TCP_SYN)
    packets = [syn, _up(1, 200, 100), _up(2, 300, 100)]

    (transfer,) = segment_transfers(packets, SERVER, PORT)

    assert (transfer.bytes, transfer.retransmissions) == (300, 0)


def test_interleaved_directions_are_separate_transfers() -> None:
    packets = []
    for i in range(10):
        packets.append(_down(i * 10, i * 1000, 1000))
        packets.append(_up(i * 10 + 5, 70000 + i * 100, 100))

    transfers = segment_transfers(packets, SERVER, PORT)

    assert [(t.direction, t.bytes, t.start_ns, t.end_ns) for t in transfers] == [
        ("down", 10_000, 0, 90 * MS),
        ("up", 1000, 5 * MS, 95 * MS),
    ]


def test_connections_of_one_node_share_a_transfer_and_nodes_do_not() -> None:
    packets = [
        _down(0, 0, 1000, port=50000),
        _down(1, 0, 1000, port=50001),  # same seq on another connection: not a retx
        _down(2, 1000, 1000, port=50000),
        _down(1, 0, 400, node=OTHER),
        _up(0.5, 0, 10, port=50002),
        Packet(1 * MS, SERVER, NODE, 22, 50000, 0, 999, TCP_ACK),  # another service
    ]

    transfers = segment_transfers(packets, SERVER, PORT)

    by_key = {(t.node_ip, t.direction): t for t in transfers}
    assert set(by_key) == {(NODE, "down"), (NODE, "up"), (OTHER, "down")}
    assert by_key[(NODE, "down")].bytes == 3000
    assert by_key[(NODE, "down")].connections == 2
    assert by_key[(NODE, "down")].retransmissions == 0
    assert by_key[(OTHER, "down")].bytes == 400
    assert [t.start_ns for t in transfers] == sorted(t.start_ns for t in transfers)


def test_transfer_events_follow_the_contract() -> None:
    transfer = Transfer("up", NODE, 10, 20, 300, 3, 1, 2, busy_ns=7, owed_ns=5)

    assert transfer_events([transfer], "pi1", "5g") == [
        {
            "event": "transfer",
            "node": "pi1",
            "network": "5g",
            "direction": "up",
            "start_ns": 10,
            "end_ns": 20,
            "bytes": 300,
            "packets": 3,
            "retransmissions": 1,
            "busy_ns": 7,
            "owed_ns": 5,
            "source": "capture",
        }
    ]


# ---------------------------------------------------------------- real capture

RATE_BIT_S = 8_000_000
DOWN_BYTES = 2_000_000
UP_BYTES = 500_000
TEST_PORT = 5999

SERVER_CODE = f"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], {TEST_PORT}))
s.listen(1)
print("ready", flush=True)
s.settimeout(30)
c, _ = s.accept()
c.settimeout(30)
c.sendall(b"d" * {DOWN_BYTES})
got = 0
while got < {UP_BYTES}:
    chunk = c.recv(65536)
    if not chunk:
        break
    got += len(chunk)
c.close()
print(got, flush=True)
"""

CLIENT_CODE = f"""
import socket, sys, time
c = socket.create_connection((sys.argv[1], {TEST_PORT}), timeout=30)
got = 0
while got < {DOWN_BYTES}:
    chunk = c.recv(65536)
    if not chunk:
        break
    got += len(chunk)
time.sleep(1.0)
c.sendall(b"u" * {UP_BYTES})
c.shutdown(socket.SHUT_WR)
c.recv(1)
print(got, flush=True)
"""


@dataclass(frozen=True)
class NetnsPair:
    """Two namespaces joined by a veth whose server side is shaped by TBF."""

    server_ns: str
    client_ns: str
    server_if: str
    client_if: str
    server_ip: str = "10.77.0.1"
    client_ip: str = "10.77.0.2"


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=20)


def _root_tools_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool in ("ip", "tc", "tcpdump"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


@pytest.fixture
def netns_pair() -> Iterator[NetnsPair]:
    missing = _root_tools_missing()
    if missing:
        pytest.skip(missing)
    suffix = secrets.token_hex(3)
    pair = NetnsPair(
        server_ns=f"fbtcap{suffix}s",
        client_ns=f"fbtcap{suffix}c",
        server_if=f"fbc{suffix}s",
        client_if=f"fbc{suffix}c",
    )
    try:
        _run("ip", "netns", "add", pair.server_ns)
        _run("ip", "netns", "add", pair.client_ns)
        _run(
            "ip",
            "link",
            "add",
            pair.server_if,
            "netns",
            pair.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            pair.client_if,
            "netns",
            pair.client_ns,
        )
        for ns, ifname, ip in (
            (pair.server_ns, pair.server_if, pair.server_ip),
            (pair.client_ns, pair.client_if, pair.client_ip),
        ):
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifname)
            _run("ip", "-n", ns, "link", "set", ifname, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        # Shapes the downlink: server-side egress.
        _run(
            "ip",
            "netns",
            "exec",
            pair.server_ns,
            "tc",
            "qdisc",
            "add",
            "dev",
            pair.server_if,
            "root",
            "tbf",
            "rate",
            "8mbit",
            "burst",
            "32kbit",
            "latency",
            "400ms",
        )
        yield pair
    finally:
        for ns in (pair.server_ns, pair.client_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def _in_ns(ns: str) -> list[str]:
    return ["ip", "netns", "exec", ns]


def _exchange(pair: NetnsPair) -> None:
    """Server sends DOWN_BYTES, client waits 1 s and sends UP_BYTES back."""
    server = subprocess.Popen(
        [*_in_ns(pair.server_ns), sys.executable, "-c", SERVER_CODE, pair.server_ip],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        client = subprocess.run(
            [
                *_in_ns(pair.client_ns),
                sys.executable,
                "-c",
                CLIENT_CODE,
                pair.server_ip,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert client.returncode == 0, client.stderr
        assert int(client.stdout) == DOWN_BYTES
        server_out, _ = server.communicate(timeout=30)
        assert int(server_out) == UP_BYTES
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


def _expected_shaped_s(payload_bytes: int, mss: int) -> float:
    """Time TBF needs for ``payload_bytes`` in full segments at RATE_BIT_S.

    TBF charges each segment its Ethernet frame: payload + 14 (Ethernet) + 20 (IPv4)
    + 32 (TCP with the timestamp option, Linux's default), also for GSO packets
    of several segments (the kernel adds the headers of each). That is 4.5 % on
    top of the payload at MSS 1448 (MTU 1500), small against the 15 % tolerance
    but not nothing. The 4000-byte bucket sent at once shortens it by 4 ms.
    """
    segments = math.ceil(payload_bytes / mss)
    return (payload_bytes + segments * (14 + 20 + 32)) * 8 / RATE_BIT_S


@pytest.mark.root
@pytest.mark.parametrize("side", ["server-veth", "client-any"])
def test_real_capture_of_a_shaped_veth(
    netns_pair: NetnsPair, tmp_path: Path, side: str
) -> None:
    pair = netns_pair
    ns, interface = (
        (pair.server_ns, pair.server_if)
        if side == "server-veth"
        else (pair.client_ns, "any")  # Linux cooked (SLL2) frames
    )
    pcap = tmp_path / "run.pcap"
    capture = Capture(interface, pcap, TEST_PORT, prefix=_in_ns(ns))
    before = time.time_ns()

    capture.start()
    try:
        _exchange(pair)
    finally:
        stats = capture.stop()
    after = time.time_ns()

    packets = read_packets(pcap)
    transfers = segment_transfers(packets, pair.server_ip, TEST_PORT)
    assert stats.dropped_by_kernel == 0
    assert stats.captured == len(packets)
    assert [(t.direction, t.node_ip, t.bytes) for t in transfers] == [
        ("down", pair.client_ip, DOWN_BYTES),
        ("up", pair.client_ip, UP_BYTES),
    ]
    down, up = transfers
    assert before < down.start_ns < down.end_ns < up.start_ns < up.end_ns < after
    assert up.start_ns - down.end_ns > 0.9e9  # the client's 1 s pause
    expected = _expected_shaped_s(DOWN_BYTES, mss=1500 - 20 - 32)
    assert down.duration_s == pytest.approx(expected, rel=0.15)
    # Unshaped veth: the 500 kB go at memory speed, far faster than 8 Mbit/s.
    assert up.duration_s < UP_BYTES * 8 / RATE_BIT_S / 4


@pytest.mark.root
def test_capture_on_a_missing_interface_fails_with_tcpdump_message(
    netns_pair: NetnsPair, tmp_path: Path
) -> None:
    capture = Capture(
        "fbtnosuchif",
        tmp_path / "x.pcap",
        TEST_PORT,
        prefix=_in_ns(netns_pair.server_ns),
        start_timeout_s=5,
    )
    with pytest.raises(CaptureError, match="exited with .* before listening"):
        capture.start()
