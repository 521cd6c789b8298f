"""Tests for bench/transfer_gaps.py: bursts, gap causes, requests, planted packets."""

from __future__ import annotations

import pytest

from analysis.matching import Burst, Stamp, TransferMatch
from bench.transfer_gaps import (
    PacketBurst,
    classify_gap,
    count_requests,
    cut_transfer,
    gaps_between,
    paced_rate_bps,
    split_bursts,
)
from instrumentation.capture import TCP_ACK, TCP_PSH, TCP_SYN, Packet

MS = 1_000_000


def test_split_bursts_cuts_at_gaps_above_the_threshold() -> None:
    # Prepare: three packets 1 ms apart, 30 ms idle, two packets, 20 ms idle, one.
    payload = [(0, 100), (1 * MS, 200), (2 * MS, 300), (32 * MS, 400), (33 * MS, 500)]
    payload += [(53 * MS, 600), (10 * MS, 0)]  # and a pure ACK in the first gap

    # Execute
    bursts = split_bursts(reversed(payload), gap_ns=20 * MS)

    # Assert: 30 ms cuts, exactly 20 ms does not; ACKs do not count.
    assert bursts == [
        PacketBurst(0, 2 * MS, 600, 3, first_bytes=100, last_bytes=300),
        PacketBurst(32 * MS, 53 * MS, 1500, 3, first_bytes=400, last_bytes=600),
    ]


def test_split_bursts_of_nothing_is_empty_and_rejects_a_zero_gap() -> None:
    assert split_bursts([(5, 0)], gap_ns=MS) == []
    with pytest.raises(ValueError, match="gap_ns"):
        split_bursts([(0, 1)], gap_ns=0)


@pytest.mark.parametrize(
    ("duration_s", "requests", "direction", "link_s", "cause"),
    [
        (1.1, 1, "down", 0.0, "backoff"),  # first pull retry, 1 s +- 20 %
        (0.85, 2, "down", 0.0, "backoff"),
        (2.3, 1, "down", 0.0, "backoff"),  # second retry, 2 s
        (9.5, 1, "down", 0.0, "backoff"),  # capped at 10 s
        (1.5, 1, "down", 0.0, "request"),  # between 1.2 s and 1.6 s: no sleep
        (1.1, 0, "down", 0.0, "stall"),  # no request: nobody retried
        (0.5, 0, "up", 0.0, "store-poll"),  # the SuperNode's 0.5 s object wait
        (0.5, 0, "down", 0.0, "stall"),
        (0.026, 1, "down", 0.0, "request"),
        (0.034, 0, "up", 0.030, "link"),  # a 37 kB GSO frame at 10 Mbit/s
        (0.034, 1, "up", 0.030, "link"),  # a response on the other connection
        (0.060, 0, "up", 0.030, "stall"),  # twice the link's time is not the link
    ],
)
def test_classify_gap(
    duration_s: float, requests: int, direction: str, link_s: float, cause: str
) -> None:
    assert classify_gap(duration_s, requests, direction, link_s) == cause


def test_gaps_between_counts_requests_and_times_the_senders_reaction() -> None:
    # Prepare: a download: a response, then the node's next request 4 ms into a
    # 30 ms gap, then after 1 s the node asks again and the object comes 2 ms later.
    bursts = split_bursts(
        [(0, 1000), (30 * MS, 1000), (1030 * MS + 2 * MS, 1000)], gap_ns=20 * MS
    )
    requests = [4 * MS, 1030 * MS]

    # Execute
    gaps = gaps_between(bursts, requests, "down")

    # Assert
    assert [g.cause for g in gaps] == ["request", "backoff"]
    assert [g.requests for g in gaps] == [1, 1]
    assert gaps[0].sender_s == pytest.approx(0.026)  # the server took 26 ms
    assert gaps[1].sender_s == pytest.approx(0.002)
    assert gaps[1].duration_s == pytest.approx(1.002)


def test_paced_rate_is_the_median_rate_of_large_packets() -> None:
    # 64 kB frames every 52.4 ms is 10 Mbit/s; small packets do not count.
    frame = 65_536
    gap = int(frame * 8 / 10e6 * 1e9)
    payload = [(i * gap, frame) for i in range(5)] + [(4 * gap + 1, 100)]
    assert paced_rate_bps(payload) == pytest.approx(10e6, rel=1e-6)
    assert paced_rate_bps([(0, 100), (MS, 100)]) == 0.0


def _packet(t_ms: int, from_node: bool, port: int, length: int) -> Packet:
    node, server = ("10.0.0.2", port), ("10.0.0.1", 8000)
    src, dst = (node, server) if from_node else (server, node)
    return Packet(
        t_ns=t_ms * MS,
        src=src[0],
        dst=dst[0],
        sport=src[1],
        dport=dst[1],
        seq=t_ms,
        payload_len=length,
        flags=TCP_ACK | TCP_PSH,
    )


def test_count_requests_counts_runs_of_node_payload_per_connection() -> None:
    # Prepare: on port 5000 two requests (headers + body each) and their
    # responses; on port 5001 one request interleaved with them; ACKs between.
    packets = [
        _packet(0, True, 5000, 838),
        _packet(1, True, 5000, 88),  # same request's body
        _packet(2, True, 5001, 838),  # another connection's request
        _packet(3, False, 5000, 130),
        _packet(4, True, 5000, 0),  # an ACK is no request
        _packet(5, False, 5000, 4000),
        _packet(6, True, 5000, 838),
        _packet(7, False, 5001, 130),
        _packet(8, False, 5000, 130),
    ]

    # Execute / Assert
    assert count_requests(packets, 8000) == 3


def test_cut_transfer_cuts_a_matched_download_on_its_own_packets() -> None:
    # Prepare: a download matched over 10..1030 ms: the node opens a connection
    # (SYN at -5 ms), asks (0 ms), gets a small object (10 ms), asks again
    # (12 ms), is told "not yet" (14 ms), asks after a 1 s back-off (1014 ms)
    # and gets the 64 kB object (1020..1030 ms).
    stamp = Stamp(
        "client1",
        1,
        1,
        "training",
        "train",
        2_000 * MS,
        3_000 * MS,
        70_000,
        70_000,
        "client_mod",
        "m",
        "r",
    )
    match = TransferMatch(
        stamp,
        "down",
        None,
        (Burst("client1", "down", 10 * MS, 1030 * MS, 70_000),),
        complete=True,
        reason="",
    )
    syn = Packet(-5 * MS, "10.0.0.2", "10.0.0.1", 5000, 8000, 0, 0, TCP_SYN)
    packets = [
        syn,
        _packet(0, True, 5000, 838),
        _packet(10, False, 5000, 5000),
        _packet(12, True, 5000, 838),
        _packet(14, False, 5000, 130),
        _packet(1014, True, 5000, 838),
        _packet(1020, False, 5000, 32_000),
        _packet(1030, False, 5000, 32_000),
    ]

    # Execute
    cut = cut_transfer(match, packets, ("10.0.0.1", 8000), "5g", gap_ns=20 * MS)

    # Assert
    assert cut is not None
    assert [(b.start_ns, b.bytes) for b in cut.bursts] == [
        (10 * MS, 5130),
        (1020 * MS, 64_000),
    ]
    assert [g.cause for g in cut.gaps] == ["backoff"]
    assert (cut.connections, cut.syns, cut.requests) == (1, 1, 3)
    assert cut.span_s == pytest.approx(1.02)
