"""The CLI and the cluster commands' modules import no torch: start-up stays fast."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
    "testbed.cli",
    "testbed.cli.inventory",
    "testbed.cli.cluster",
    "testbed.cli.campaign",
    "testbed.cli.report",
)


@pytest.mark.parametrize("module", LIGHT)
def test_cluster_command_modules_do_not_import_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False", f"{module} imports torch"
