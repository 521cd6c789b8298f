"""Tests of analysis/wire.py: capture against SuperNode windows, and byte accounting."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from analysis.phases import RunInfo, phases_from_events
from analysis.wire import (
    RECONCILE_DTYPES,
    byte_accounting,
    reconcile_transfers,
    transfer_matches,
)

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
RUN = RunInfo("study", "5g-fedavg-r1", "5g", "fedavg", 1)
MODEL = 2_000_000


def ev(event: str, **fields: Any) -> dict[str, Any]:
    return {"event": event, "run_id": RUN.run_id, "t_ns": T0, **fields}


def stamp(start: int, end: int, b_out: int = MODEL, offset: int = 0) -> dict[str, Any]:
    return ev(
        "phase",
        phase="training",
        round=1,
        node="pi1",
        node_id=3,
        message_type="train",
        start_ns=T0 + start * MS + offset,
        end_ns=T0 + end * MS + offset,
        bytes_in=MODEL,
        bytes_out=b_out,
        source="client_mod",
    )


def window(kind: str, start: int, end: int, offset: int = 0) -> list[dict[str, Any]]:
    first, last = (
        ("receive_start", "receive_end")
        if kind == "down"
        else (
            "send_start",
            "send_end",
        )
    )
    return [
        ev("supernode_log", node="pi1", kind=k, at_ns=T0 + at * MS + offset,
           message_type="train", message_id=f"{kind}{start}")
        for k, at in ((first, start), (last, end))
    ]  # fmt: skip


def burst(
    direction: str, start: int, end: int, nbytes: int, retrans: int = 0
) -> dict[str, Any]:
    return ev(
        "transfer",
        node="pi1",
        network="5g",
        direction=direction,
        start_ns=T0 + start * MS,
        end_ns=T0 + end * MS,
        bytes=nbytes,
        packets=nbytes // 1448 + 1,
        retransmissions=retrans,
        source="capture",
    )


def events(offset: int = 0) -> list[dict[str, Any]]:
    """Instruction: window and capture agree. Reply: the window is 1 s longer."""
    return [
        *window("down", 1_000, 2_000, offset),
        burst("down", 1_002, 1_998, MODEL + 500, retrans=2),
        stamp(3_000, 4_000, offset=offset),
        *window("up", 4_100, 6_100, offset),
        burst("up", 4_110, 4_600, MODEL // 2, retrans=1),
        burst("up", 4_800, 5_110, MODEL // 2 + 900, retrans=3),
    ]


def by_direction(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {
        str(r["direction"]): {str(k): v for k, v in r.items()}
        for r in df.to_dict("records")
    }


def test_reconcile_flags_the_planted_disagreement_only() -> None:
    df = by_direction(reconcile_transfers(events()))

    down, up = df["down"], df["up"]
    assert down["wire_s"] == pytest.approx(0.996)
    assert down["log_s"] == pytest.approx(1.0)
    assert down["diff_s"] == pytest.approx(0.004)
    assert down["disagrees"] is False
    assert up["wire_s"] == pytest.approx(1.0)
    assert up["log_s"] == pytest.approx(2.0)
    assert up["diff_s"] == pytest.approx(1.0)
    assert up["diff_pct"] == pytest.approx(100.0)
    assert up["disagrees"] is True


def test_reconcile_counts_retransmissions_bursts_and_goodput() -> None:
    df = by_direction(reconcile_transfers(events()))

    assert df["up"]["retransmissions"] == 4
    assert df["up"]["bursts"] == 2
    assert df["up"]["wire_bytes"] == MODEL + 900
    assert df["up"]["goodput_mbit"] == pytest.approx((MODEL + 900) * 8 / 1.0 / 1e6)
    assert df["down"]["retransmissions"] == 2
    assert df["down"]["network"] == "5g"


def test_reconcile_splits_the_wire_into_link_busy_time_and_gaps() -> None:
    stamped = events()
    for e, busy_ms in zip(stamped[-2:], (400, 300), strict=True):
        e["busy_ns"] = busy_ms * MS
    up = by_direction(reconcile_transfers(stamped))["up"]
    assert up["busy_s"] == pytest.approx(0.7)
    # 1.0 s on the wire: 0.7 s busy, 0.3 s of gaps (0.2 s between the bursts)
    assert up["gaps_s"] == pytest.approx(0.3)
    # bursts from before busy_ns was recorded: no split rather than a wrong one
    down = by_direction(reconcile_transfers(stamped))["down"]
    assert pd.isna(down["busy_s"]) and pd.isna(down["gaps_s"])


def test_link_busy_time_credits_what_the_link_still_owed_between_bursts() -> None:
    # 4110-4600 and 4800-5110: a 200 ms pause between the two bursts
    def up_busy(owed_ms: int) -> float:
        stamped = events()
        for e, busy_ms in zip(stamped[-2:], (400, 300), strict=True):
            e["busy_ns"] = busy_ms * MS
            e["owed_ns"] = owed_ms * MS
        return float(by_direction(reconcile_transfers(stamped))["up"]["busy_s"])

    # nothing owed: the pause is all gap (no round-trip allowance across bursts)
    assert up_busy(0) == pytest.approx(0.7)
    # a shaper that released a whole frame and still owed 150 ms: pause <= 1.5x owed
    assert up_busy(150) == pytest.approx(0.9)
    # owed 50 ms: the link explains 50 ms of the pause, the host the other 150
    assert up_busy(50) == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("threshold_s", "threshold_share", "flagged"),
    [(0.02, 0.05, True), (1.5, 0.05, False), (0.02, 1.5, False)],
)
def test_reconcile_threshold_is_the_larger_of_seconds_and_share(
    threshold_s: float, threshold_share: float, flagged: bool
) -> None:
    df = reconcile_transfers(events(), threshold_s, threshold_share)

    assert df.loc[df["direction"] == "up", "disagrees"].tolist() == [flagged]


def test_reconcile_corrects_the_node_clock_before_comparing() -> None:
    offset = 3_000 * MS
    clocks = [
        ev("clock", node="pi1", path="5g", when=w, offset_ns=offset,
           uncertainty_ns=MS, rtt_ns=2 * MS, injected_offset_ns=offset)
        for w in ("start", "end")
    ]  # fmt: skip

    shifted = reconcile_transfers(events(offset) + clocks)
    plain = reconcile_transfers(events())

    pd.testing.assert_frame_equal(shifted, plain)
    # without the estimate, the shifted windows miss their bursts entirely
    lost = reconcile_transfers(events(offset))
    assert lost["wire_s"].isna().all()


def test_reconcile_without_capture_has_no_wire_side_and_no_verdict() -> None:
    only_logs = [e for e in events() if e["event"] != "transfer"]

    df = reconcile_transfers(only_logs)

    assert {c: str(t) for c, t in df.dtypes.items()} == RECONCILE_DTYPES
    assert len(df) == 2
    assert df["wire_s"].isna().all()
    assert df["disagrees"].isna().all()
    assert df["log_s"].tolist() == [pytest.approx(1.0), pytest.approx(2.0)]


def test_matches_come_in_instruction_reply_pairs() -> None:
    matches = transfer_matches(events())

    assert [m.direction for m in matches] == ["down", "up"]
    assert [m.source for m in matches] == ["capture", "capture"]


def system(nic_bytes_per_s: float) -> pd.DataFrame:
    """pi1's wlan0 counters, one sample a second, receiving and sending steadily."""
    rows = []
    for second in range(0, 11):
        for direction in ("recv", "sent"):
            rows.append(
                (RUN.run_id, "5g", "pi1", T0 + second * 1_000 * MS,
                 f"net_bytes_{direction}", "wlan0", nic_bytes_per_s * second)
            )  # fmt: skip
    return pd.DataFrame(
        rows, columns=["run_id", "network", "host", "t_ns", "metric", "device", "value"]
    )


