"""Tests of analysis/anatomy.py: clock correction and the tiling of node rounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.anatomy import (
    ClockPoint,
    NodeClock,
    Span,
    Trace,
    anatomy_frame,
    clock_from_record,
    clock_table,
    correct_events,
    dispatches,
    node_clocks,
    node_round_times,
    tile_node_round,
)
from analysis.phases import (
    COLUMNS,
    DTYPES,
    RunInfo,
    concat_phases,
    phases_from_events,
    read_phases,
    write_phases,
)

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
RUN = RunInfo("study", "wifi-fedavg-r1", "wifi", "fedavg", 1)
MODEL = 2_000_000
IDS = {"pi1": 7, "pi2": 8}


def ev(event: str, at: int, **fields: Any) -> dict[str, Any]:
    return {"event": event, "run_id": RUN.run_id, "t_ns": T0 + at, **fields}


def message(
    node: str,
    rnd: int,
    mtype: str,
    ms: dict[str, int],
    *,
    capture: bool,
    node_offset: int = 0,
) -> list[dict[str, Any]]:
    """One message's events; ``ms`` holds its instants in ms from T0.

    Node-clock instants (mod, SuperNode log) get ``node_offset`` ns added, as a
    node whose clock runs ahead of the server's would stamp them.
    """
    mid, rid = f"{node}-{rnd}-{mtype}", f"reply-{node}-{rnd}-{mtype}"

    def on_node(key: str) -> int:
        return T0 + ms[key] * MS + node_offset

    reply_bytes = MODEL + 64 if mtype == "train" else 420
    events = [
        ev(
            "dispatch",
            ms["dispatch"] + 5_000,  # written late, as MeasuredGrid does
            message_id=mid,
            node_id=IDS[node],
            message_type=mtype,
            round=rnd,
            dispatch_ns=T0 + ms["dispatch"] * MS,
        ),
        ev(
            "supernode_log",
            0,
            node=node,
            kind="receive_start",
            at_ns=on_node("recv0"),
            message_type=mtype,
            message_id=mid,
        ),
        ev(
            "supernode_log",
            0,
            node=node,
            kind="receive_end",
            at_ns=on_node("recv1"),
            message_type=mtype,
            message_id=mid,
        ),
        ev(
            "phase",
            ms["pickup"],
            phase="training" if mtype == "train" else "evaluation",
            round=rnd,
            node=node,
            node_id=IDS[node],
            message_type=mtype,
            start_ns=on_node("mod0"),
            end_ns=on_node("mod1"),
            bytes_in=MODEL,
            bytes_out=reply_bytes,
            process_start_ns=on_node("recv1") + 100 * MS,
            message_id=mid,
            source="client_mod",
        ),
        ev(
            "supernode_log",
            0,
            node=node,
            kind="send_start",
            at_ns=on_node("send0"),
            message_type=mtype,
            message_id=rid,
        ),
        ev(
            "supernode_log",
            0,
            node=node,
            kind="send_end",
            at_ns=on_node("send1"),
            message_type=mtype,
            message_id=rid,
        ),
        ev(
            "pickup",
            ms["pickup"],
            message_id=mid,
            reply_id=rid,
            node_id=IDS[node],
            pickup_ns=T0 + ms["pickup"] * MS,
        ),
    ]
    if capture:
        for direction, key, nbytes in (
            ("down", "recv", MODEL + 900),
            ("up", "send", reply_bytes + 900),
        ):
            events.append(
                ev(
                    "transfer",
                    0,
                    node=node,
                    network="wifi",
                    direction=direction,
                    start_ns=T0 + (ms[f"{key}0"] + 5) * MS,
                    end_ns=T0 + (ms[f"{key}1"] - 10) * MS,
                    bytes=nbytes,
                    packets=nbytes // 1448,
                    retransmissions=1,
                    source="capture",
                )
            )
    return events


PI1_TRAIN = dict(
    dispatch=0,
    recv0=1_000,
    recv1=1_600,
    mod0=3_000,
    mod1=5_000,
    send0=5_300,
    send1=7_000,
    pickup=9_000,
)
PI1_EVAL = dict(
    dispatch=9_500,
    recv0=10_000,
    recv1=10_600,
    mod0=11_000,
    mod1=11_200,
    send0=11_300,
    send1=11_400,
    pickup=12_000,
)
PI2_TRAIN = dict(
    dispatch=0,
    recv0=2_000,
    recv1=2_500,
    mod0=4_000,
    mod1=6_000,
    send0=6_100,
    send1=6_500,
    pickup=9_000,
)
PI2_EVAL = dict(
    dispatch=9_500,
    recv0=9_800,
    recv1=9_900,
    mod0=10_500,
    mod1=10_600,
    send0=10_700,
    send1=10_800,
    pickup=12_000,
)
AGGREGATION = (9_100, 9_400)


def aggregation() -> dict[str, Any]:
    return ev(
        "phase",
        AGGREGATION[1],
        phase="aggregation",
        round=1,
        node="server",
        node_id=0,
        message_type="",
        start_ns=T0 + AGGREGATION[0] * MS,
        end_ns=T0 + AGGREGATION[1] * MS,
        source="server_timer",
    )


def clock(
    node: str,
    when: str,
    offset: int,
    uncertainty: int,
    path: str = "wifi",
    at: int | None = None,
) -> dict[str, Any]:
    return ev(
        "clock",
        at if at is not None else (-60_000 if when == "start" else 60_000),
        node=node,
        path=path,
        when=when,
        offset_ns=offset,
        uncertainty_ns=uncertainty,
        rtt_ns=2 * uncertainty,
        injected_offset_ns=0,
    )


def run_events(offset: int = 0, clocks: bool = True) -> list[dict[str, Any]]:
    """pi1's transfers were captured; pi2's only logged. pi2's clock is off."""
    events = [
        *message("pi1", 1, "train", PI1_TRAIN, capture=True),
        *message("pi1", 1, "evaluate", PI1_EVAL, capture=True),
        *message("pi2", 1, "train", PI2_TRAIN, capture=False, node_offset=offset),
        *message("pi2", 1, "evaluate", PI2_EVAL, capture=False, node_offset=offset),
        aggregation(),
    ]
    if clocks:
        events += [
            clock("pi1", "start", 0, 2 * MS),
            clock("pi1", "end", 0, 2 * MS),
            clock("pi2", "start", offset, 3 * MS),
            clock("pi2", "end", offset, 3 * MS),
        ]
    return events


