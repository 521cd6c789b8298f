"""Tests of analysis/phases.py: events to phase table, transfer matching, parquet."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.phases import (
    COLUMNS,
    DTYPES,
    EDGE_NOISE_SHARE,
    LONE_GAP_NS,
    MIN_WIRE_SHARE,
    WINDOW_SLACK_NS,
    RunInfo,
    concat_phases,
    phases_from_events,
    read_phases,
    unmatched_frame,
    write_phases,
)

T0 = 1_700_000_000_000_000_000  # an instant in 2023, ns since epoch
MS = 1_000_000
RUN = RunInfo("study", "5g-fedavg-r1", "5g", "fedavg", 1)


def stamp(
    node: str, rnd: int, kind: str, start: int, end: int, b_in: int, b_out: int
) -> dict[str, Any]:
    return {
        "event": "phase",
        "run_id": RUN.run_id,
        "t_ns": T0 + end,
        "phase": "training" if kind == "train" else "evaluation",
        "round": rnd,
        "node": node,
        "node_id": 42,
        "message_type": kind,
        "start_ns": T0 + start,
        "end_ns": T0 + end,
        "bytes_in": b_in,
        "bytes_out": b_out,
        "source": "client_mod",
    }


def transfer(
    node: str, direction: str, start: int, end: int, nbytes: int
) -> dict[str, Any]:
    return {
        "event": "transfer",
        "run_id": RUN.run_id,
        "t_ns": T0 + end,
        "node": node,
        "network": "5g",
        "direction": direction,
        "start_ns": T0 + start,
        "end_ns": T0 + end,
        "bytes": nbytes,
        "packets": max(1, nbytes // 1448),
        "retransmissions": 0,
        "source": "capture",
    }


def log_line(
    node: str, kind: str, at: int, mtype: str, mid: str = "ab12"
) -> dict[str, Any]:
    return {
        "event": "supernode_log",
        "run_id": RUN.run_id,
        "t_ns": T0 + at,
        "node": node,
        "kind": kind,
        "at_ns": T0 + at,
        "message_type": mtype,
        "message_id": mid,
    }


def received(node: str, mtype: str, start: int, end: int) -> list[dict[str, Any]]:
    """The SuperNode's "Receiving: ..." and "Received successfully" lines."""
    mid = f"r{start}"
    return [
        log_line(node, "receive_start", start, mtype, mid),
        log_line(node, "receive_end", end, mtype, mid),
    ]


def sent(node: str, mtype: str, start: int, end: int) -> list[dict[str, Any]]:
    """The SuperNode's "Sending: ..." and "Sent successfully" lines."""
    mid = f"s{start}"
    return [
        log_line(node, "send_start", start, mtype, mid),
        log_line(node, "send_end", end, mtype, mid),
    ]


def aggregation(rnd: int, start: int, end: int) -> dict[str, Any]:
    return {
        "event": "phase",
        "run_id": RUN.run_id,
        "t_ns": T0 + end,
        "phase": "aggregation",
        "round": rnd,
        "node": "server",
        "node_id": 0,
        "message_type": "",
        "start_ns": T0 + start,
        "end_ns": T0 + end,
        "bytes_in": 0,
        "bytes_out": 0,
        "source": "server_timer",
    }


MODEL = 2_000_000  # bytes of the model as Flower counts them