def test_byte_accounting_sets_flower_wire_and_nic_bytes_side_by_side() -> None:
    phases = phases_from_events(events(), RUN)

    df = byte_accounting(phases, system(2_200_000.0), {"pi1": "wlan0"})

    down, up = by_direction(df)["down"], by_direction(df)["up"]
    assert down["flower_bytes"] == MODEL
    assert down["wire_bytes"] == MODEL + 500
    assert down["overhead"] == pytest.approx(500 / MODEL)
    assert down["nic_bytes"] == pytest.approx(2_200_000.0 * 0.996)
    assert down["nic_overhead"] == pytest.approx(2_200_000.0 * 0.996 / MODEL - 1)
    assert up["wire_bytes"] == MODEL + 900
    assert up["overhead"] == pytest.approx(900 / MODEL)
    assert up["nic_note"] == ""


def test_byte_accounting_says_why_nic_bytes_are_missing() -> None:
    phases = phases_from_events(events(), RUN)

    none = byte_accounting(phases, None)
    no_nic = byte_accounting(phases, system(1.0), {})
    outside = byte_accounting(phases, system(1.0).iloc[:4], {"pi1": "wlan0"})

    assert none["nic_bytes"].isna().all()
    assert set(none["nic_note"]) == {"no system table"}
    assert no_nic["nic_note"].str.contains("no NIC given").all()
    assert outside["nic_note"].str.contains("not inside the sampled span").all()
    assert none["overhead"].notna().all()