def node_rows(df: pd.DataFrame, node: str) -> pd.DataFrame:
    return df[df["node"] == node].reset_index(drop=True)


def assert_tiles(rows: pd.DataFrame) -> None:
    starts, ends = rows["start_ns"].tolist(), rows["end_ns"].tolist()
    assert starts[1:] == ends[:-1]


# --- tiling ----------------------------------------------------------------------


def test_rows_of_a_node_round_tile_dispatch_to_pickup() -> None:
    df = phases_from_events(run_events(), RUN)

    pi1 = node_rows(df, "pi1")
    assert pi1["phase"].tolist() == [
        "dispatch_wait", "downlink", "client_startup", "training", "reply_handoff",
        "uplink", "pickup_wait", "server_other", "aggregation", "server_other",
        "dispatch_wait", "downlink", "client_startup", "evaluation", "reply_handoff",
        "uplink", "pickup_wait",
    ]  # fmt: skip
    assert_tiles(pi1)
    assert pi1["start_ns"].iloc[0] == T0
    assert pi1["end_ns"].iloc[-1] == T0 + 12_000 * MS
    assert int((pi1["end_ns"] - pi1["start_ns"]).sum()) == 12_000 * MS
    assert pi1["duration_s"].sum() == pytest.approx(12.0, abs=1e-9)
    seconds = dict(zip(pi1["phase"].head(7), pi1["duration_s"].head(7), strict=True))
    assert seconds == {
        "dispatch_wait": pytest.approx(1.005),
        "downlink": pytest.approx(0.585),
        "client_startup": pytest.approx(1.41),
        "training": pytest.approx(2.0),
        "reply_handoff": pytest.approx(0.305),
        "uplink": pytest.approx(1.685),
        "pickup_wait": pytest.approx(2.01),
    }


