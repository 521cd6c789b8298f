"""Tests of analysis/summary.py on synthetic phase tables with planted values."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from analysis.phases import COLUMNS, DTYPES
from analysis.summary import (
    GAP_PHASES,
    NODE_PHASES,
    PHASE_DEFINITIONS,
    PHASE_ORDER,
    anatomy_table,
    median_phase_table,
    network_order,
    node_rounds,
    per_node_round,
    phase_stats,
    round_time_table,
    round_times,
    study_ratios,
    tiled_runs,
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


# --- Round anatomy (tiled tables) ---------------------------------------------

LEGACY_COLUMNS = (
    "campaign",
    "run_id",
    "network",
    "strategy",
    "repetition",
    "round",
    "node",
    "phase",
    "message_type",
    "start_ns",
    "end_ns",
    "duration_s",
    "bytes",
    "message_bytes",
    "source",
)
ANATOMY_DTYPES = {
    **{c: "str" for c in LEGACY_COLUMNS},
    "repetition": "int64",
    "round": "int64",
    "start_ns": "int64",
    "end_ns": "int64",
    "duration_s": "float64",
    "bytes": "Int64",
    "message_bytes": "Int64",
    "uncertainty_s": "float64",
    "message_id": "str",
}
TILED = [p for p in PHASE_ORDER if p != "unresolved"]
# Planted anatomy, seconds per message (pickup_wait: 1.5 per message = 3 s per round).
DISPATCH_WAIT, STARTUP, HANDOFF, PICKUP_WAIT = 0.25, 0.4, 0.1, 1.5
DOWN = {"train": 1.0, "evaluate": 0.5}
UP = {"train": 2.0, "evaluate": 0.2}
NODE_AGGREGATION, SERVER_AGGREGATION = 0.2, 0.15
TRAINING = {"pi1": 2.0, "pi2": 1.0}
EVALUATION = {"pi1": 0.5, "pi2": 0.4}
STRAGGLER = ("pi2", 10.0, 3.0)  # in round 2 pi2 trains 10 s and evaluates 3 s
# Gaps bounded by a node-clock and a server-clock instant carry this uncertainty.
NODE_CLOCK_UNCERTAINTY = 0.002
# Expected: rounds 1 and 3 take 7.25 (pi1 train path) + 0.2 + 3.45 (pi1 evaluate
# path) = 10.9 s, pi1 slowest; round 2 takes 15.25 + 0.2 + 5.95 = 21.4 s, pi2.
ROUND_S = {1: 10.9, 2: 21.4, 3: 10.9}
SLOWEST = {1: "pi1", 2: "pi2", 3: "pi1"}


def anatomy_rows(
    network: str,
    *,
    rounds: int = 3,
    repetition: int = 1,
    straggler_round: int = 2,
    run_id: str | None = None,
) -> list[dict[str, Any]]:
    """A tiled phase table: every node's round covered from dispatch to pickup."""
    run_id = run_id or f"{network}-fedavg-r{repetition}"
    out: list[dict[str, Any]] = []

    def add(
        rnd: int, node: str, phase: str, kind: str, start: int, seconds: float
    ) -> int:
        end = start + round(seconds * 1e9)
        transfer = phase in ("downlink", "uplink")
        # measured spans have none; gaps between a node and a server instant do
        on_node = phase in ("client_startup", "reply_handoff")
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
                "source": "capture" if transfer else "derived",
                "uncertainty_s": NODE_CLOCK_UNCERTAINTY if on_node else 0.0,
                "message_id": f"{run_id}-{rnd}-{node}-{kind}" if kind else "",
            }
        )
        return end

    def message(rnd: int, node: str, kind: str, start: int) -> int:
        compute, seconds = (
            ("training", TRAINING[node])
            if kind == "train"
            else ("evaluation", EVALUATION[node])
        )
        if rnd == straggler_round and node == STRAGGLER[0]:
            seconds = STRAGGLER[1] if kind == "train" else STRAGGLER[2]
        t = add(rnd, node, "dispatch_wait", kind, start, DISPATCH_WAIT)
        t = add(rnd, node, "downlink", kind, t, DOWN[kind])
        t = add(rnd, node, "client_startup", kind, t, STARTUP)
        t = add(rnd, node, compute, kind, t, seconds)
        t = add(rnd, node, "reply_handoff", kind, t, HANDOFF)
        t = add(rnd, node, "uplink", kind, t, UP[kind])
        return add(rnd, node, "pickup_wait", kind, t, PICKUP_WAIT)

    for rnd in range(1, rounds + 1):
        origin = T0 + rnd * 100_000_000_000
        picked = {node: message(rnd, node, "train", origin) for node in TRAINING}
        aggregation_start = max(picked.values())
        dispatch = aggregation_start + round(NODE_AGGREGATION * 1e9)
        for node, end in picked.items():
            if end < aggregation_start:  # the tiling drops empty stretches
                add(rnd, node, "server_other", "", end, (aggregation_start - end) / 1e9)
            add(rnd, node, "aggregation", "", aggregation_start, NODE_AGGREGATION)
            message(rnd, node, "evaluate", dispatch)
        add(
            rnd,
            "server",
            "aggregation",
            "",
            aggregation_start + 20_000_000,
            SERVER_AGGREGATION,
        )
    return out


