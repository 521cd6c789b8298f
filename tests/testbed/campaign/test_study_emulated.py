"""The seed study, emulated: its inventory and campaigns load and pass `campaign check`,
and a report sets the study's ratios beside the campaign's own."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from inventory.device_classes import DEVICE_CLASSES
from inventory.loader import load_inventory
from testbed.campaign.model import load_campaign
from testbed.cli import app

REPO = Path(__file__).resolve().parents[3]
INVENTORY = REPO / "inventory" / "examples" / "study.yaml"


def test_the_study_inventory_has_pi4_nodes_and_a_tdd_5g() -> None:
    inv = load_inventory(INVENTORY)

    assert list(inv.network_names) == ["ethernet", "wifi", "5g"]
    pi4 = DEVICE_CLASSES["pi4"]
    for node in inv.clients:
        assert node.device_class == "pi4"
        assert (node.cpu_quota, node.memory_mb) == (pi4.cpu_quota(), pi4.memory_mb)
    five_g = inv.network("5g").profile
    # about a quarter of the TDD symbols for the uplink: 1/4-1/3 of the downlink
    assert 0.25 <= five_g.uplink_mbit / five_g.downlink_mbit <= 1 / 3
    assert five_g.delay_ms > 0 and five_g.needs_delay
    assert all(net.profile.delay_ms > 0 for net in inv.networks)


@pytest.mark.parametrize("name", ["study-emulated", "study-emulated-quick"])
def test_the_study_campaigns_pass_campaign_check(name: str, tmp_path: Path) -> None:
    path = REPO / "campaigns" / f"{name}.yaml"
    campaign = load_campaign(path)
    assert campaign.workload_dict["model"] == "squeezenet"
    assert campaign.strategy.name == "fedavg"
    assert list(campaign.networks) == ["ethernet", "wifi", "5g"]

    result = CliRunner().invoke(
        app,
        [
            "campaign",
            "check",
            str(path),
            "-i",
            str(INVENTORY),
            "-o",
            str(tmp_path / "r"),
        ],
    )

    assert result.exit_code == 0, result.output
    assert f"campaign {name}" in result.output and "valid" in result.output


def test_the_report_shows_every_study_figure_beside_the_campaigns(
    tmp_path: Path,
) -> None:
    from analysis.report import build_report
    from analysis.synthetic import SyntheticCampaign, write_synthetic_results

    spec = SyntheticCampaign(uplink_s={"ethernet": 0.2, "wifi": 0.5, "5g": 4.0})
    out = write_synthetic_results(spec, tmp_path / "results")
    html = build_report(out).read_text()

    section = html[html.index("Against the seed study") :]
    for study in ("33.3×", "17.8×", "23%"):
        assert study in section
    ref = pd.read_csv(out / "reference.csv").set_index("figure")
    # the planted medians: 4.0 / 0.2 = 20x over Ethernet, 4.0 / 0.5 = 8x over WiFi
    eth = ref.loc["5G uplink / Ethernet uplink", "campaign"]
    wifi = ref.loc["5G uplink / WiFi uplink", "campaign"]
    assert eth == pytest.approx(20, rel=0.3) and wifi == pytest.approx(8, rel=0.3)
    assert f"{eth:.2f}×" in section and f"{wifi:.2f}×" in section
    share = ref.loc["5G uplink share of the round", "campaign"]
    assert 0 < share < 1 and f"{share:.0%}" in section
    assert "The seed study, emulated" in section


def test_inventory_validate_shows_each_nodes_class_and_limits() -> None:
    result = CliRunner().invoke(app, ["inventory", "validate", str(INVENTORY)])

    assert result.exit_code == 0, result.output
    quota = DEVICE_CLASSES["pi4"].cpu_quota()
    for node in ("pi1", "pi2", "pi3"):
        assert f"client {node} " in result.output
    assert result.output.count(f"[pi4: {quota:g} core, 4096 MiB]") == 3
