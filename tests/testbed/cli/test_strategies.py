"""``flowerbed strategies list|show`` through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strategies.registry import REGISTRY
from testbed.campaign.model import CampaignError, load_campaign
from testbed.cli import app

runner = CliRunner()


def test_list_json_gives_every_registered_method_with_its_metadata() -> None:
    # Execute
    out = runner.invoke(app, ["strategies", "list", "--format", "json"])

    # Assert: one entry per registry name, each complete.
    assert out.exit_code == 0, out.output
    listed = json.loads(out.stdout)
    assert [e["name"] for e in listed] == sorted(REGISTRY)
    by_name = {e["name"]: e for e in listed}
    fedbuff = by_name["fedbuff"]
    assert fedbuff["server_parameters"]["server_momentum"]["default"] == 0.9
    assert fedbuff["server_parameters"]["max_wall_s"]["unit"] == "s"
    assert "simulation" in fedbuff["runtimes"] and "deployment" in fedbuff["runtimes"]
    assert by_name["fedwon"]["client_parameters"]["clip_lambda"]["default"] == 0.01
    for entry in listed:
        assert entry["paper"], f"{entry['name']} names no paper"
        for info in entry["server_parameters"].values():
            assert info["help"] != "(not described)", entry["name"]
        if entry["bench"]:
            assert entry["claim"] and entry["result"] and entry["doc"]
            assert (
                Path(entry["doc"]).exists()
                or (Path(__file__).parents[3] / entry["doc"]).exists()
            )


def test_list_text_has_one_line_per_method() -> None:
    out = runner.invoke(app, ["strategies", "list"])
    assert out.exit_code == 0
    starts = [line.split()[0] for line in out.stdout.splitlines() if line[:1] != " "]
    assert starts == sorted(REGISTRY)


def test_show_prints_parameters_with_defaults_and_the_claim() -> None:
    out = runner.invoke(app, ["strategies", "show", "HeteroFL"])
    assert out.exit_code == 0, out.output
    assert "mode = 'rolling'" in out.stdout
    assert "capacity_timeout_s = 30.0 s" in out.stdout
    assert "bench.methods_heterofl" in out.stdout
    assert "last documented result: holds with 8 clients" in out.stdout


def test_show_json_and_an_unknown_name() -> None:
    out = runner.invoke(app, ["strategies", "show", "fedprox", "--format", "json"])
    assert json.loads(out.stdout)["server_parameters"]["proximal_mu"]["default"] == 0.0
    bad = runner.invoke(app, ["strategies", "show", "fedmagic"])
    assert bad.exit_code == 2
    assert "fedavg" in bad.output and "strategies list" in bad.output


@pytest.mark.parametrize(
    ("strategy", "fragment"),
    [
        ("fedmagic", "flowerbed knows: fedavg"),
        ("{name: fedprox, parameters: {mu: 1}}", "proximal_mu (default 0.0)"),
    ],
)
def test_a_campaign_with_an_unknown_name_gets_the_list(
    tmp_path: Path, strategy: str, fragment: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: x\nnetworks: [wifi]\nstrategy: {strategy}\n")
    with pytest.raises(CampaignError, match="strategies (list|show)") as err:
        load_campaign(bad)
    assert fragment in str(err.value)