def anatomy_frame(*parts: list[dict[str, Any]]) -> pd.DataFrame:
    records = [r for part in parts for r in part]
    return pd.DataFrame.from_records(records, columns=list(ANATOMY_DTYPES)).astype(
        ANATOMY_DTYPES
    )


def test_tiled_round_time_is_the_slowest_nodes_sum() -> None:
    df = anatomy_frame(anatomy_rows("5g"))

    rounds = round_times(df).set_index("round")

    for rnd, seconds in ROUND_S.items():
        assert rounds.loc[rnd, "round_s"] == pytest.approx(seconds), rnd
        assert rounds.loc[rnd, "slowest_node"] == SLOWEST[rnd], rnd
    # the server's own timer is reported but not added: it is inside the tiling
    assert rounds["aggregation_s"].tolist() == [pytest.approx(0.15)] * 3
    assert rounds["slowest_node_s"].tolist() == rounds["round_s"].tolist()
    assert rounds["tiled"].all() and rounds["complete"].all()
    assert rounds.loc[1, "slowest_uplink_s"] == pytest.approx(2.2)


def test_node_rounds_sum_every_tiled_phase_but_not_the_server() -> None:
    nodes = node_rounds(anatomy_frame(anatomy_rows("5g"))).set_index(["round", "node"])

    assert "server" not in nodes.index.get_level_values("node")
    assert nodes.loc[(1, "pi1"), "node_s"] == pytest.approx(10.9)
    # pi1 waits 8 s for the straggler in round 2, then evaluates as usual
    assert nodes.loc[(2, "pi1"), "node_s"] == pytest.approx(15.25 + 0.2 + 3.45)
    assert nodes.loc[(2, "pi2"), "node_s"] == pytest.approx(21.4)
    assert nodes["tiled"].all() and nodes["node_complete"].all()


def test_anatomy_table_has_planted_medians_and_shares() -> None:
    df = anatomy_frame(anatomy_rows("5g"), anatomy_rows("ethernet"))

    anatomy = anatomy_table(df)

    five = anatomy[anatomy["network"] == "5g"].set_index("phase")
    assert list(five.index) == TILED
    assert anatomy["network"].drop_duplicates().tolist() == ["ethernet", "5g"]
    assert five["median_round_s"].tolist() == [pytest.approx(10.9)] * len(five)
    assert five.loc["pickup_wait", "median_s"] == pytest.approx(3.0)
    assert five.loc["pickup_wait", "share"] == pytest.approx(3.0 / 10.9)
    assert five.loc["dispatch_wait", "median_s"] == pytest.approx(0.5)
    # training per (round, node): 2, 1 | 2, 10 | 2, 1 -> 2
    assert five.loc["training", "median_s"] == pytest.approx(2.0)
    # server_other per (round, node): 0, 1 | 8, 0 | 0, 1 -> 0.5 (no row counts 0)
    assert five.loc["server_other", "median_s"] == pytest.approx(0.5)
    assert five.loc["server_other", "n"] == 6
    # client_startup and reply_handoff: two node-clock bounded gaps per round
    assert five.loc["client_startup", "median_uncertainty_s"] == pytest.approx(0.004)
    assert five.loc["training", "median_uncertainty_s"] == pytest.approx(0.0)
    # per-node aggregation rows (6 samples), not the server's 0.15 s timer
    assert five.loc["aggregation", "median_s"] == pytest.approx(0.2)
    assert five.loc["aggregation", "n"] == 6
    assert five.loc["uplink", "median_s"] == pytest.approx(2.2)


