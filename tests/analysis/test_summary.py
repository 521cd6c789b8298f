"""Tests of analysis/summary.py on synthetic phase tables with planted values."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from analysis.phases import COLUMNS, DTYPES
from analysis.summary import (
    median_phase_table,
    network_order,
    per_node_round,
    phase_stats,
    round_time_table,
    round_times,
    study_ratios,
)

T0 = 1_700_000_000_000_000_000

# Seconds per (phase, message_type) for the fast node pi1; pi2 trains 1 s less.
# Per round pi1: downlink 1.0, training 2.0, evaluation 0.5, uplink = train + evaluate.
UPLINK = {"5g": (3.0, 0.3), "ethernet": (0.08, 0.02), "wifi": (0.4, 0.1)}


def phase_rows(
    network: str,
    *,
    rounds: int = 3,
    repetition: int = 1,
    aggregation: bool = True,
    uplink: tuple[float, float] | None = None,
) -> list[dict[str, Any]]:
    up_train, up_eval = uplink or UPLINK[network.lower()]
    run_id = f"{network}-fedavg-r{repetition}"
    out: list[dict[str, Any]] = []

    def add(rnd: int, node: str, phase: str, kind: str, seconds: float) -> None:
        start = T0 + rnd * 100_000_000_000
        end = start + round(seconds * 1e9)
        transfer = phase in ("downlink", "uplink")
        out.append(
            {
                "campaign": "study",
                "run_id": run_id,
                "network": network,
                "strategy": "fedavg",
                "repetition": repetition,
                "round": rnd,
                "node": node,
                "phase": phase,
                "message_type": kind,
                "start_ns": start,
                "end_ns": end,
                "duration_s": (end - start) / 1e9,
                "bytes": 1000 if transfer else None,
                "message_bytes": 900 if transfer else None,
                "source": "capture" if transfer else "client_mod",
            }
        )

    for rnd in range(1, rounds + 1):
        for node, training in (("pi1", 2.0), ("pi2", 1.0)):
            add(rnd, node, "downlink", "train", 0.5)
            add(rnd, node, "training", "train", training)
            add(rnd, node, "uplink", "train", up_train)
            add(rnd, node, "downlink", "evaluate", 0.5)
            add(rnd, node, "evaluation", "evaluate", 0.5)
            add(rnd, node, "uplink", "evaluate", up_eval)
        if aggregation:
            add(rnd, "server", "aggregation", "", 0.2)
    return out


def table(*parts: list[dict[str, Any]]) -> pd.DataFrame:
    records = [r for part in parts for r in part]
    return pd.DataFrame.from_records(records, columns=list(COLUMNS)).astype(DTYPES)


def test_per_node_round_sums_uplink_over_message_types() -> None:
    df = table(phase_rows("5g"))

    per = per_node_round(df)

    up = per[(per["phase"] == "uplink") & (per["node"] == "pi1") & (per["round"] == 1)]
    assert up["duration_s"].tolist() == [pytest.approx(3.3)]
    assert up["messages"].tolist() == [2]
    assert up["bytes"].tolist() == [2000]
    train = per[(per["phase"] == "training") & (per["node"] == "pi1")]
    assert train["bytes"].isna().all()


def test_round_time_is_slowest_node_plus_aggregation() -> None:
    df = table(phase_rows("5g"))

    rounds = round_times(df)

    assert len(rounds) == 3
    first = rounds.iloc[0]
    assert first["slowest_node"] == "pi1"
    # pi1: downlink 1.0 + training 2.0 + evaluation 0.5 + uplink 3.3
    assert first["slowest_node_s"] == pytest.approx(6.8)
    assert first["slowest_uplink_s"] == pytest.approx(3.3)
    assert first["aggregation_s"] == pytest.approx(0.2)
    assert first["round_s"] == pytest.approx(7.0)
    assert bool(first["complete"])
    assert first["nodes"] == 2


def test_round_without_a_matched_uplink_is_incomplete() -> None:
    records = phase_rows("5g", rounds=1)
    records = [
        r
        for r in records
        if not (
            r["node"] == "pi2"
            and r["phase"] == "uplink"
            and r["message_type"] == "train"
        )
    ]

    rounds = round_times(table(records))

    assert not bool(rounds["complete"].iloc[0])


def test_round_without_aggregation_is_incomplete_but_timed() -> None:
    rounds = round_times(table(phase_rows("wifi", aggregation=False)))

    assert rounds["aggregation_s"].isna().all()
    assert not rounds["complete"].any()
    assert rounds["round_s"].iloc[0] == pytest.approx(1.0 + 2.0 + 0.5 + 0.5)


def test_median_phase_table_has_planted_medians() -> None:
    df = table(phase_rows("5g"), phase_rows("ethernet"), phase_rows("wifi"))

    medians = median_phase_table(df)

    assert medians.index.tolist() == ["ethernet", "wifi", "5g"]
    assert medians.loc["5g", "uplink"] == pytest.approx(3.3)
    assert medians.loc["ethernet", "uplink"] == pytest.approx(0.1)
    # pi1 trains 2 s, pi2 1 s: median of the four samples per... per node-round
    assert medians.loc["wifi", "training"] == pytest.approx(1.5)
    assert medians.loc["5g", "downlink"] == pytest.approx(1.0)
    assert medians.loc["5g", "aggregation"] == pytest.approx(0.2)
    assert medians["n"].tolist() == [3, 3, 3]


def test_median_phase_table_marks_missing_phase_as_nan() -> None:
    df = table(phase_rows("wifi", aggregation=False), phase_rows("5g"))

    medians = median_phase_table(df)

    assert medians["aggregation"].isna()["wifi"]
    assert medians.loc["5g", "aggregation"] == pytest.approx(0.2)


def test_phase_stats_reports_n_and_p95() -> None:
    df = table(phase_rows("5g", rounds=4))

    stats = phase_stats(df)

    up = stats[(stats["network"] == "5g") & (stats["phase"] == "uplink")].iloc[0]
    assert up["n"] == 8  # 4 rounds x 2 nodes
    assert up["median_s"] == pytest.approx(3.3)
    assert up["p95_s"] == pytest.approx(3.3)
    assert stats["phase"].tolist()[:2] == ["downlink", "training"]


def test_study_ratios_recover_planted_ratios() -> None:
    df = table(phase_rows("5G"), phase_rows("Ethernet"), phase_rows("wifi"))

    ratios = study_ratios(df).set_index("metric")

    assert ratios.loc["5G uplink / Ethernet uplink", "value"] == pytest.approx(33.0)
    assert ratios.loc["5G uplink / WiFi uplink", "value"] == pytest.approx(6.6)
    assert ratios.loc["5G uplink / Ethernet uplink", "network"] == "5G / Ethernet"


def test_uplink_share_per_network() -> None:
    df = table(phase_rows("5g"), phase_rows("ethernet"))

    ratios = study_ratios(df)

    share = ratios[ratios["metric"] == "uplink share of the round"].set_index("network")
    assert share.loc["5g", "value"] == pytest.approx(3.3 / 7.0)
    # ethernet: pi1 = 1.0 + 2.0 + 0.5 + 0.1 = 3.6, plus 0.2 aggregation
    assert share.loc["ethernet", "value"] == pytest.approx(0.1 / 3.8)


def test_ratios_with_a_missing_network_are_omitted_not_zero() -> None:
    df = table(phase_rows("5g"), phase_rows("ethernet"))

    ratios = study_ratios(df)

    assert "5G uplink / WiFi uplink" not in set(ratios["metric"])
    assert (ratios["value"] > 0).all()


def test_uplink_share_skips_incomplete_rounds() -> None:
    df = table(phase_rows("wifi", aggregation=False))

    ratios = study_ratios(df)

    assert ratios.empty
    assert list(ratios.columns) == ["metric", "network", "value", "definition"]


def test_empty_table_gives_empty_summaries() -> None:
    df = table()

    assert median_phase_table(df).empty
    assert round_times(df).empty
    assert study_ratios(df).empty
    assert phase_stats(df).empty


def test_network_order_puts_study_networks_first() -> None:
    assert network_order(["lora", "5G", "wifi", "Ethernet", "wifi"]) == [
        "Ethernet",
        "wifi",
        "5G",
        "lora",
    ]


def test_partial_transfer_sums_are_flagged_and_left_out_of_medians() -> None:
    records = [
        r
        for r in phase_rows("ethernet", rounds=1)
        if not (
            r["node"] == "pi2"
            and r["phase"] == "uplink"
            and r["message_type"] == "train"
        )
    ]
    df = table(records)

    per = per_node_round(df)
    medians = median_phase_table(df)

    partial = per[(per["node"] == "pi2") & (per["phase"] == "uplink")]
    assert partial["complete"].tolist() == [False]
    assert per.loc[per["phase"] != "uplink", "complete"].all()
    # only pi1's full 0.08 + 0.02 remains; pi2's lone 0.02 would drag it to 0.06
    assert medians.loc["ethernet", "uplink"] == pytest.approx(0.1)


def test_round_time_table_uses_complete_rounds() -> None:
    df = table(phase_rows("5g", rounds=4), phase_rows("wifi", aggregation=False))

    rounds = round_time_table(df)

    assert rounds.index.tolist() == ["wifi", "5g"]
    assert rounds.loc["5g", "median_round_s"] == pytest.approx(7.0)
    assert rounds.loc["5g", "complete_rounds"] == 4
    assert rounds.loc["wifi", "rounds"] == 3
    assert rounds.loc["wifi", "complete_rounds"] == 0
    assert rounds["median_round_s"].isna()["wifi"]