def one_round_events() -> list[dict[str, Any]]:
    """pi1 has real transfers surrounded by heartbeats; pi2's capture was lost."""
    return [
        {"event": "run_start", "run_id": RUN.run_id, "t_ns": T0, "network": "5g"},
        # pi1, train message: the instruction, then a lone heartbeat just before the
        # stamp (no SuperNode log lines: bursts are matched by their bytes)
        transfer("pi1", "down", -1300 * MS, -1000 * MS, MODEL + 900),
        transfer("pi1", "down", 450 * MS, 451 * MS, 180),
        stamp("pi1", 1, "train", 500 * MS, 2500 * MS, MODEL, MODEL + 64),
        # a lone heartbeat first after the handler, then the reply
        transfer("pi1", "up", 2510 * MS, 2511 * MS, 150),
        transfer("pi1", "up", 3600 * MS, 5900 * MS, MODEL + 1000),
        # pi1, evaluate message
        transfer("pi1", "down", 6000 * MS, 6300 * MS, MODEL + 700),
        stamp("pi1", 1, "evaluate", 6400 * MS, 6900 * MS, MODEL, 420),
        transfer("pi1", "up", 6950 * MS, 6960 * MS, 600),
        # pi2 trains but nothing of it was captured
        stamp("pi2", 1, "train", 500 * MS, 2000 * MS, MODEL, MODEL + 64),
        aggregation(1, 6000 * MS, 6200 * MS),
    ]


def rows(df: pd.DataFrame, **where: object) -> pd.DataFrame:
    mask = pd.Series(True, index=df.index)
    for key, value in where.items():
        mask &= df[key] == value
    return df[mask]


def test_downlink_is_the_big_transfer_not_the_later_heartbeat() -> None:
    df = phases_from_events(one_round_events(), RUN)

    down = rows(df, node="pi1", phase="downlink", message_type="train")
    assert len(down) == 1
    assert down["start_ns"].iloc[0] == T0 - 1300 * MS
    assert down["bytes"].iloc[0] == MODEL + 900
    assert down["message_bytes"].iloc[0] == MODEL
    assert down["duration_s"].iloc[0] == pytest.approx(0.3)
    assert down["source"].iloc[0] == "capture"


def test_uplink_skips_the_heartbeat_and_takes_the_reply() -> None:
    df = phases_from_events(one_round_events(), RUN)

    up = rows(df, node="pi1", phase="uplink", message_type="train")
    assert len(up) == 1
    assert up["duration_s"].iloc[0] == pytest.approx(2.3)
    assert up["bytes"].iloc[0] == MODEL + 1000
    assert up["message_bytes"].iloc[0] == MODEL + 64


def test_small_reply_matches_a_small_transfer() -> None:
    df = phases_from_events(one_round_events(), RUN)

    up = rows(df, node="pi1", phase="uplink", message_type="evaluate")
    assert up["bytes"].tolist() == [600]
    assert up["duration_s"].iloc[0] == pytest.approx(0.01)


def test_compute_and_aggregation_rows_come_from_stamps() -> None:
    df = phases_from_events(one_round_events(), RUN)

    train = rows(df, node="pi1", phase="training")
    assert train["duration_s"].tolist() == [pytest.approx(2.0)]
    assert train["bytes"].isna().all()
    agg = rows(df, phase="aggregation")
    assert agg["node"].tolist() == ["server"]
    assert agg["message_type"].tolist() == [""]
    assert agg["duration_s"].iloc[0] == pytest.approx(0.2)
    assert agg["source"].iloc[0] == "server_timer"


def test_missing_capture_gives_no_row_and_an_unmatched_record() -> None:
    df = phases_from_events(one_round_events(), RUN)

    pi2 = rows(df, node="pi2")
    assert pi2["phase"].tolist() == ["training"]
    unmatched = unmatched_frame(df.attrs["unmatched"])
    assert len(unmatched) == 2
    assert set(unmatched["direction"]) == {"down", "up"}
    assert set(unmatched["node"]) == {"pi2"}
    assert unmatched["message_bytes"].tolist() == [MODEL, MODEL + 64]


def test_columns_and_dtypes_follow_the_contract() -> None:
    df = phases_from_events(one_round_events(), RUN)

    assert list(df.columns) == list(COLUMNS)
    assert {c: str(t) for c, t in df.dtypes.items()} == DTYPES
    assert set(df["campaign"]) == {"study"}
    assert set(df["repetition"]) == {1}
    # 2 pi1 messages x (down, compute, up) + pi2 training + aggregation
    assert len(df) == 8


