"""The CLI and the cluster commands' modules import no torch: start-up stays fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

# Modules behind `inventory check`, `cluster provision|bootstrap|up|status` and
# `campaign status`: importing torch costs 1-2 s per command (a second
# `cluster provision` that finds nothing to do takes 0.5 s in all).
LIGHT = (
    "testbed.lab.access",
    "testbed.lab.provision",
    "testbed.lab.check",
    "testbed.emulation.apply",
    "testbed.emulation.status",
    "testbed.campaign.status",
    "testbed.campaign.model",
    "testbed.cli",
    "testbed.cli.inventory",
    "testbed.cli.cluster",
    "testbed.cli.campaign",
    "testbed.cli.report",
    "testbed.cli.strategies",
)


@pytest.mark.parametrize("module", LIGHT)
def test_cluster_command_modules_do_not_import_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False", f"{module} imports torch"


def test_a_bad_campaign_file_fails_before_the_runner_is_imported(
    tmp_path: Path,
) -> None:
    # Prepare: a campaign naming a strategy flowerbed does not know.
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nnetworks: [ethernet]\nstrategy: {name: nope}\n")
    inventory = REPO / "inventory" / "examples" / "emulated.yaml"
    argv = ["flowerbed", "campaign", "run", str(bad), "-i", str(inventory)]
    code = (
        "import runpy, sys\n"
        f"sys.argv = {argv!r}\n"
        "try:\n"
        "    runpy.run_module('testbed.cli', run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    loaded = [m for m in ('testbed.campaign.runner', 'analysis.phases')"
        " if m in sys.modules]\n"
        "    print(stop.code, loaded)\n"
    )

    # Execute
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    # Assert: the validation error, exit code 2, and nothing of the runner.
    assert "unknown strategy 'nope'" in out.stderr
    assert out.stdout.strip() == "2 []"