def test_median_phase_table_of_a_tiled_table_keeps_server_aggregation() -> None:
    medians = median_phase_table(anatomy_frame(anatomy_rows("wifi")))

    assert list(medians.columns) == [*TILED, "n"]
    assert medians.loc["wifi", "aggregation"] == pytest.approx(0.15)
    assert medians.loc["wifi", "pickup_wait"] == pytest.approx(3.0)
    assert medians.loc["wifi", "n"] == 3


def test_round_time_table_names_the_usual_straggler() -> None:
    table_ = round_time_table(anatomy_frame(anatomy_rows("5g")))

    assert table_.loc["5g", "median_round_s"] == pytest.approx(10.9)
    assert table_.loc["5g", "most_often_slowest"] == "pi1"


def test_round_time_table_takes_the_straggler_definition_when_given() -> None:
    # pi1's rounds last longest, but the stragglers (busiest nodes) were pi2
    stragglers = pd.DataFrame(
        {"network": ["5g", "5g", "5g"], "straggler": ["pi2", "pi2", "pi1"]}
    )

    table_ = round_time_table(anatomy_frame(anatomy_rows("5g")), stragglers)

    assert table_.loc["5g", "most_often_slowest"] == "pi2"


def test_an_untiled_node_round_makes_the_tiled_round_incomplete() -> None:
    # pi2's round 1 could not be tiled (e.g. no pickup): measured phases only
    records = [
        r
        for r in anatomy_rows("5g")
        if not (
            r["round"] == 1 and r["node"] == "pi2" and r["phase"] not in NODE_PHASES
        )
    ]
    df = anatomy_frame(records)

    rounds = round_times(df).set_index("round")
    anatomy = anatomy_table(df).set_index("phase")

    assert rounds["tiled"].all()
    assert rounds["complete"].tolist() == [False, True, True]
    assert rounds.loc[1, "round_s"] == pytest.approx(10.9)  # pi1's tiling
    # pi2's round 1 still gives measured samples, not its (absent) gaps
    assert anatomy.loc["training", "n"] == 6
    assert anatomy.loc["pickup_wait", "n"] == 5
    # median round over complete rounds 2 and 3: (21.4 + 10.9) / 2
    assert anatomy.loc["pickup_wait", "median_round_s"] == pytest.approx(16.15)


def test_unresolved_stretch_is_timed_but_incomplete() -> None:
    # pi2's evaluate instruction in round 1 was not matched: dispatch -> handler
    # is one unresolved stretch instead of dispatch_wait, downlink, client_startup
    records, merged = [], None
    for r in anatomy_rows("5g"):
        gap = r["phase"] in ("dispatch_wait", "downlink", "client_startup")
        if (r["round"], r["node"], r["message_type"]) == (1, "pi2", "evaluate") and gap:
            merged = merged or {**r, "phase": "unresolved", "bytes": None}
            merged["end_ns"] = r["end_ns"]
            merged["duration_s"] = (merged["end_ns"] - merged["start_ns"]) / 1e9
            continue
        records.append(r)
    assert merged is not None
    df = anatomy_frame([*records, merged])

    per = per_node_round(df)
    rounds = round_times(df).set_index("round")
    anatomy = anatomy_table(df).set_index("phase")

    pi2 = per[(per["round"] == 1) & (per["node"] == "pi2")].set_index("phase")
    assert pi2.loc["unresolved", "duration_s"] == pytest.approx(0.25 + 0.5 + 0.4)
    assert not pi2.loc[["unresolved", "downlink", "dispatch_wait"], "complete"].any()
    assert bool(pi2.loc["pickup_wait", "complete"])
    assert rounds.loc[1, "round_s"] == pytest.approx(10.9)  # the total is exact
    assert rounds["complete"].tolist() == [False, True, True]
    assert "unresolved" not in anatomy.index
    assert anatomy.loc["downlink", "n"] == 5