def test_aggregation_is_split_out_of_the_wait_between_messages() -> None:
    df = phases_from_events(run_events(), RUN)

    between = node_rows(df, "pi2").iloc[7:10]
    assert between["phase"].tolist() == ["server_other", "aggregation", "server_other"]
    assert between["duration_s"].tolist() == [
        pytest.approx(0.1),
        pytest.approx(0.3),
        pytest.approx(0.1),
    ]
    assert (between["message_type"] == "").all()
    server = df[df["node"] == "server"]
    assert server["phase"].tolist() == ["aggregation"]
    assert server["duration_s"].tolist() == [pytest.approx(0.3)]


def test_columns_and_message_ids() -> None:
    df = phases_from_events(run_events(), RUN)

    assert list(df.columns) == list(COLUMNS)
    assert {c: str(t) for c, t in df.dtypes.items()} == DTYPES
    pi1 = node_rows(df, "pi1")
    train = pi1[pi1["message_type"] == "train"]
    assert set(train["message_id"]) == {"pi1-1-train"}
    assert set(pi1.loc[pi1["phase"] == "server_other", "message_id"]) == {""}
    assert set(pi1["source"]) == {"derived", "capture", "client_mod", "server_timer"}


def test_uncertainty_is_zero_on_one_clock_and_the_offset_across_clocks() -> None:
    df = phases_from_events(run_events(offset=300 * MS), RUN)

    def u(node: str, phase: str) -> float:
        rows = node_rows(df, node)
        return float(rows.loc[rows["phase"] == phase, "uncertainty_s"].iloc[0])

    # pi1: capture (server clock) around dispatch/pickup, mod (node) inside
    assert u("pi1", "dispatch_wait") == 0.0
    assert u("pi1", "client_startup") == pytest.approx(0.002)
    assert u("pi1", "reply_handoff") == pytest.approx(0.002)
    assert u("pi1", "pickup_wait") == 0.0
    # pi2: SuperNode windows (node clock) next to dispatch and pickup
    assert u("pi2", "dispatch_wait") == pytest.approx(0.003)
    assert u("pi2", "client_startup") == 0.0
    assert u("pi2", "pickup_wait") == pytest.approx(0.003)
    assert u("pi2", "training") == 0.0
    assert u("pi2", "server_other") == 0.0


def test_node_round_times_sum_the_tiles_and_skip_the_server_row() -> None:
    df = phases_from_events(run_events(), RUN)

    times = node_round_times(df)

    assert times["node"].tolist() == ["pi1", "pi2"]
    assert times["round_s"].tolist() == [pytest.approx(12.0), pytest.approx(12.0)]
    assert (times["round_s"] - times["span_s"]).abs().max() < 1e-9
    assert times["max_phase_uncertainty_s"].tolist() == [
        pytest.approx(0.002),
        pytest.approx(0.003),
    ]
    unknown = node_round_times(phases_from_events(run_events(clocks=False), RUN))
    assert unknown["max_phase_uncertainty_s"].isna().all()
    assert unknown["round_s"].tolist() == [pytest.approx(12.0), pytest.approx(12.0)]


# --- clock correction ---------------------------------------------------------------


def test_injected_offset_with_its_estimate_gives_the_same_phases() -> None:
    plain = phases_from_events(run_events(offset=0), RUN)
    shifted = phases_from_events(run_events(offset=300 * MS), RUN)

    assert shifted["phase"].tolist() == plain["phase"].tolist()
    for column in ("start_ns", "end_ns"):
        assert (shifted[column] - plain[column]).abs().max() <= 1_000
    assert (shifted["duration_s"] - plain["duration_s"]).abs().max() <= 1e-6
    assert shifted.attrs["anatomy"] == plain.attrs["anatomy"]


