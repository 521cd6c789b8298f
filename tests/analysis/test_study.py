"""Tests of analysis/study.py: planted medians and network ratios, bootstrap CIs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.study import (
    BootstrapConfig,
    find_ratio,
    study_table,
    unit_weights,
    weighted_quantiles,
)
from analysis.synthetic import SyntheticCampaign, synthetic_phases

UPLINK = {"ethernet": 0.1, "wifi": 0.5, "5g": 3.0}
DOWNLINK = {"ethernet": 0.08, "wifi": 0.3, "5g": 0.6}
SPEC = SyntheticCampaign(
    uplink_s=UPLINK, downlink_s=DOWNLINK, nodes=4, rounds=6, repetitions=3
)
FAST = BootstrapConfig(resamples=300)


@pytest.fixture(scope="module")
def study() -> object:
    return study_table(synthetic_phases(SPEC), config=FAST)


def _row(table: pd.DataFrame, network: str, quantity: str) -> pd.Series:
    sel = table[(table["network"] == network) & (table["quantity"] == quantity)]
    assert len(sel) == 1, (network, quantity)
    return sel.iloc[0]


@pytest.mark.parametrize(
    ("numerator", "denominator"),
    [("5g", "ethernet"), ("5g", "wifi"), ("wifi", "ethernet")],
)
def test_uplink_ratios_recover_the_planted_ratios(
    study: object, numerator: str, denominator: str
) -> None:
    planted = UPLINK[numerator] / UPLINK[denominator]

    ratio = find_ratio(study.ratios, "uplink", numerator, denominator)  # type: ignore[attr-defined]

    assert ratio is not None
    # the train reply's uplink carries the planted seconds; the evaluate reply adds
    # 1/1000 of them, so the per-round sum keeps the ratio
    assert ratio["ratio"] == pytest.approx(planted, rel=0.05)
    assert ratio["ratio_low"] <= planted * 1.01
    assert ratio["ratio_high"] >= planted * 0.99
    assert ratio["ratio_low"] < ratio["ratio"] < ratio["ratio_high"]


def test_downlink_medians_sum_both_messages_and_have_ci(study: object) -> None:
    table = study.table  # type: ignore[attr-defined]
    for network, seconds in DOWNLINK.items():
        row = _row(table, network, "downlink")

        assert row["median"] == pytest.approx(2 * seconds, rel=0.05)
        assert row["median_low"] <= row["median"] <= row["median_high"]
        assert row["p95"] >= row["median"]
        assert row["n"] == SPEC.nodes * SPEC.rounds * SPEC.repetitions
        assert row["rounds"] == SPEC.rounds * SPEC.repetitions
        assert row["runs"] == SPEC.repetitions


def test_uplink_share_is_a_share_of_the_round(study: object) -> None:
    table = study.table  # type: ignore[attr-defined]
    share = _row(table, "5g", "uplink_share")
    round_s = _row(table, "5g", "round")

    assert share["unit"] == "share"
    assert 0 < share["median"] < 1
    # the slowest node's uplink is about the planted 3 s of a ~26 s round
    assert share["median"] == pytest.approx(3.0 / round_s["median"], rel=0.15)


def test_warmup_rounds_are_left_out() -> None:
    df = synthetic_phases(SPEC)
    slow_first = df["round"] == 1
    df.loc[slow_first & (df["phase"] == "uplink"), "duration_s"] *= 50

    with_warmup = study_table(df, config=FAST).table
    without = study_table(df, warmup_rounds=1, config=FAST).table

    kept = _row(without, "ethernet", "uplink")
    assert kept["rounds"] == (SPEC.rounds - 1) * SPEC.repetitions
    assert kept["median"] == pytest.approx(UPLINK["ethernet"], rel=0.1)
    assert _row(with_warmup, "ethernet", "uplink")["p95"] > 10 * kept["p95"]


def test_negative_warmup_is_refused() -> None:
    with pytest.raises(ValueError, match="warmup_rounds"):
        study_table(synthetic_phases(SPEC), warmup_rounds=-1)


def test_unit_weights_resample_runs_then_rounds() -> None:
    units = pd.DataFrame({"run_id": ["a"] * 3 + ["b"] * 5, "round": range(8)})

    weights = unit_weights(units, 500, np.random.default_rng(0))

    assert weights.shape == (500, 8)
    # each draw keeps the campaign's size: 2 runs' worth of rounds
    run_counts = weights[:, :3].sum(axis=1) / 3 + weights[:, 3:].sum(axis=1) / 5
    assert np.allclose(run_counts, 2.0)
    # sometimes run b is drawn twice and run a not at all
    assert (weights[:, :3].sum(axis=1) == 0).any()


def test_weighted_quantiles_count_a_unit_as_often_as_drawn() -> None:
    values = np.array([1.0, 2.0, 3.0, 10.0])
    unit_index = np.array([0, 0, 1, 2])
    weights = np.array([[1, 1, 1], [0, 0, 3], [2, 1, 0]])

    medians = weighted_quantiles(values, unit_index, weights, (0.5,))[:, 0]

    assert medians.tolist() == [2.0, 10.0, 2.0]


def test_confidence_interval_narrows_with_more_rounds() -> None:
    small = SyntheticCampaign(rounds=3, repetitions=1, noise=0.2)
    large = SyntheticCampaign(rounds=30, repetitions=1, noise=0.2)

    widths = []
    for spec in (small, large):
        row = _row(
            study_table(synthetic_phases(spec), config=FAST).table, "5g", "uplink"
        )
        widths.append(row["median_high"] - row["median_low"])

    assert widths[1] < widths[0] / 2


def test_weighted_quantiles_equal_quantiles_of_the_expanded_sample() -> None:
    rng = np.random.default_rng(1)
    for _ in range(40):
        m, units = int(rng.integers(1, 300)), int(rng.integers(1, 20))
        values = rng.normal(size=m).round(2)
        unit_index = rng.integers(0, units, m)
        weights = rng.integers(0, 4, (5, units))
        weights[:, unit_index[0]] += 1  # no draw without a value

        got = weighted_quantiles(values, unit_index, weights, (0.5, 0.95))

        for b in range(5):
            expanded = np.sort(np.repeat(values, weights[b, unit_index]))
            for j, q in enumerate((0.5, 0.95)):
                k = max(int(np.ceil(q * len(expanded))), 1) - 1
                assert got[b, j] == expanded[k]