def test_byte_accounting_maps_the_interval_to_the_node_clock() -> None:
    offset = 2_000 * MS  # the sampler stamps on the node's clock, 2 s ahead
    phases = phases_from_events(events(), RUN)
    phases.attrs["clock"] = [
        {"run_id": RUN.run_id, "node": "pi1", "offset_start_ns": offset,
         "offset_end_ns": offset, "uncertainty_ns": MS, "path": "5g",
         "at_start_ns": T0, "at_end_ns": T0 + 10_000 * MS}
    ]  # fmt: skip
    table = system(1_000_000.0)
    # counters only move during the node-clock second [3 s, 4 s]
    table["value"] = [
        0.0 if t < T0 + 3_000 * MS else (1e6 if t >= T0 + 4_000 * MS else 0.0)
        for t in table["t_ns"]
    ]

    on_node = byte_accounting(phases, table, {"pi1": "wlan0"})
    on_server = byte_accounting(phases, table, {"pi1": "wlan0"}, node_clock=False)

    # the downlink, 1.002-1.998 s server time, is 3.002-3.998 s node time
    assert by_direction(on_node)["down"]["nic_bytes"] == pytest.approx(0.996e6)
    assert by_direction(on_server)["down"]["nic_bytes"] == 0.0


# --- the node side: the capture on the node's own interface -----------------------


def node_burst(
    direction: str,
    start: int,
    end: int,
    nbytes: int,
    offset: int = 0,
    node: str = "pi1",
) -> dict[str, Any]:
    """A ``node_transfer`` event; its instants on the node's clock, ``offset`` ahead."""
    return ev(
        "node_transfer",
        node=node,
        network="5g",
        direction=direction,
        start_ns=T0 + start * MS + offset,
        end_ns=T0 + end * MS + offset,
        bytes=nbytes,
        packets=nbytes // 1448 + 1,
        retransmissions=0,
        source="capture",
        side="node",
    )


def clock_estimates(start_offset: int, end_offset: int) -> list[dict[str, Any]]:
    """pi1's estimates at server instants T0 (start) and T0 + 10 s (end)."""
    return [
        {**ev("clock", node="pi1", path="5g", when=w, offset_ns=o, uncertainty_ns=MS,
              rtt_ns=2 * MS), "t_ns": T0 + at * MS}
        for w, o, at in (("start", start_offset, 0), ("end", end_offset, 10_000))
    ]  # fmt: skip