def test_a_transfer_is_never_used_for_two_messages() -> None:
    events = [
        transfer("pi1", "down", 0, 100 * MS, MODEL),
        stamp("pi1", 1, "train", 200 * MS, 300 * MS, MODEL, 100),
        transfer("pi1", "up", 310 * MS, 320 * MS, 100),
        # round 2's instruction was not captured: the round-1 transfer must not serve
        stamp("pi1", 2, "train", 400 * MS, 500 * MS, MODEL, 100),
        transfer("pi1", "up", 510 * MS, 520 * MS, 100),
    ]

    df = phases_from_events(events, RUN)

    assert rows(df, phase="downlink")["round"].tolist() == [1]
    assert rows(df, phase="uplink")["round"].tolist() == [1, 2]
    unmatched = unmatched_frame(df.attrs["unmatched"])
    assert unmatched[["round", "direction"]].values.tolist() == [[2, "down"]]


def test_uplink_must_start_before_the_next_message() -> None:
    events = [
        transfer("pi1", "down", 0, 100 * MS, MODEL),
        stamp("pi1", 1, "train", 200 * MS, 300 * MS, MODEL, MODEL),
        transfer("pi1", "down", 310 * MS, 390 * MS, MODEL),
        stamp("pi1", 1, "evaluate", 400 * MS, 500 * MS, MODEL, 10),
        transfer("pi1", "up", 510 * MS, 900 * MS, MODEL),
    ]

    df = phases_from_events(events, RUN)

    up = rows(df, phase="uplink")
    assert up["message_type"].tolist() == ["evaluate"]
    lost = unmatched_frame(df.attrs["unmatched"])
    assert lost[["message_type", "direction"]].values.tolist() == [["train", "up"]]


def test_other_nodes_transfers_are_ignored() -> None:
    events = [
        transfer("pi2", "down", 0, 100 * MS, MODEL),
        stamp("pi1", 1, "train", 200 * MS, 300 * MS, MODEL, 10),
    ]

    df = phases_from_events(events, RUN)

    assert rows(df, phase="downlink").empty


def test_no_events_give_an_empty_typed_table() -> None:
    df = phases_from_events([], RUN)

    assert df.empty
    assert list(df.columns) == list(COLUMNS)
    assert str(df["bytes"].dtype) == "Int64"
    assert df.attrs["unmatched"] == []


def test_parquet_round_trip_keeps_dtypes_and_diagnostics(tmp_path: Path) -> None:
    df = phases_from_events(one_round_events(), RUN)

    path = write_phases(df, tmp_path / "sub" / "phases.parquet")
    back = read_phases(path)

    pd.testing.assert_frame_equal(back, df)
    assert back.attrs["unmatched"] == df.attrs["unmatched"]


def test_read_phases_says_what_to_run_when_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="flowerbed campaign run"):
        read_phases(tmp_path / "phases.parquet")


def test_concat_keeps_rows_and_unmatched_of_all_runs() -> None:
    other = RunInfo("study", "ethernet-fedavg-r1", "ethernet", "fedavg", 1)
    a = phases_from_events(one_round_events(), RUN)
    b = phases_from_events(one_round_events(), other)

    both = concat_phases([a, b])

    assert len(both) == len(a) + len(b)
    assert set(both["network"]) == {"5g", "ethernet"}
    assert len(both.attrs["unmatched"]) == 4
    assert {str(c): str(t) for c, t in both.dtypes.items()} == DTYPES


@pytest.mark.parametrize(
    ("field", "value"),
    [("run_id", ""), ("repetition", 0), ("repetition", True), ("network", None)],
)
def test_runinfo_rejects_bad_labels(field: str, value: object) -> None:
    good = {
        "campaign": "c",
        "run_id": "r",
        "network": "5g",
        "strategy": "fedavg",
        "repetition": 1,
    }
    with pytest.raises(ValueError, match=field):
        RunInfo(**{**good, field: value})  # type: ignore[arg-type]