def test_without_an_estimate_the_offset_shows_and_uncertainty_is_unknown() -> None:
    plain = phases_from_events(run_events(offset=0), RUN)
    shifted = phases_from_events(run_events(offset=300 * MS, clocks=False), RUN)

    def training(df: pd.DataFrame) -> pd.Series:
        rows = node_rows(df, "pi2")
        return rows[rows["phase"] == "training"].iloc[0]

    assert training(shifted)["start_ns"] - training(plain)["start_ns"] == 300 * MS
    assert training(shifted)["uncertainty_s"] == 0.0  # both bounds on one clock
    pi2 = node_rows(shifted, "pi2")
    assert pi2.loc[pi2["phase"] == "dispatch_wait", "uncertainty_s"].isna().all()
    table = clock_table(run_events(offset=300 * MS, clocks=False), RUN.run_id)
    assert table["offset_start_ns"].isna().all()
    assert table["path"].tolist() == ["", ""]


def test_offset_is_interpolated_between_start_and_end_and_clamped() -> None:
    start = ClockPoint("pi1", "wifi", "start", T0, 100 * MS, 1 * MS)
    end = ClockPoint("pi1", "wifi", "end", T0 + 100_000 * MS, 200 * MS, 2 * MS)
    clock = NodeClock("pi1", start=start, end=end)

    assert clock.offset_at(T0 + 50_000 * MS) == 150 * MS
    assert clock.offset_at(T0 - 10_000 * MS) == 100 * MS
    assert clock.offset_at(T0 + 200_000 * MS) == 200 * MS
    server = T0 + 25_000 * MS
    node = server + 125 * MS
    assert abs(clock.to_server(node) - server) <= 1
    assert clock.to_node(server) == node
    assert clock.uncertainty_ns == 2 * MS
    only_end = NodeClock("pi1", end=end)
    assert only_end.offset_at(T0) == 200 * MS


def test_the_least_uncertain_path_is_chosen_per_when() -> None:
    events = [
        clock("pi1", "start", 50 * MS, 9 * MS, path="management"),
        clock("pi1", "start", 52 * MS, 1 * MS, path="wifi"),
        clock("pi1", "end", 70 * MS, 1 * MS, path="management"),
        clock("pi1", "end", 75 * MS, 4 * MS, path="wifi"),
    ]

    clocks = node_clocks(events)

    pi1 = clocks["pi1"]
    assert pi1.start is not None and pi1.start.offset_ns == 52 * MS
    assert pi1.end is not None and pi1.end.offset_ns == 70 * MS
    assert pi1.path == "wifi|management"
    table = clock_table(events, RUN.run_id)
    assert table.iloc[0][
        ["offset_start_ns", "offset_end_ns", "uncertainty_ns"]
    ].tolist() == [52 * MS, 70 * MS, 1 * MS]
    rebuilt = clock_from_record(table.iloc[0].to_dict())
    for at in (T0 - 60_000 * MS, T0, T0 + 60_000 * MS):
        assert rebuilt.offset_at(at) == pi1.offset_at(at)
    assert rebuilt.uncertainty_ns == pi1.uncertainty_ns


def test_correction_leaves_server_clock_events_alone() -> None:
    events = [
        ev(
            "transfer",
            0,
            node="pi1",
            direction="down",
            start_ns=T0,
            end_ns=T0 + 1,
            bytes=1,
        ),
        ev("supernode_log", 0, node="pi1", kind="receive_start", at_ns=T0 + 300 * MS),
        clock("pi1", "start", 300 * MS, MS),
    ]

    fixed = correct_events(events, node_clocks(events))

    assert fixed[0] == events[0]
    assert fixed[1]["at_ns"] == T0
    assert events[1]["at_ns"] == T0 + 300 * MS  # the input is not changed


# --- degraded inputs ------------------------------------------------------------------


def test_without_dispatch_and_pickup_only_measured_phases_remain() -> None:
    events = [e for e in run_events() if e["event"] not in ("dispatch", "pickup")]

    df = phases_from_events(events, RUN)

    assert set(df["phase"]) == {
        "downlink",
        "training",
        "evaluation",
        "uplink",
        "aggregation",
    }
    records = anatomy_frame(df.attrs["anatomy"])
    assert len(records) == 2 and not records["tiled"].any()
    assert records["note"].str.contains("no dispatch/pickup").all()
    assert node_round_times(df).empty


