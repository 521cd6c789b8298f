"""Tests for testbed/campaign/preflight.py and the campaign loader's checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inventory.loader import load_inventory
from testbed.campaign.model import CampaignError, load_campaign
from testbed.campaign.preflight import check_hosts
from testbed.cli import app

REPO = Path(__file__).resolve().parents[3]
INVENTORY = REPO / "inventory" / "examples" / "emulated.yaml"
BASE = "name: x\nnetworks: [ethernet]\n"


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        (BASE + "rounds: 2\nrounds: 3\n", "-", "duplicate key 'rounds'"),
        (BASE + "workload: {local-epochs: -1}\n", "workload.local-epochs", ">= 1"),
        (BASE + "workload: {batch-size: 0}\n", "workload.batch-size", ">= 1"),
        (BASE + "workload: {learning-rate: -5}\n", "workload.learning-rate", "> 0"),
        (BASE + "rounds: 100000000000\n", "rounds", "<= 100,000"),
        ("name: x\nnetworks: ['../x']\n", "networks", "not a valid network name"),
        ("name: '..'\nnetworks: [ethernet]\n", "name", "not a valid campaign name"),
        (
            BASE + "faults: [{kind: loss, node: c1, round: 9}]\n",
            "faults[0].round",
            "after",
        ),
        (BASE + "faults: [{kind: loss, node: c1, round: 1.5}]\n", "faults", "whole"),
    ],
)
def test_wrong_successes_are_now_errors(
    tmp_path: Path, text: str, key: str, fragment: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)

    with pytest.raises(CampaignError) as caught:
        load_campaign(path)

    assert f"key '{key}'" in str(caught.value) and fragment in str(caught.value)


@pytest.mark.parametrize("kind", ["binary", "directory", "fifo"])
def test_unreadable_campaign_paths_give_clear_errors(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "c.yaml"
    if kind == "binary":
        path.write_bytes(b"\x89PNG\x00\xff")
    elif kind == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)

    with pytest.raises(CampaignError, match="Fix:"):
        load_campaign(path)


def test_a_fault_on_a_host_the_inventory_lacks_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(BASE + "faults: [{kind: kill-supernode, node: pi9}]\n")

    with pytest.raises(CampaignError, match="'pi9' is not a client") as caught:
        check_hosts(load_campaign(path), load_inventory(INVENTORY))

    assert caught.value.line == 3


def test_loading_a_campaign_imports_neither_torch_nor_flower() -> None:
    code = (
        "import sys\nfrom testbed.campaign.model import load_campaign\n"
        f"load_campaign({str(REPO / 'campaigns' / 'demo.yaml')!r})\n"
        "print([m for m in ('torch', 'flwr') if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_campaign_check_passes_the_demo_and_starts_nothing(tmp_path: Path) -> None:
    demo = str(REPO / "campaigns" / "demo.yaml")
    out = str(tmp_path / "out")

    result = CliRunner().invoke(
        app, ["campaign", "check", demo, "-i", str(INVENTORY), "-o", out]
    )

    assert result.exit_code == 0, result.output
    assert "nothing was started" in result.output
    assert not (tmp_path / "out").exists()


def test_campaign_check_exits_2_on_an_unknown_fault_host(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(BASE + "faults: [{kind: kill-supernode, node: pi9}]\n")

    result = CliRunner().invoke(
        app, ["campaign", "check", str(path), "-i", str(INVENTORY)]
    )

    assert result.exit_code == 2
    assert "pi9" in result.output and "Traceback" not in result.output