# --- SuperNode log windows -------------------------------------------------------

UPLOAD = 3_981_348  # the demo model's reply as Flower counts it


def split_upload_events() -> list[dict[str, Any]]:
    """Node client1 of the 2-core demo (/tmp/timeline.txt), times in ms from 6.000 s.

    The instruction's first burst starts 4 ms before "Receiving"; the reply is cut
    into two bursts by a CPU stall inside one "Sending ... Sent successfully".
    """
    return [
        transfer("pi1", "down", 3_113 * MS, 3_113 * MS, 128),  # heartbeat
        transfer("pi1", "down", 6_199 * MS, 7_135 * MS, 4_006_893),
        *received("pi1", "train", 6_203 * MS, 7_136 * MS),
        log_line("pi1", "clientapp_start", 9_186 * MS, "train"),
        stamp("pi1", 1, "train", 12_942 * MS, 15_916 * MS, 3_981_349, UPLOAD),
        *sent("pi1", "train", 16_179 * MS, 18_955 * MS),
        transfer("pi1", "up", 16_194 * MS, 18_244 * MS, 1_922_734),
        transfer("pi1", "down", 16_228 * MS, 16_742 * MS, 10_297),  # flow control
        transfer("pi1", "up", 18_599 * MS, 18_956 * MS, 2_191_138),
        transfer("pi1", "up", 21_548 * MS, 21_548 * MS, 868),  # heartbeat
    ]


def test_split_upload_inside_one_send_window_is_one_uplink_row() -> None:
    df = phases_from_events(split_upload_events(), RUN)

    up = rows(df, phase="uplink")
    assert len(up) == 1
    assert up["bytes"].iloc[0] == 1_922_734 + 2_191_138
    assert up["start_ns"].iloc[0] == T0 + 16_194 * MS
    assert up["end_ns"].iloc[0] == T0 + 18_956 * MS
    assert up["duration_s"].iloc[0] == pytest.approx(2.762)
    assert up["message_bytes"].iloc[0] == UPLOAD
    assert up["source"].iloc[0] == "capture"
    assert df.attrs["unmatched"] == []


def test_downlink_burst_starting_just_before_the_log_line_counts() -> None:
    df = phases_from_events(split_upload_events(), RUN)

    down = rows(df, phase="downlink")
    assert down["start_ns"].tolist() == [T0 + 6_199 * MS]
    assert down["bytes"].tolist() == [4_006_893]
    assert down["source"].tolist() == ["capture"]


def test_window_slack_is_the_named_constant() -> None:
    slack_ms = WINDOW_SLACK_NS // MS
    events = [
        *received("pi1", "train", 1_000 * MS, 2_000 * MS),
        transfer("pi1", "down", 600 * MS, (1_000 - slack_ms - 1) * MS, 5_000),
        transfer("pi1", "down", (1_000 - slack_ms + 1) * MS, 1_100 * MS, 1_000),
        transfer("pi1", "down", 1_300 * MS, 1_990 * MS, MODEL),
        transfer("pi1", "down", (2_000 + slack_ms - 1) * MS, 2_060 * MS, 700),
        transfer("pi1", "down", (2_000 + slack_ms + 1) * MS, 2_070 * MS, 900),
        stamp("pi1", 1, "train", 3_000 * MS, 4_000 * MS, MODEL, 10),
    ]

    df = phases_from_events(events, RUN)

    down = rows(df, phase="downlink")
    assert down["bytes"].tolist() == [1_000 + MODEL + 700]
    assert down["start_ns"].tolist() == [T0 + (1_000 - slack_ms + 1) * MS]
    assert down["end_ns"].tolist() == [T0 + 2_060 * MS]


