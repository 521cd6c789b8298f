"""Wake messages of the low-latency launch (instrumentation/wake.py) leave the
round anatomy exactly as it is: their events, SuperNode log windows and small
transfers between a node's messages are no app message's."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.phases import phases_from_events
from instrumentation.wake import WAKE_MESSAGE_TYPE
from tests.analysis.test_anatomy import MS, RUN, T0, ev, run_events


def _wake(node: str, node_id: int, rnd: int, at_ms: int) -> list[dict[str, Any]]:
    """A wake pushed ``at_ms`` and handled by ``node`` 100 ms later."""
    wid, rid = f"wake-{node}-{rnd}-{at_ms}", f"wake-reply-{node}-{rnd}-{at_ms}"
    logs = [
        ("receive_start", at_ms + 100, wid),
        ("receive_end", at_ms + 110, wid),
        ("send_start", at_ms + 900, rid),
        ("send_end", at_ms + 910, rid),
    ]
    events = [
        ev("wake", 0, stage="dispatch", message_id=wid, node_id=node_id, round=rnd,
           at_ns=T0 + at_ms * MS),
        ev("wake", 0, stage="pickup", message_id=wid, node_id=node_id, round=rnd,
           at_ns=T0 + (at_ms + 1_000) * MS, error=False),
    ]  # fmt: skip
    for kind, when, message_id in logs:
        events.append(
            ev("supernode_log", 0, node=node, kind=kind, at_ns=T0 + when * MS,
               message_type=WAKE_MESSAGE_TYPE, message_id=message_id)
        )  # fmt: skip
    for direction, when in (("down", at_ms + 101), ("up", at_ms + 901)):
        events.append(
            ev("transfer", 0, node=node, network="wifi", direction=direction,
               start_ns=T0 + when * MS, end_ns=T0 + (when + 5) * MS, bytes=700,
               packets=2, retransmissions=0, source="capture")
        )  # fmt: skip
    return events


def test_wakes_between_messages_change_no_phase() -> None:
    plain = phases_from_events(run_events(), RUN)
    # pi1's train reply left at 7.0 s, its evaluate arrives at 10.0 s: the wake
    # of its train instruction runs in between, as it does on a real node
    with_wakes = [*run_events(), *_wake("pi1", 7, 1, 7_050), *_wake("pi2", 8, 1, 6_600)]

    woken = phases_from_events(with_wakes, RUN)

    pd.testing.assert_frame_equal(plain, woken)
    assert set(woken["message_type"].dropna()) <= {"train", "evaluate", ""}
