"""The report's study sections end to end: a synthetic folder through `report build`."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.synthetic import SyntheticCampaign, write_synthetic_results
from testbed.cli import app

SPEC = SyntheticCampaign(nodes=3, rounds=4, repetitions=1, straggler="client2")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("results")
    write_synthetic_results(SPEC, results)
    result = CliRunner().invoke(
        app,
        [
            "report",
            "build",
            str(results),
            "--warmup-rounds",
            "1",
            "--timeline-round",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    return results


def test_every_figure_is_written_as_png_and_pdf(built: Path) -> None:
    pngs = sorted(p.stem for p in (built / "figures").glob("*.png"))
    pdfs = sorted(p.stem for p in (built / "figures").glob("*.pdf"))

    assert pngs == pdfs
    for name in ("study", "convergence", "phase_ecdfs", "bytes_over_time"):
        assert name in pngs
    assert {f"stragglers_{n}_fedavg" for n in SPEC.uplink_s} <= set(pngs)
    assert all(
        (built / "figures" / f"{p}.pdf").read_bytes()[:4] == b"%PDF" for p in pdfs
    )


def test_warmup_rounds_leave_round_one_out_of_the_study(built: Path) -> None:
    study = pd.read_csv(built / "study.csv")
    stragglers = pd.read_csv(built / "stragglers.csv")

    assert set(study["rounds"]) == {SPEC.rounds - 1}
    assert stragglers["round"].min() == 2
    assert (
        "Rounds 1 to 1 are left out as warm-up." in (built / "report.html").read_text()
    )


def test_markdown_summary_names_the_planted_numbers(built: Path) -> None:
    summary = (built / "summary.md").read_text(encoding="utf-8")

    # 3 rounds after the warm-up: too few for an interval
    ratio = re.search(
        r"- Uplink 5g / ethernet: ([0-9.]+)× \(no CI: 3 rounds, 10 needed\)", summary
    )
    assert ratio is not None
    assert float(ratio.group(1)) == pytest.approx(30.0, rel=0.1)
    assert (
        "Stragglers on 5g (fedavg): consistent; client2 busiest in 3 of 3 rounds"
        in summary
    )
    findings = summary[summary.index("## Findings") :]
    assert "client2 is the consistent straggler on every network" in findings
    assert "usually in training" in summary
    assert "| 5g | fedavg |" in summary


def test_time_to_target_is_reported_for_every_network(built: Path) -> None:
    targets = pd.read_csv(built / "time_to_target.csv")

    assert list(targets["network"]) == ["ethernet", "wifi", "5g"]
    assert (targets["runs_reaching"] == 1).all()
    # the same accuracy per round, but 5G rounds last longer
    times = targets.set_index("network")["median_time_to_target_s"]
    assert times["5g"] > times["ethernet"]


def test_timelines_show_the_chosen_round(built: Path) -> None:
    page = (built / "report.html").read_text(encoding="utf-8")

    for network in SPEC.uplink_s:
        assert f"{network}: run {network}-r1, round 3." in page


def test_round_vs_floor_agrees_with_the_study_and_is_in_page_and_summary(
    built: Path,
) -> None:
    floors = pd.read_csv(built / "floor.csv")
    study = pd.read_csv(built / "study.csv")
    rounds = study[study["quantity"] == "round"].set_index("network")["median"]
    page = (built / "report.html").read_text(encoding="utf-8")
    summary = (built / "summary.md").read_text(encoding="utf-8")

    assert list(floors["network"]) == ["ethernet", "wifi", "5g"]
    assert set(floors["rounds"]) == {SPEC.rounds - 1}  # warm-up left out
    for row in floors.to_dict("records"):
        assert row["median_round_s"] == pytest.approx(rounds[row["network"]])
        assert 0 < row["median_floor_s"] < row["median_round_s"]
        assert 0.5 < row["flower_share"] < 0.9  # planted: waits dominate
    table = page[page.index('id="floor-table"') :]
    table = table[: table.index("</table>")]
    assert table.count("<tr>") == 1 + len(floors)
    assert f"{floors['round_over_floor'].iloc[0]:.2f}×" in table
    assert page.index('id="floor-table"') > page.index("<h2>Study</h2>")
    assert page.index('id="floor-table"') < page.index("<h2>Stragglers</h2>")
    assert "| network | strategy | launch | round (s) | floor (s)" in summary


def test_a_low_latency_campaign_names_its_launch_and_levers(tmp_path: Path) -> None:
    spec = SyntheticCampaign(
        nodes=2,
        rounds=2,
        repetitions=1,
        straggler=None,
        launch="low-latency",
        launch_levers=("reply-pull-0.3s", "wake-message"),
        flower_factor=0.1,
    )
    write_synthetic_results(spec, tmp_path)

    result = CliRunner().invoke(app, ["report", "build", str(tmp_path)])

    assert result.exit_code == 0, result.output
    floors = pd.read_csv(tmp_path / "floor.csv")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert set(floors["mode"]) == {"low-latency"}
    assert set(floors["levers"]) == {"reply-pull-0.3s, wake-message"}
    assert (floors["flower_share"] < 0.5).all()  # a tenth of the stock waits
    assert "Launch: low-latency (levers: reply-pull-0.3s, wake-message)." in page
    assert "(launch: low-latency: reply-pull-0.3s, wake-message)." in page