def test_window_without_capture_gives_the_supernode_view() -> None:
    events = [
        *received("pi1", "train", 100 * MS, 900 * MS),
        stamp("pi1", 1, "train", 2_000 * MS, 3_000 * MS, MODEL, MODEL + 64),
        *sent("pi1", "train", 3_200 * MS, 6_700 * MS),
    ]

    df = phases_from_events(events, RUN)

    moved = df[df["phase"].isin(["downlink", "uplink"])]
    assert moved["phase"].tolist() == ["downlink", "uplink"]
    assert moved["source"].tolist() == ["supernode_log", "supernode_log"]
    assert moved["bytes"].isna().all()
    assert moved["message_bytes"].tolist() == [MODEL, MODEL + 64]
    assert moved["duration_s"].tolist() == [pytest.approx(0.8), pytest.approx(3.5)]
    assert df.attrs["unmatched"] == []


def test_window_whose_capture_falls_short_uses_the_window() -> None:
    # Only a heartbeat of the upload was captured: it is not the message.
    events = [
        stamp("pi1", 1, "train", 0, 1_000 * MS, MODEL, MODEL),
        *sent("pi1", "train", 1_200 * MS, 4_200 * MS),
        transfer("pi1", "up", 2_000 * MS, 2_001 * MS, 900),
    ]

    df = phases_from_events(events, RUN)

    up = rows(df, phase="uplink")
    assert up["source"].tolist() == ["supernode_log"]
    assert up["start_ns"].tolist() == [T0 + 1_200 * MS]
    assert up["bytes"].isna().all()


def test_window_works_without_the_message_size() -> None:
    # An older client mod that did not count bytes: the log window still matches.
    events = [
        {**stamp("pi1", 1, "train", 0, 1_000 * MS, 0, 0), "bytes_out": None},
        *sent("pi1", "train", 1_200 * MS, 2_200 * MS),
        transfer("pi1", "up", 1_210 * MS, 2_190 * MS, MODEL),
    ]

    df = phases_from_events(events, RUN)

    up = rows(df, phase="uplink")
    assert up["bytes"].tolist() == [MODEL]
    assert up["message_bytes"].isna().all()


def test_windows_are_matched_by_message_type_and_order() -> None:
    events = [
        *received("pi1", "train", 100 * MS, 200 * MS),
        # a second receive before the stamp: the last one is the instruction
        *received("pi1", "train", 300 * MS, 400 * MS),
        *received("pi1", "evaluate", 450 * MS, 480 * MS),  # wrong type
        stamp("pi1", 1, "train", 1_000 * MS, 2_000 * MS, MODEL, MODEL),
        *sent("pi1", "evaluate", 2_050 * MS, 2_080 * MS),  # wrong type
        *sent("pi1", "train", 2_100 * MS, 2_500 * MS),
        *sent("pi1", "train", 2_600 * MS, 2_900 * MS),
    ]

    df = phases_from_events(events, RUN)

    down = rows(df, phase="downlink")
    up = rows(df, phase="uplink")
    assert (down["start_ns"].tolist(), down["end_ns"].tolist()) == (
        [T0 + 300 * MS],
        [T0 + 400 * MS],
    )
    assert (up["start_ns"].tolist(), up["end_ns"].tolist()) == (
        [T0 + 2_100 * MS],
        [T0 + 2_500 * MS],
    )


def test_a_window_is_never_used_for_two_messages() -> None:
    events = [
        *received("pi1", "train", 100 * MS, 200 * MS),
        stamp("pi1", 1, "train", 300 * MS, 400 * MS, MODEL, MODEL),
        *sent("pi1", "train", 450 * MS, 500 * MS),
        # round 2's receive and send lines are missing, and nothing was captured
        stamp("pi1", 2, "train", 600 * MS, 700 * MS, MODEL, MODEL),
    ]

    df = phases_from_events(events, RUN)

    assert rows(df, phase="downlink")["round"].tolist() == [1]
    assert rows(df, phase="uplink")["round"].tolist() == [1]
    lost = unmatched_frame(df.attrs["unmatched"])
    assert lost[["round", "direction"]].values.tolist() == [[2, "down"], [2, "up"]]


