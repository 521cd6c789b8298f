"""Tests of analysis/compare.py and `flowerbed report compare`: planted differences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.compare import compare_campaigns, write_comparison
from analysis.study import BootstrapConfig
from analysis.synthetic import SyntheticCampaign, write_synthetic_results
from testbed.cli import app

BASE = {"ethernet": 0.1, "wifi": 0.5, "5g": 3.0}
SLOWER_5G = {**BASE, "5g": 6.0}
DOWN = {"ethernet": 0.08, "wifi": 0.3, "5g": 0.6}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("campaigns")
    a, b = root / "before", root / "after"
    common = {"nodes": 3, "rounds": 4, "repetitions": 2, "downlink_s": DOWN}
    write_synthetic_results(SyntheticCampaign(uplink_s=BASE, seed=1, **common), a)  # type: ignore[arg-type]
    write_synthetic_results(SyntheticCampaign(uplink_s=SLOWER_5G, seed=2, **common), b)  # type: ignore[arg-type]
    return a, b


def test_planted_difference_exceeds_the_spread_and_others_do_not(
    folders: tuple[Path, Path],
) -> None:
    comparison = compare_campaigns(
        list(folders), bootstrap=BootstrapConfig(resamples=300)
    )

    study = comparison.study.set_index(["network", "strategy", "quantity"])
    fiveg = study.loc[("5g", "fedavg", "uplink")]
    assert comparison.labels == ["before", "after"]
    assert fiveg["after:median"] / fiveg["before:median"] == pytest.approx(2.0, rel=0.1)
    assert fiveg["after:diff"] == pytest.approx(3.0, rel=0.1)
    assert bool(fiveg["after:exceeds_spread"])
    assert not bool(study.loc[("ethernet", "fedavg", "uplink"), "after:exceeds_spread"])
    assert not bool(study.loc[("wifi", "fedavg", "downlink"), "after:exceeds_spread"])
    ratios = comparison.ratios.set_index(["quantity", "numerator", "denominator"])
    ratio = ratios.loc[("uplink", "5g", "ethernet")]
    assert ratio["before:ratio"] == pytest.approx(30.0, rel=0.1)
    assert ratio["after:ratio"] == pytest.approx(60.0, rel=0.1)


def test_written_comparison_has_the_side_by_side_table(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    comparison = compare_campaigns(
        list(folders), bootstrap=BootstrapConfig(resamples=200)
    )

    page = write_comparison(comparison, tmp_path)

    html = page.read_text(encoding="utf-8")
    assert 'id="compare-study"' in html and "exceeds spread" in html
    assert "| 5g | fedavg | uplink |" in (tmp_path / "compare.md").read_text()
    assert (tmp_path / "compare_study.csv").is_file()


def test_cli_report_compare(folders: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = folders

    result = CliRunner().invoke(
        app,
        [
            "report",
            "compare",
            str(a),
            str(b),
            "--out",
            str(tmp_path),
            "--format",
            "json",
        ],
    )

    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["labels"] == ["before", "after"]
    flagged = [r for r in out["study"] if r["after:exceeds_spread"]]
    assert {"network": "5g", "quantity": "uplink"}.items() <= next(
        r for r in flagged if r["quantity"] == "uplink"
    ).items()


def test_cli_report_compare_needs_two_folders(folders: tuple[Path, Path]) -> None:
    result = CliRunner().invoke(app, ["report", "compare", str(folders[0])])

    assert result.exit_code == 2
    assert "at least two results folders" in result.output


def test_cli_report_compare_names_a_missing_phase_table(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    result = CliRunner().invoke(
        app, ["report", "compare", str(folders[0]), str(tmp_path)]
    )

    assert result.exit_code == 2
    assert "phases.parquet" in result.output
