"""Tests of analysis/report_findings.py: each Findings sentence on planted data."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.floor import Launch, floor_table, launch_of
from analysis.report import build_report
from analysis.report_findings import (
    FindingsData,
    findings,
    learning,
    round_floor,
    round_shares,
    slowest_network,
    straggler,
    uplink_ratios,
)
from analysis.report_study import study_results
from analysis.summary import phase_shares
from analysis.synthetic import SyntheticCampaign, write_synthetic_results
from testbed.cli import app

# The demo's shape: three networks, three nodes, two rounds, one repetition.
DEMO = SyntheticCampaign(nodes=3, rounds=2, repetitions=1, straggler="client2")


def findings_data(spec: SyntheticCampaign, folder: Path) -> FindingsData:
    write_synthetic_results(spec, folder)
    df = pd.read_parquet(folder / "phases.parquet")
    results = study_results(folder, df, {})
    rounds = results.study.table
    median_round = rounds[rounds["quantity"] == "round"].set_index("network")
    return FindingsData(
        study=results.study,
        samples=results.samples,
        shares=phase_shares(df, median_round["median"]),
        straggler_summary=results.straggler_summary,
        learning=results.learning,
        targets=results.targets,
        target=results.target,
        chance=results.chance,
        floors=floor_table(df, launch_of({})),
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> FindingsData:
    return findings_data(DEMO, tmp_path_factory.mktemp("demo"))


def test_the_slowest_network_and_its_growing_phase(demo: FindingsData) -> None:
    sentence = slowest_network(demo.study)

    assert sentence is not None
    assert sentence.startswith("5g is the slowest network")
    assert "against" in sentence and "on ethernet (2 rounds each)" in sentence
    assert "the phase that grows most is uplink" in sentence


def test_the_slowest_network_follows_the_data(tmp_path: Path) -> None:
    # WiFi's uplink planted slowest: it, not 5G, must be named
    spec = SyntheticCampaign(
        nodes=3,
        rounds=2,
        repetitions=1,
        uplink_s={"ethernet": 0.1, "wifi": 6.0, "5g": 1.0},
        downlink_s={"ethernet": 0.1, "wifi": 0.3, "5g": 0.3},
    )
    data = findings_data(spec, tmp_path)

    sentence = slowest_network(data.study)
    ratios = uplink_ratios(data.study, data.samples)

    assert sentence is not None and sentence.startswith("wifi is the slowest")
    assert ratios is not None and ratios.startswith("On wifi the uplink takes")


def test_few_rounds_give_ranges_not_intervals(demo: FindingsData) -> None:
    sentence = uplink_ratios(demo.study, demo.samples)

    assert sentence is not None
    ratio = re.search(r"takes ([0-9.]+)× as long as on ethernet", sentence)
    assert ratio is not None and float(ratio.group(1)) == pytest.approx(30, rel=0.15)
    assert "CI" not in sentence
    assert "2 rounds are fewer than the 10 an interval needs" in sentence
    assert "medians of 6 node rounds each" in sentence
    assert re.search(r"5g 2\.\d\d–3\.\d\d s", sentence)


def test_enough_rounds_give_an_interval(tmp_path: Path) -> None:
    spec = SyntheticCampaign(nodes=2, rounds=6, repetitions=2, straggler=None)
    data = findings_data(spec, tmp_path)

    sentence = uplink_ratios(data.study, data.samples)

    assert sentence is not None
    interval = re.search(
        r"as long as on ethernet \(95% CI ([0-9.]+)–([0-9.]+)×\)", sentence
    )
    assert interval is not None
    low, high = (float(g) for g in interval.groups())
    assert low < 30.0 < high
    assert "12 rounds each" in sentence and "range" not in sentence


def test_the_round_shares_name_what_dominates(demo: FindingsData) -> None:
    sentence = round_shares(demo.shares)

    assert sentence is not None
    # planted: 1.5 + 1.5 s waits and 4 s start-up per message dominate
    assert sentence.startswith(
        "Flower's waiting and start-up take the largest share of a node's round "
        "on every network"
    )
    shares = [int(s) for s in re.findall(r"(\d+)%", sentence)]
    assert len(shares) == 9  # three classes on three networks
    by_network = [shares[i::3] for i in range(3)]
    assert all(sum(column) == pytest.approx(100, abs=2) for column in by_network)


def test_a_consistent_straggler_is_named(tmp_path: Path) -> None:
    spec = SyntheticCampaign(nodes=3, rounds=4, repetitions=1, straggler="client3")
    data = findings_data(spec, tmp_path)

    sentence = straggler(data.straggler_summary)

    assert sentence == (
        "client3 is the consistent straggler on every network: the busiest node "
        "in 4 of 4 rounds, usually in training."
    )


def test_two_rounds_are_too_few_to_call_a_straggler(demo: FindingsData) -> None:
    sentence = straggler(demo.straggler_summary)

    assert sentence is not None
    assert sentence.startswith("client2 was the busiest node on every network")
    assert "too few rounds to call it a consistent straggler (3 needed)" in sentence


def test_without_a_planted_straggler_none_is_consistent(tmp_path: Path) -> None:
    spec = SyntheticCampaign(
        nodes=4, rounds=8, repetitions=1, straggler=None, noise=0.3, seed=3
    )
    data = findings_data(spec, tmp_path)

    sentence = straggler(data.straggler_summary)

    assert sentence is not None
    assert "No node is a consistent straggler" in sentence
    assert "is the consistent straggler" not in sentence


def test_a_run_that_did_not_learn_is_said_plainly(tmp_path: Path) -> None:
    spec = SyntheticCampaign(nodes=3, rounds=2, repetitions=1, learns=False)
    data = findings_data(spec, tmp_path)

    sentence = learning(data)

    assert data.target is None
    assert sentence.startswith("The model did not learn: the median final accuracy")
    assert "chance is 0.100" in sentence
    assert "reaching target" not in " ".join(findings(data))


def test_a_run_that_learned_gets_its_time_to_target(demo: FindingsData) -> None:
    sentence = learning(demo)

    assert demo.target is not None
    first = demo.learning["median_first_accuracy"].max()
    assert demo.target > max(first, demo.chance)
    assert sentence.startswith(f"Accuracy {demo.target:.3f} was reached after")
    assert "on 5g (1 of 1 runs)" in sentence


def test_findings_are_three_to_six_sentences_and_come_first(
    demo: FindingsData, tmp_path: Path
) -> None:
    write_synthetic_results(DEMO, tmp_path)
    page = build_report(tmp_path).read_text(encoding="utf-8")

    assert 3 <= len(findings(demo)) <= 6
    assert page.index("<h2>") == page.index("<h2>Findings</h2>")
    first = page[page.index("<h2>Findings</h2>") :]
    first = first[: first.index("</section>")]
    assert first.count("<li>") == len(findings(demo))


def test_report_build_tolerates_a_cut_last_line(tmp_path: Path) -> None:
    write_synthetic_results(DEMO, tmp_path)
    log = tmp_path / "runs" / "wifi-r1" / "events.jsonl"
    lines = len(log.read_text().splitlines())
    log.write_text(log.read_text() + '{"event": "metrics", "round": 3, "sco')

    result = CliRunner().invoke(app, ["report", "build", str(tmp_path)])

    assert result.exit_code == 0, result.output
    said = f"{log} line {lines + 1}: cut short by a crash; skipped (touches run wifi-r1"
    assert f"note: {said}" in result.output
    page = html.unescape((tmp_path / "report.html").read_text(encoding="utf-8"))
    notice = page[: page.index("<h2>Findings</h2>")]
    assert said in notice
    assert "Damaged results files: what the report skipped" in notice
    metrics = pd.read_csv(tmp_path / "convergence.csv")
    assert set(metrics[metrics["run_id"] == "wifi-r1"]["round"]) == {0, 1, 2}


def test_a_log_corrupt_in_the_middle_is_named_not_fatal(tmp_path: Path) -> None:
    write_synthetic_results(DEMO, tmp_path)
    log = tmp_path / "runs" / "5g-r1" / "events.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")

    page = html.unescape(build_report(tmp_path).read_text(encoding="utf-8"))

    assert f"{log} line 2: not valid JSON" in page


def test_the_floor_sentence_reads_the_first_network_of_the_floor_table(
    demo: FindingsData,
) -> None:
    row = demo.floors.iloc[0]

    sentence = round_floor(demo.floors)

    assert row["network"] == "ethernet"
    assert sentence == (
        f"A median ethernet round takes {row['median_round_s']:.1f} s, "
        f"{row['round_over_floor']:.2f}× its floor of {row['median_floor_s']:.1f} s "
        "(downlink + training + evaluation + uplink + aggregation); Flower's "
        f"waiting and start-up take {row['flower_share']:.0%} of it (launch: stock)."
    )
    assert sentence in findings(demo)


def test_the_floor_sentence_names_the_levers_and_skips_a_missing_share(
    tmp_path: Path,
) -> None:
    write_synthetic_results(DEMO, tmp_path)
    df = pd.read_parquet(tmp_path / "phases.parquet")
    floors = floor_table(df, Launch("low-latency", ("reply-pull-0.3s", "wake")))
    floors["flower_share"] = float("nan")

    sentence = round_floor(floors)

    assert sentence is not None
    assert "Flower's" not in sentence
    assert sentence.endswith("(launch: low-latency: reply-pull-0.3s, wake).")
    assert round_floor(floors.iloc[0:0]) is None