def test_send_window_must_start_before_the_next_message() -> None:
    events = [
        stamp("pi1", 1, "train", 0, 100 * MS, MODEL, MODEL),
        stamp("pi1", 2, "train", 200 * MS, 300 * MS, MODEL, MODEL),
        *sent("pi1", "train", 350 * MS, 400 * MS),
    ]

    df = phases_from_events(events, RUN)

    assert rows(df, phase="uplink")["round"].tolist() == [2]


@pytest.mark.parametrize(
    "lines",
    [
        # "Receiving" of one message, "Received successfully" of another
        [
            log_line("pi1", "receive_start", 100 * MS, "train", "aaa"),
            log_line("pi1", "receive_end", 200 * MS, "train", "bbb"),
        ],
        # the SuperNode died before "Received successfully"
        [log_line("pi1", "receive_start", 100 * MS, "train", "aaa")],
    ],
)
def test_unpaired_log_lines_give_no_window(lines: list[dict[str, Any]]) -> None:
    events = [
        *lines,
        transfer("pi1", "down", 100 * MS, 150 * MS, MODEL + 500),
        stamp("pi1", 1, "train", 1_000 * MS, 2_000 * MS, MODEL, 10),
    ]

    df = phases_from_events(events, RUN)

    down = rows(df, phase="downlink")
    assert down["source"].tolist() == ["capture"]
    assert down["bytes"].tolist() == [MODEL + 500]


# --- no SuperNode log: captured bursts merged ----------------------------------


def test_without_windows_split_upload_bursts_are_merged() -> None:
    events = [e for e in split_upload_events() if e["event"] != "supernode_log"]

    df = phases_from_events(events, RUN)

    up = rows(df, phase="uplink")
    assert up["bytes"].tolist() == [1_922_734 + 2_191_138]
    assert up["start_ns"].tolist() == [T0 + 16_194 * MS]
    assert up["end_ns"].tolist() == [T0 + 18_956 * MS]
    assert up["source"].tolist() == ["capture"]