def test_study_ratios_on_a_tiled_table_use_the_slowest_nodes_round() -> None:
    df = anatomy_frame(anatomy_rows("5g"))

    share = study_ratios(df).set_index("network").loc["5g", "value"]

    # uplink 2.2 s of 10.9 (rounds 1 and 3) and of 21.4 (round 2): median 2.2 / 10.9
    assert share == pytest.approx(2.2 / 10.9)


def test_untiled_table_without_new_columns_keeps_the_old_definition() -> None:
    df = table(phase_rows("5g"))[list(LEGACY_COLUMNS)]

    per = per_node_round(df)
    rounds = round_times(df)
    anatomy = anatomy_table(df).set_index("phase")

    assert per["uncertainty_s"].isna().all()
    assert not rounds["tiled"].any()
    assert rounds["round_s"].tolist() == [pytest.approx(7.0)] * 3
    # no per-node aggregation: the server's timer stands in
    assert list(anatomy.index) == [*NODE_PHASES, "aggregation"]
    assert anatomy.loc["aggregation", "median_s"] == pytest.approx(0.2)
    assert anatomy.loc["uplink", "share"] == pytest.approx(3.3 / 7.0)
    assert anatomy["median_uncertainty_s"].isna().all()


def test_tiled_and_untiled_runs_mix() -> None:
    df = pd.concat(
        [table(phase_rows("ethernet")), anatomy_frame(anatomy_rows("5g"))],
        ignore_index=True,
    )

    rounds = round_times(df)

    assert tiled_runs(df) == {"5g-fedavg-r1"}
    by_network = rounds.groupby("network")["round_s"].first()
    assert by_network["ethernet"] == pytest.approx(1.0 + 2.0 + 0.5 + 0.1 + 0.2)
    assert by_network["5g"] == pytest.approx(10.9)


def test_phase_vocabulary_matches_the_tiling() -> None:
    from analysis import anatomy

    assert set(PHASE_ORDER) == set(anatomy.ANATOMY_PHASES)
    assert set(GAP_PHASES) == set(anatomy.GAP_PHASES)
    assert set(PHASE_DEFINITIONS) == set(PHASE_ORDER)


def test_phase_shares_add_up_to_the_round_with_waits_and_startup() -> None:
    from analysis.summary import class_shares, phase_shares, round_time_table

    df = anatomy_frame(anatomy_rows("5g"))
    rounds = round_time_table(df)["median_round_s"]

    shares = phase_shares(df, rounds).set_index("phase")

    assert shares["share"].sum() == pytest.approx(1.0)
    assert shares["segment_s"].sum() == pytest.approx(rounds["5g"])
    # every message waits 0.25 s for dispatch: 2 messages x 2 nodes x 3 rounds
    assert shares.loc["dispatch_wait", "seconds"] == pytest.approx(0.25 * 12)
    assert shares.loc["client_startup", "phase_class"] == "flower"
    assert shares.loc["uplink", "phase_class"] == "network"
    assert shares.loc["aggregation", "phase_class"] == "computation"
    classes = class_shares(shares.reset_index())
    assert list(classes.columns) == ["flower", "network", "computation"]
    assert classes.loc["5g"].sum() == pytest.approx(1.0)


def test_phase_shares_leave_untiled_runs_out() -> None:
    from analysis.summary import phase_shares

    df = table(phase_rows("5g"))

    assert phase_shares(df, pd.Series({"5g": 7.0})).empty
