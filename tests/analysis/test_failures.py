"""The failure table from synthetic events."""

from __future__ import annotations

import pytest

from analysis.failures import failure_table, stopped_in

MB = 1_000_000


@pytest.mark.parametrize(
    ("transfers", "expected"),
    [
        ([], "downlink"),
        ([("up", 150, 2_000), ("down", 160, 3_000)], "downlink"),  # polls only
        ([("down", 150, 4 * MB)], "training"),
        ([("down", 150, 2 * MB), ("down", 170, 2 * MB)], "training"),
        ([("down", 150, 4 * MB), ("up", 300, 3 * MB)], "uplink"),
        ([("down", 50, 4 * MB)], "downlink"),  # before the dispatch: another message
        ([("down", 150, 4 * MB), ("up", 900, 3 * MB)], "training"),  # after it ended
    ],
)
def test_where_a_message_stopped(
    transfers: list[tuple[str, int, int]], expected: str
) -> None:
    assert stopped_in(transfers, 100, 800, 4 * MB) == expected


def _events() -> list[dict[str, object]]:
    return [
        {"event": "phase", "node_id": 7, "node": "pi3", "t_ns": 10},
        {
            "event": "dispatch",
            "message_id": "m1",
            "dispatch_ns": 100,
            "bytes": 4 * MB,
            "t_ns": 100,
        },  # fmt: skip
        {
            "event": "transfer",
            "node": "pi3",
            "direction": "down",
            "start_ns": 120,
            "end_ns": 200,
            "bytes": 4 * MB,
            "t_ns": 300,
        },  # fmt: skip
        {
            "event": "fault",
            "kind": "kill-supernode",
            "node": "pi3",
            "round": 2,
            "action": "injected",
            "t_fault_ns": 150,
            "error": "",
            "t_ns": 150,
        },  # fmt: skip
        {
            "event": "failure",
            "round": 2,
            "node_id": 7,
            "node": "",
            "message_type": "train",
            "message_id": "m1",
            "reason": "no reply within the round timeout of 30 s",
            "t_ns": 500,
        },  # fmt: skip
        {
            "event": "degraded",
            "round": 3,
            "step": "configure_train",
            "wanted": 3,
            "present": 2,
            "waited_s": 8.0,
            "t_ns": 600,
        },  # fmt: skip
        {
            "event": "run_end",
            "status": "timeout",
            "rounds": 3,
            "reason": "run exceeded its deadline\nmore",
            "t_ns": 700,
        },  # fmt: skip
    ]


def test_failure_rows_say_what_where_and_why() -> None:
    table = failure_table(_events(), "5g-r1")

    assert list(table.kind) == [
        "fault_injected",
        "no_reply",
        "degraded",
        "run_timeout",
    ]
    lost = table[table.kind == "no_reply"].iloc[0]
    assert (lost.run_id, lost["round"], lost.node) == ("5g-r1", 2, "pi3")
    assert lost.phase == "train:training"  # the model had arrived
    degraded = table[table.kind == "degraded"].iloc[0]
    assert degraded.cause == "went on with 2 of 3 node(s) after waiting 8 s"
    assert table.iloc[-1].cause == "run exceeded its deadline"


def test_a_clean_run_has_no_rows_but_the_columns() -> None:
    table = failure_table([{"event": "run_end", "status": "ok", "t_ns": 1}], "r")
    assert table.empty and "phase" in table.columns