def test_a_missing_pickup_leaves_that_node_round_untiled() -> None:
    events = [
        e
        for e in run_events()
        if not (e["event"] == "pickup" and e["message_id"] == "pi2-1-evaluate")
    ]

    df = phases_from_events(events, RUN)

    records = anatomy_frame(df.attrs["anatomy"]).set_index("node")
    assert bool(records.loc["pi1", "tiled"]) is True
    assert bool(records.loc["pi2", "tiled"]) is False
    assert "no pickup" in str(records.loc["pi2", "note"])
    assert "dispatch_wait" not in set(node_rows(df, "pi2")["phase"])


def test_an_unmatched_downlink_becomes_one_unresolved_stretch() -> None:
    events = [
        e
        for e in run_events()
        if not (
            e["event"] == "supernode_log"
            and e["node"] == "pi2"
            and e["kind"].startswith("receive")
            and e["message_type"] == "train"
        )
    ]

    df = phases_from_events(events, RUN)

    pi2 = node_rows(df, "pi2")
    assert pi2["phase"].tolist()[:3] == ["unresolved", "training", "reply_handoff"]
    assert pi2["duration_s"].iloc[0] == pytest.approx(4.0)
    assert_tiles(pi2)
    assert pi2["duration_s"].sum() == pytest.approx(12.0)


def test_stamps_without_message_id_match_their_dispatch_by_round_and_type() -> None:
    events = [
        {
            k: v
            for k, v in e.items()
            if not (e["event"] == "phase" and k == "message_id")
        }
        for e in run_events()
    ]

    df = phases_from_events(events, RUN)

    assert anatomy_frame(df.attrs["anatomy"])["tiled"].all()
    pi1 = node_rows(df, "pi1")
    assert set(pi1.loc[pi1["phase"] == "training", "message_id"]) == {"pi1-1-train"}


def test_a_negative_gap_beyond_the_uncertainty_is_noted() -> None:
    # pi2's clock estimate is 1 s off the truth: its evaluate instruction seems
    # to arrive 0.7 s before it was dispatched.
    events = [
        e
        if e["event"] != "clock" or e["node"] != "pi2"
        else {**e, "offset_ns": 1_000 * MS}
        for e in run_events()
    ]

    df = phases_from_events(events, RUN)

    records = anatomy_frame(df.attrs["anatomy"]).set_index("node")
    assert records.loc["pi1", "note"] == ""
    assert "dispatch_wait" in str(records.loc["pi2", "note"])
    assert_tiles(node_rows(df, "pi2"))  # still a tiling, with a negative phase


def test_a_burst_shared_with_a_poll_is_clipped_to_dispatch_and_pickup() -> None:
    # pi1's bursts hold more than the message: the answer to a poll 30 ms before
    # the dispatch, and the SuperNode's next request 20 ms after the pickup
    # (less than the capture's 0.25 s gap from the message's own bytes).
    events = []
    for e in run_events():
        if e["event"] == "transfer" and e["direction"] == "down":
            e = {**e, "start_ns": T0 + PI1_EVAL["dispatch"] * MS - 30 * MS}
        if e["event"] == "transfer" and e["direction"] == "up":
            e = {**e, "end_ns": T0 + PI1_TRAIN["pickup"] * MS + 20 * MS}
        events.append(e)

    df = phases_from_events(events, RUN)

    pi1 = node_rows(df, "pi1")
    assert_tiles(pi1)
    derived = pi1[pi1["source"] == "derived"]
    assert (derived["duration_s"] >= 0).all(), derived
    train_up = pi1[(pi1.phase == "uplink") & (pi1.message_type == "train")]
    assert int(train_up["end_ns"].iloc[0]) == T0 + PI1_TRAIN["pickup"] * MS
    assert int(train_up["bytes"].iloc[0]) == MODEL + 64 + 900  # bytes are kept
    eval_down = pi1[(pi1.phase == "downlink") & (pi1.message_type == "evaluate")]
    assert int(eval_down["start_ns"].iloc[0]) == T0 + PI1_EVAL["dispatch"] * MS
    records = anatomy_frame(df.attrs["anatomy"]).set_index("node")
    assert records.loc["pi1", "note"] == ""


