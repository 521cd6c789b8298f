"""Tests of analysis/floor.py on phase tables with planted floors, rounds and waits."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from analysis.floor import (
    FLOOR_COLUMNS,
    Launch,
    floor_table,
    flower_share,
    launch_of,
    round_floors,
)
from analysis.phases import COLUMNS, DTYPES

T0 = 1_700_000_000_000_000_000

# One message's tiled phases in time order; the compute phase is named per kind.
MESSAGE = (
    "dispatch_wait",
    "downlink",
    "client_startup",
    "compute",
    "reply_handoff",
    "uplink",
    "pickup_wait",
)


def _tiled_node(
    node: str, train: dict[str, float], evaluate: dict[str, float], gap: float
) -> list[tuple[str, str, str, float]]:
    """(node, phase, message type, seconds) of a tiled node round, in time order."""
    rows = []
    for kind, seconds in (("train", train), ("evaluate", evaluate)):
        compute = "training" if kind == "train" else "evaluation"
        for phase in MESSAGE:
            name = compute if phase == "compute" else phase
            rows.append((node, name, kind, seconds.get(name, 0.0)))
        if kind == "train":
            rows.append((node, "aggregation", "", 0.3))
            if gap:
                rows.append((node, "server_other", "", gap))
    return rows


def _frame(
    rounds: dict[int, list[tuple[str, str, str, float]]],
    network: str = "ethernet",
    run_id: str = "ethernet-r1",
    aggregation_s: float = 0.3,
) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    for rnd, rows in rounds.items():
        clock = T0 + rnd * 1_000_000_000_000
        for node, phase, kind, seconds in [*rows, ("server", "aggregation", "", 0)]:
            duration = aggregation_s if node == "server" else seconds
            start, end = clock, clock + round(duration * 1e9)
            clock = end if node != "server" else clock
            records.append(
                {
                    "campaign": "c",
                    "run_id": run_id,
                    "network": network,
                    "strategy": "fedavg",
                    "repetition": 1,
                    "round": rnd,
                    "node": node,
                    "phase": phase,
                    "message_type": kind,
                    "start_ns": start,
                    "end_ns": end,
                    "duration_s": (end - start) / 1e9,
                    "bytes": 100 if phase in ("downlink", "uplink") else None,
                    "message_bytes": None,
                    "source": "derived",
                    "uncertainty_s": 0.0,
                    "message_id": "",
                }
            )
    return pd.DataFrame(records, columns=list(COLUMNS)).astype(DTYPES)


WAITS = {"dispatch_wait": 1.0, "client_startup": 2.0, "pickup_wait": 1.0}


def _round(fast_startup: float = 0.1, scale: float = 1.0) -> list[Any]:
    """Two nodes: ``worker`` has the most link + compute seconds (3.0 + 1.0 + 0.5
    + 1.0 + 0.25 + 0.25 = 6.0 s x scale), ``starter`` fewer (2.0 s x scale) but the
    longest client start-ups (it is the busiest node and has the longest round)."""
    worker = _tiled_node(
        "worker",
        {**WAITS, "downlink": 0.25 * scale, "training": 3.0 * scale, "uplink": 1.0},
        {**WAITS, "downlink": 0.25 * scale, "evaluation": 0.5 * scale, "uplink": 1.0},
        gap=0.0,
    )
    starter_waits = {**WAITS, "client_startup": 9.0 + fast_startup}
    starter = _tiled_node(
        "starter",
        {**starter_waits, "training": 1.0 * scale, "downlink": 0.25, "uplink": 0.25},
        {**starter_waits, "evaluation": 0.5 * scale},
        gap=0.5,
    )
    return [*worker, *starter]


def test_the_floor_is_the_node_with_most_link_and_compute_plus_aggregation() -> None:
    df = _frame({1: _round()})

    (row,) = round_floors(df).to_dict("records")

    # worker: downlink 0.25 + 0.25, training 3.0, evaluation 0.5, uplink 1.0 + 1.0
    assert row["floor_node"] == "worker"
    assert row["floor_node_s"] == pytest.approx(6.0)
    # the server's timer once, not the nodes' aggregation rows as well
    assert row["aggregation_s"] == pytest.approx(0.3)
    assert row["floor_s"] == pytest.approx(6.3)
    # the round is the longest node round (starter's start-ups), not the floor node's
    assert row["round_s"] > 20.0
    assert bool(row["complete"])


def test_floor_ratio_is_a_ratio_of_medians_over_complete_rounds() -> None:
    # floors 6.3, 10.3, 14.3 s; round 1 has the smallest floor and the longest
    # round (slow start-ups), so the median of ratios is not the ratio of medians
    rounds = {
        1: _round(fast_startup=20.0),
        2: _round(scale=2.0),
        3: _round(scale=3.0),
    }
    df = _frame(rounds)
    per_round = round_floors(df)
    broken = _frame({4: _round(scale=10.0)[:-3]})  # starter's last message unpicked

    table = floor_table(pd.concat([df, broken], ignore_index=True))

    (row,) = table.to_dict("records")
    assert row["rounds"] == 3  # the incomplete round 4 is left out
    assert row["median_floor_s"] == pytest.approx(10.3)
    assert row["median_round_s"] == pytest.approx(per_round["round_s"].median())
    assert row["median_round_s"] == pytest.approx(28.0)  # starter's round 3
    ratios = per_round["round_s"] / per_round["floor_s"]
    assert row["round_over_floor"] == pytest.approx(
        row["median_round_s"] / row["median_floor_s"]
    )
    assert row["round_over_floor"] != pytest.approx(ratios.median())


def test_flower_share_counts_waits_and_startups_of_every_node() -> None:
    df = _frame({1: _round()})
    nodes = df[df["node"] != "server"]
    flower = nodes[
        nodes["phase"].isin(
            [
                "dispatch_wait",
                "client_startup",
                "reply_handoff",
                "pickup_wait",
                "server_other",
            ]
        )
    ]["duration_s"].sum()

    share = flower_share(df)

    assert share == pytest.approx(flower / nodes["duration_s"].sum())
    # by hand: worker 2 x 4.0 s of waits; starter 2 x (1 + 9.1 + 1) + 0.5 s
    total = 8.0 + 6.0 + 0.3 + 22.2 + 0.5 + 2.0 + 0.3
    assert share == pytest.approx((8.0 + 22.2 + 0.5) / total)


def test_warmup_rounds_are_left_out_of_round_floor_and_share() -> None:
    df = _frame({1: _round(fast_startup=40.0, scale=5.0), 2: _round(), 3: _round()})

    with_warmup = floor_table(df, warmup_rounds=1).iloc[0]
    everything = floor_table(df).iloc[0]

    assert with_warmup["rounds"] == 2
    assert with_warmup["median_floor_s"] == pytest.approx(6.3)
    assert with_warmup["flower_share"] == pytest.approx(
        flower_share(df[df["round"] > 1])
    )
    assert everything["flower_share"] > with_warmup["flower_share"]


def test_floor_table_names_the_launch_and_orders_networks() -> None:
    df = pd.concat(
        [
            _frame({1: _round()}, network="5g", run_id="5g-r1"),
            _frame({1: _round()}, network="ethernet", run_id="ethernet-r1"),
        ],
        ignore_index=True,
    )

    table = floor_table(df, Launch("low-latency", ("reply-pull-0.3s", "wake")))

    assert list(table.columns) == FLOOR_COLUMNS
    assert list(table["network"]) == ["ethernet", "5g"]
    assert set(table["mode"]) == {"low-latency"}
    assert set(table["levers"]) == {"reply-pull-0.3s, wake"}


def test_an_untiled_table_has_a_floor_but_no_flower_share() -> None:
    df = _frame({1: _round()})
    untiled = df[df["phase"].isin(["downlink", "training", "evaluation", "uplink"])]
    untiled = pd.concat([untiled, df[df["node"] == "server"]], ignore_index=True)

    (row,) = floor_table(untiled).to_dict("records")

    assert row["median_floor_s"] == pytest.approx(6.3)
    assert row["median_round_s"] == pytest.approx(6.3)  # slowest node + aggregation
    assert pd.isna(row["flower_share"])


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ({}, Launch()),
        (
            {"launch": "low-latency", "launch_levers": ["a", "b"]},
            Launch("low-latency", ("a", "b")),
        ),
        (
            {"launch": {"launch": "low-latency", "levers": ["a"]}},
            Launch("low-latency", ("a",)),
        ),
        ({"launch": {"mode": "stock", "levers": []}}, Launch()),
        ({"campaign": {"launch": "low-latency"}}, Launch("low-latency")),
        ({"launch": 3}, Launch()),
        (
            {"launch": "low-latency", "launch_levers": "wake"},
            Launch("low-latency", ("wake",)),
        ),
    ],
)
def test_launch_is_read_from_any_manifest_shape(
    manifest: dict[str, Any], expected: Launch
) -> None:
    assert launch_of(manifest) == expected


def test_launch_label_lists_levers() -> None:
    assert Launch().label == "stock"
    assert Launch("low-latency", ("a", "b")).label == "low-latency: a, b"
    with pytest.raises(ValueError, match="non-empty"):
        Launch("")
