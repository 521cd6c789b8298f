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
