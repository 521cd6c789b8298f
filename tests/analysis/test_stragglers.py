"""Tests of analysis/stragglers.py: a planted straggler is found, with its cause."""

from __future__ import annotations

import pytest

from analysis.stragglers import node_leads, straggler_rounds, straggler_summary
from analysis.synthetic import SyntheticCampaign, synthetic_phases

SPEC = SyntheticCampaign(nodes=5, rounds=4, repetitions=2, straggler="client4")


def test_planted_straggler_is_the_slowest_node_of_every_round() -> None:
    rounds = straggler_rounds(synthetic_phases(SPEC))

    assert len(rounds) == 3 * SPEC.rounds * SPEC.repetitions
    assert set(rounds["straggler"]) == {"client4"}
    assert set(rounds["cause_phase"]) == {"training"}
    # it trains 3 x 2 s: 4 s more than the median node's 2 s
    assert rounds["cause_excess_s"].median() == pytest.approx(4.0, rel=0.15)
    assert (rounds["lead_s"] > 0).all()
    assert (rounds["runner_up"] != "client4").all()


def test_summary_calls_a_planted_straggler_consistent() -> None:
    summary = straggler_summary(straggler_rounds(synthetic_phases(SPEC)))

    assert summary["network"].tolist() == ["ethernet", "wifi", "5g"]
    assert (summary["top_straggler"] == "client4").all()
    assert (summary["top_share"] == 1.0).all()
    assert (summary["verdict"] == "consistent").all()
    assert (summary["usual_cause"] == "training").all()


def test_without_a_straggler_the_stragglers_compete() -> None:
    spec = SyntheticCampaign(
        nodes=5, rounds=8, repetitions=2, straggler=None, noise=0.2
    )

    summary = straggler_summary(straggler_rounds(synthetic_phases(spec)))

    assert (summary["distinct_stragglers"] >= 3).all()
    assert (summary["verdict"] == "competing").all()
    assert (summary["top_share"] < 0.5).all()


def test_warmup_rounds_are_left_out_of_the_straggler_table() -> None:
    df = synthetic_phases(SPEC)

    rounds = straggler_rounds(df, warmup_rounds=2)

    assert rounds["round"].min() == 3
    assert len(rounds) == 3 * (SPEC.rounds - 2) * SPEC.repetitions


def test_node_leads_are_zero_around_the_median() -> None:
    leads = node_leads(synthetic_phases(SPEC))

    per_round = leads.groupby(["run_id", "round"])["lead_s"].median()
    assert per_round.abs().max() == pytest.approx(0.0, abs=1e-9)
    assert len(leads) == 3 * SPEC.rounds * SPEC.repetitions * SPEC.nodes


@pytest.mark.parametrize(
    ("share", "rounds", "verdict"),
    [
        (1.0, 2, "too few rounds to tell"),
        (0.5, 2, "too few rounds to tell"),
        (0.5, 4, "competing"),  # half the rounds is not a majority
        (0.75, 4, "consistent"),
        (0.34, 9, "competing"),
    ],
)
def test_verdict(share: float, rounds: int, verdict: str) -> None:
    from analysis.stragglers import _verdict

    assert _verdict(share, rounds) == verdict
