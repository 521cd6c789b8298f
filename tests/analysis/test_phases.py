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
        # pi1, train message: the instruction, then a heartbeat just before the stamp
        transfer("pi1", "down", 100 * MS, 400 * MS, MODEL + 900),
        transfer("pi1", "down", 450 * MS, 451 * MS, 180),
        stamp("pi1", 1, "train", 500 * MS, 2500 * MS, MODEL, MODEL + 64),
        # a heartbeat first after the handler, then the reply
        transfer("pi1", "up", 2510 * MS, 2511 * MS, 150),
        transfer("pi1", "up", 2600 * MS, 5900 * MS, MODEL + 1000),
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
    assert down["start_ns"].iloc[0] == T0 + 100 * MS
    assert down["bytes"].iloc[0] == MODEL + 900
    assert down["message_bytes"].iloc[0] == MODEL
    assert down["duration_s"].iloc[0] == pytest.approx(0.3)
    assert down["source"].iloc[0] == "capture"


def test_uplink_skips_the_heartbeat_and_takes_the_reply() -> None:
    df = phases_from_events(one_round_events(), RUN)

    up = rows(df, node="pi1", phase="uplink", message_type="train")
    assert len(up) == 1
    assert up["duration_s"].iloc[0] == pytest.approx(3.3)
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


transfers_strategy = st.lists(
    st.tuples(
        st.sampled_from(["down", "up"]),
        st.integers(0, 10_000),
        st.integers(1, 500),
        st.integers(1, 3_000),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(transfers_strategy)
def test_matches_respect_the_rules_for_any_capture(raw: list[Any]) -> None:
    stamps = [
        stamp("pi1", r, "train", 2_000 * r + 500, 2_000 * r + 1_000, 1_000, 1_000)
        for r in range(5)
    ]
    captured = [transfer("pi1", d, s, s + n, b) for d, s, n, b in raw]

    df = phases_from_events(stamps + captured, RUN)

    by_round = {s["round"]: s for s in stamps}
    moved = df[df["phase"].isin(["downlink", "uplink"])]
    available = Counter(
        (t["direction"], t["start_ns"], t["end_ns"], t["bytes"]) for t in captured
    )
    used = Counter(
        ("down" if r.phase == "downlink" else "up", r.start_ns, r.end_ns, r.bytes)
        for r in moved.itertuples()
    )
    assert all(used[k] <= available[k] for k in used)
    for row in moved.itertuples():
        mod = by_round[row.round]
        assert int(str(row.bytes)) >= 500
        if row.phase == "downlink":
            assert row.end_ns < mod["start_ns"]
            assert row.start_ns > mod["start_ns"] - 2_000 + 500  # previous mod's end
        else:
            assert row.start_ns > mod["end_ns"]
            assert row.start_ns < mod["start_ns"] + 2_000  # next mod's start
    matched = len(moved) + len(df.attrs["unmatched"])
    assert matched == 2 * len(stamps)
