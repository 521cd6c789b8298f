"""The delay line's pure parts: due times, jitter without reordering, wire format."""

from __future__ import annotations

import random

import pytest

from testbed.emulation import nfqueue
from testbed.emulation.delay_schedule import MS_NS, DelaySchedule, DelaySpec


def test_a_packet_is_due_after_the_one_way_delay() -> None:
    schedule = DelaySchedule(DelaySpec(15.0), random.Random(0))

    due = schedule.admit(7, arrival_ns=1_000 * MS_NS)

    assert due == 1_015 * MS_NS
    assert schedule.release(due - 1) == []
    assert schedule.release(due) == [7]


def test_jitter_stays_in_its_band_and_never_reorders() -> None:
    schedule = DelaySchedule(DelaySpec(15.0, 3.0), random.Random(1))

    dues = [schedule.admit(i, arrival_ns=i * 5 * MS_NS) for i in range(500)]

    assert dues == sorted(dues)
    delays = [(d - i * 5 * MS_NS) / MS_NS for i, d in enumerate(dues)]
    assert min(delays) >= 12.0 and max(delays) <= 18.0
    assert sum(delays) / len(delays) == pytest.approx(15.0, abs=0.5)
    assert schedule.release(dues[-1]) == list(range(500))


def test_reordering_only_when_asked() -> None:
    schedule = DelaySchedule(DelaySpec(10.0, 9.0, reorder=True), random.Random(2))
    for i in range(200):
        schedule.admit(i, arrival_ns=i * MS_NS // 10)

    released = schedule.release(10**12)

    assert sorted(released) == list(range(200)) and released != list(range(200))


def test_verdict_batch_and_packet_parse_round_trip() -> None:
    batch = nfqueue.verdict_batch(32768, 41)
    assert len(batch) == 32 and batch[4:6] == bytes([3, 3])  # type QUEUE<<8 | BATCH
    assert batch[18:20] == (32768).to_bytes(2, "big")
    # a packet message as the kernel sends it: nfgenmsg + NFQA_PACKET_HDR
    hdr = nfqueue.attribute(
        nfqueue.NFQA_PACKET_HDR, (41).to_bytes(4, "big") + b"\x08\x00\x00"
    )
    packet = nfqueue.message(nfqueue.NFQNL_MSG_PACKET, 5, hdr, flags=0)

    assert nfqueue.parse(packet + packet) == [nfqueue.Queued(5, 41)] * 2