def seen_at_node(offset: int) -> list[dict[str, Any]]:
    """The downlink reaches the node 1 ms after it leaves the server; the reply
    leaves the node 5 ms before the server sees it and ends 30 ms earlier (a queue
    between the two). Plus noise that belongs to no transfer."""
    return [
        node_burst("down", 1_003, 1_999, MODEL + 500, offset),
        node_burst("up", 4_105, 4_598, MODEL // 2, offset),
        node_burst("up", 4_797, 5_080, MODEL // 2 + 900, offset),
        node_burst("up", 9_000, 9_001, 300, offset),  # a heartbeat, later
        node_burst("up", 4_200, 5_000, 999, offset, node="pi2"),  # another node
    ]


def test_node_side_is_mapped_to_the_server_clock_and_set_beside_the_wire() -> None:
    offset = 3_000 * MS
    recorded = events(offset) + seen_at_node(offset) + clock_estimates(offset, offset)

    df = by_direction(reconcile_transfers(recorded))

    down, up = df["down"], df["up"]
    assert down["node_wire_start_ns"] == T0 + 1_003 * MS
    assert down["node_wire_end_ns"] == T0 + 1_999 * MS
    assert down["node_wire_s"] == pytest.approx(0.996)
    assert down["side_diff_s"] == pytest.approx(0.0)
    assert down["node_wire_bytes"] == down["wire_bytes"] == MODEL + 500
    assert up["node_wire_start_ns"] == T0 + 4_105 * MS
    assert up["node_wire_end_ns"] == T0 + 5_080 * MS
    assert up["node_wire_s"] == pytest.approx(0.975)
    assert up["side_diff_s"] == pytest.approx(0.975 - 1.0)
    assert up["node_wire_bytes"] == MODEL + 900  # not pi2's, not the heartbeat


def test_node_side_follows_a_drifting_node_clock() -> None:
    # offset 3000 ms at server 0 s, 3010 ms at 10 s: 3004 ms at 4 s, 3005 ms at 5 s
    # (the stamps and windows, around 3 s, are near enough with 3003 ms)
    recorded = (
        events(3_003 * MS)
        + clock_estimates(3_000 * MS, 3_010 * MS)
        + [node_burst("up", 4_000 + 3_004, 5_000 + 3_005, MODEL + 900)]
    )

    up = by_direction(reconcile_transfers(recorded))["up"]

    assert up["node_wire_start_ns"] == T0 + 4_000 * MS
    assert up["node_wire_end_ns"] == T0 + 5_000 * MS


def test_node_side_without_a_clock_estimate_stays_on_the_node_clock() -> None:
    # 3 s ahead and uncorrected: nothing overlaps the server-side interval
    recorded = events() + seen_at_node(3_000 * MS)

    df = reconcile_transfers(recorded)

    assert df["node_wire_s"].isna().all()
    assert df["wire_s"].notna().all()


def test_missing_node_side_gives_nulls_and_the_same_server_side() -> None:
    with_node = reconcile_transfers(events() + seen_at_node(0))

    df = reconcile_transfers(events())

    assert {c: str(t) for c, t in df.dtypes.items()} == RECONCILE_DTYPES
    node_columns = [c for c in RECONCILE_DTYPES if c.startswith("node_wire")]
    assert len(node_columns) == 4
    assert df[[*node_columns, "side_diff_s"]].isna().all().all()
    others = [c for c in RECONCILE_DTYPES if c not in {*node_columns, "side_diff_s"}]
    pd.testing.assert_frame_equal(df[others], with_node[others])


def test_node_side_without_server_capture_overlaps_the_supernode_window() -> None:
    only_logs = [e for e in events() if e["event"] != "transfer"]

    df = by_direction(reconcile_transfers(only_logs + seen_at_node(0)))

    assert df["up"]["wire_s"] is None or pd.isna(df["up"]["wire_s"])
    assert df["up"]["node_wire_s"] == pytest.approx(0.975)
    assert df["up"]["node_wire_bytes"] == MODEL + 900
    assert pd.isna(df["up"]["side_diff_s"])
    assert df["down"]["node_wire_s"] == pytest.approx(0.996)