def test_without_windows_split_download_is_merged_backwards() -> None:
    events = [
        transfer("pi1", "down", 0, 10 * MS, 130),  # heartbeat before the message
        transfer("pi1", "down", 500 * MS, 900 * MS, MODEL // 2),
        transfer("pi1", "down", 1_200 * MS, 1_600 * MS, MODEL // 2 + 900),
        transfer("pi1", "down", 4_000 * MS, 4_001 * MS, 128),  # heartbeat after it
        stamp("pi1", 1, "train", 5_000 * MS, 6_000 * MS, MODEL, 10),
    ]

    df = phases_from_events(events, RUN)

    down = rows(df, phase="downlink")
    assert down["bytes"].tolist() == [MODEL + 900]
    assert down["start_ns"].tolist() == [T0 + 500 * MS]
    assert down["end_ns"].tolist() == [T0 + 1_600 * MS]


def test_without_windows_the_walk_stops_at_the_threshold() -> None:
    share = int(MIN_WIRE_SHARE * MODEL)
    events = [
        transfer("pi1", "down", 0, 100 * MS, MODEL - share),
        transfer("pi1", "down", 300 * MS, 800 * MS, share),
        stamp("pi1", 1, "train", 1_000 * MS, 2_000 * MS, MODEL, 10),
    ]

    df = phases_from_events(events, RUN)

    assert rows(df, phase="downlink")["bytes"].tolist() == [share]


def test_small_burst_next_to_the_message_is_its_first_bytes() -> None:
    # Small, but followed by the rest of the reply within LONE_GAP_NS: not lone.
    small = int(EDGE_NOISE_SHARE * MODEL) - 1
    gap_ms = LONE_GAP_NS // MS // 2
    events = [
        stamp("pi1", 1, "train", 0, 1_000 * MS, MODEL, MODEL),
        transfer("pi1", "up", 1_100 * MS, 1_120 * MS, small),
        transfer("pi1", "up", (1_120 + gap_ms) * MS, 4_000 * MS, MODEL),
    ]

    df = phases_from_events(events, RUN)

    up = rows(df, phase="uplink")
    assert up["bytes"].tolist() == [MODEL + small]
    assert up["start_ns"].tolist() == [T0 + 1_100 * MS]


def test_without_windows_too_few_bytes_give_an_unmatched_record() -> None:
    events = [
        stamp("pi1", 1, "train", 0, 1_000 * MS, MODEL, MODEL),
        transfer("pi1", "up", 1_100 * MS, 1_500 * MS, MODEL // 2),
        transfer("pi1", "up", 1_700 * MS, 1_900 * MS, MODEL // 4),
    ]

    df = phases_from_events(events, RUN)

    assert rows(df, phase="uplink").empty
    lost = unmatched_frame(df.attrs["unmatched"])
    up = lost[lost["direction"] == "up"]
    assert up["message_bytes"].tolist() == [MODEL]
    assert "SuperNode log" in up["reason"].iloc[0]


# --- property: any capture, any windows -------------------------------------------

SIZE = 1_000  # Flower's count of every instruction and reply in the property test
ROUNDS = 5
PERIOD_MS = 2_000  # stamp r runs from PERIOD_MS * r + 1000 ms to + 1500 ms


def _mod(r: int) -> tuple[int, int]:
    return PERIOD_MS * r + 1_000, PERIOD_MS * r + 1_500


bursts_strategy = st.lists(
    st.tuples(st.integers(0, 400), st.integers(0, 300), st.integers(1, 1_500)),
    max_size=40,
)
window_strategy = st.none() | st.tuples(st.integers(0, 1_300), st.integers(0, 600))


def _laid_out(direction: str, raw: list[tuple[int, int, int]]) -> list[dict[str, Any]]:
    """Bursts one after another with the given gaps, as the capture segmenter makes."""
    out, at = [], 0
    for gap, duration, nbytes in raw:
        start = at + gap + 1
        out.append(
            transfer("pi1", direction, start * MS, (start + duration) * MS, nbytes)
        )
        at = start + duration
    return out


def _window_lines(r: int, direction: str, raw: tuple[int, int] | None) -> list[Any]:
    if raw is None:
        return []
    offset, length = raw
    start, end = _mod(r)
    if direction == "down":  # between the previous mod's end and this mod's start
        lo = start - 1_400 + min(offset, 1_300)
        return received("pi1", "train", lo * MS, min(lo + length, start) * MS)
    lo = end + min(offset, 1_400)
    return sent("pi1", "train", lo * MS, (lo + length) * MS)


@settings(max_examples=200, deadline=None)
@given(
    bursts_strategy,
    bursts_strategy,
    st.lists(
        st.tuples(window_strategy, window_strategy), min_size=ROUNDS, max_size=ROUNDS
    ),
)
def test_matches_respect_the_rules_for_any_capture(
    raw_down: list[Any], raw_up: list[Any], raw_windows: list[Any]
) -> None:
    mods = [_mod(r) for r in range(ROUNDS)]
    stamps = [
        stamp("pi1", r + 1, "train", s * MS, e * MS, SIZE, SIZE)
        for r, (s, e) in enumerate(mods)
    ]
    captured = _laid_out("down", raw_down) + _laid_out("up", raw_up)
    windows: dict[tuple[int, str], tuple[int, int]] = {}
    lines = []
    for r, (down, up) in enumerate(raw_windows):
        for direction, raw in (("down", down), ("up", up)):
            pair = _window_lines(r, direction, raw)
            if pair:
                windows[(r + 1, direction)] = (pair[0]["at_ns"], pair[1]["at_ns"])
            lines += pair

    df = phases_from_events(stamps + captured + lines, RUN)

    transfer_rows = df[df["phase"].isin(["downlink", "uplink"])]
    moved = [
        {str(k): v for k, v in r.items()} for r in transfer_rows.to_dict("records")
    ]
    outcome = Counter(
        (r["round"], "down" if r["phase"] == "downlink" else "up") for r in moved
    )
    outcome.update((u["round"], u["direction"]) for u in df.attrs["unmatched"])
    assert outcome == Counter(
        (r, d) for r in range(1, ROUNDS + 1) for d in ("down", "up")
    )
    for key in windows:  # a logged window always gives a row
        assert key not in {(u["round"], u["direction"]) for u in df.attrs["unmatched"]}

    for row in moved:
        direction = "down" if row["phase"] == "downlink" else "up"
        window = windows.get((row["round"], direction))
        if row["source"] == "supernode_log":
            assert window == (row["start_ns"], row["end_ns"])
            assert pd.isna(row["bytes"])
            continue
        assert row["source"] == "capture"
        start_ms, end_ms = mods[row["round"] - 1]
        previous_end = T0 + (end_ms - PERIOD_MS) * MS if row["round"] > 1 else 0
        next_start = (
            T0 + (start_ms + PERIOD_MS) * MS if row["round"] < ROUNDS else 2**63
        )
        if direction == "down":
            assert previous_end < row["start_ns"]
            assert row["end_ns"] < T0 + start_ms * MS
        else:
            assert T0 + end_ms * MS < row["start_ns"] < next_start
        assert int(row["bytes"]) >= MIN_WIRE_SHARE * SIZE
        # the row is whole bursts, with no burst inside its span left out
        inside = [
            t["bytes"]
            for t in captured
            if t["direction"] == direction
            and row["start_ns"] <= t["start_ns"]
            and t["end_ns"] <= row["end_ns"]
        ]
        assert int(row["bytes"]) == sum(inside)
        if window is not None:
            assert row["start_ns"] <= window[1] + WINDOW_SLACK_NS
            assert row["end_ns"] >= window[0] - WINDOW_SLACK_NS

    # no burst serves two messages: spans of one direction never overlap
    for phase in ("downlink", "uplink"):
        spans = sorted(
            (r["start_ns"], r["end_ns"])
            for r in moved
            if r["phase"] == phase and r["source"] == "capture"
        )
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))


# --- message ids ------------------------------------------------------------------


def test_windows_logged_with_the_message_ids_win_over_position() -> None:
    # The instruction's id (stamp) and the reply's id (pickup) name their windows,
    # even when another window of the same type lies closer to the stamp.
    events = [
        log_line("pi1", "receive_start", 100 * MS, "train", "instr"),
        log_line("pi1", "receive_end", 200 * MS, "train", "instr"),
        *received("pi1", "train", 300 * MS, 400 * MS),
        {
            **stamp("pi1", 1, "train", 1_000 * MS, 2_000 * MS, MODEL, MODEL),
            "message_id": "instr",
        },
        *sent("pi1", "train", 2_100 * MS, 2_500 * MS),
        log_line("pi1", "send_start", 2_600 * MS, "train", "reply"),
        log_line("pi1", "send_end", 2_900 * MS, "train", "reply"),
        {"event": "pickup", "run_id": RUN.run_id, "t_ns": T0 + 3_000 * MS,
         "message_id": "instr", "reply_id": "reply", "node_id": 42,
         "pickup_ns": T0 + 3_000 * MS},
    ]  # fmt: skip

    df = phases_from_events(events, RUN)

    down = rows(df, phase="downlink")
    up = rows(df, phase="uplink")
    assert down["start_ns"].tolist() == [T0 + 100 * MS]
    assert up["start_ns"].tolist() == [T0 + 2_600 * MS]
    assert set(df["message_id"]) == {"instr"}


def test_measured_rows_have_zero_uncertainty_and_no_message_id_in_old_logs() -> None:
    df = phases_from_events(one_round_events(), RUN)

    assert (df["uncertainty_s"] == 0.0).all()
    assert set(df["message_id"]) == {""}
    assert df.attrs["anatomy"] and not any(r["tiled"] for r in df.attrs["anatomy"])