def test_diagnostics_survive_parquet_and_concat(tmp_path: Path) -> None:
    df = phases_from_events(run_events(offset=300 * MS), RUN)

    back = read_phases(write_phases(df, tmp_path / "phases.parquet"))
    both = concat_phases([df, back])

    pd.testing.assert_frame_equal(back, df)
    for name in ("unmatched", "clock", "anatomy"):
        assert back.attrs[name] == df.attrs[name]
        assert len(both.attrs[name]) == 2 * len(df.attrs[name])
    assert clock_table(run_events(offset=300 * MS), RUN.run_id).equals(
        pd.DataFrame.from_records(back.attrs["clock"]).astype(
            clock_table([], "").dtypes.to_dict()
        )
    )


def test_an_old_table_without_the_new_columns_still_reads(tmp_path: Path) -> None:
    df = phases_from_events(run_events(), RUN)
    old = df.drop(columns=["uncertainty_s", "message_id"])
    path = tmp_path / "old.parquet"
    old.to_parquet(path, index=False)

    back = read_phases(path)

    assert back["uncertainty_s"].isna().all()
    assert set(back["message_id"]) == {""}


# --- property: any instants tile ------------------------------------------------------


def _span(phase: str, start: int, end: int, clock: str) -> Span:
    return Span(phase, start, end, "x", clock, 0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(0, 5_000), min_size=7, max_size=7),
            st.lists(st.booleans(), min_size=3, max_size=3),
            st.integers(0, 3_000),
        ),
        min_size=1,
        max_size=3,
    ),
    st.none() | st.tuples(st.integers(0, 40_000), st.integers(0, 5_000)),
)
def test_tiles_always_add_up_to_the_node_round(
    messages: list[tuple[list[int], list[bool], int]],
    agg: tuple[int, int] | None,
) -> None:
    traces, at = [], 0
    for gaps, present, pause in messages:
        marks = [at]
        for g in gaps:
            marks.append(marks[-1] + g)
        spans = [
            _span("downlink", marks[1], marks[2], "server") if present[0] else None,
            _span("training", marks[3], marks[4], "node") if present[1] else None,
            _span("uplink", marks[5], marks[6], "node") if present[2] else None,
        ]
        pickup = marks[-1] + 1
        traces.append(Trace("pi1", 1, "train", f"m{at}", at, pickup, *spans))
        at = pickup + pause
    aggregation_span = None if agg is None else (agg[0], agg[0] + agg[1])

    tiles = tile_node_round(traces, aggregation_span, 0.001)

    assert not isinstance(tiles, str)
    assert tiles[0].start_ns == traces[0].dispatch_ns
    assert tiles[-1].end_ns == traces[-1].pickup_ns
    assert all(a.end_ns == b.start_ns for a, b in zip(tiles, tiles[1:], strict=False))
    assert all(t.end_ns >= t.start_ns for t in tiles)
    measured = [t for t in tiles if t.row is not None]
    assert len(measured) == sum(sum(p) for _, p, _ in messages)


def test_dispatches_skip_messages_without_phases() -> None:
    def dispatch(message_id: str, message_type: str) -> dict[str, object]:
        return {
            "event": "dispatch",
            "message_id": message_id,
            "node_id": 7,
            "message_type": message_type,
            "round": 1,
            "t_ns": 10,
        }

    events = [
        dispatch("q", "query.capacity"),  # HeteroFL asking a node for its capacity
        dispatch("t", "train"),
        dispatch("e", "evaluate.custom"),
    ]

    assert [(d.message_id, d.message_type) for d in dispatches(events)] == [
        ("t", "train"),
        ("e", "evaluate"),
    ]
