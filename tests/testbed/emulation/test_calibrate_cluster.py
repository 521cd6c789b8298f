"""``cluster calibrate`` on a real emulated cluster: iperf3 and ping through tc
shaping in namespaces this test makes, and a node that cannot be reached."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from inventory.models import Inventory
from testbed.emulation.apply import cluster_down, cluster_up
from testbed.emulation.naming import node_namespace
from testbed.emulation.sshd import forget_state
from testbed.emulation.status import cluster_status, manifest_features
from testbed.lab.calibrate import calibrate, describe, netns_connector
from testbed.transport.executor import LocalExecutor
from tests.testbed.emulation.inventories import make_inventory

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and tc"),
    pytest.mark.skipif(shutil.which("iperf3") is None, reason="needs iperf3"),
]
SECOND_OCTET = 238  # 10.238.x.0/24: this file's cluster only


@pytest.fixture(scope="module")
def cluster() -> Iterator[Inventory]:
    inv = make_inventory(second=SECOND_OCTET)
    try:
        cluster_up(inv)
        yield inv
    finally:
        cluster_down(inv)
        forget_state(inv)


def test_calibration_matches_the_shaped_rates_and_reports_a_gone_node(
    cluster: Inventory,
) -> None:
    # Prepare: pi2's connector points at a namespace that does not exist.
    inv = cluster
    delay = manifest_features(cluster_status(inv))["delay"]
    connectors = {
        "pi1": netns_connector(node_namespace(inv, "pi1"), inv.path),
        "pi2": netns_connector("fb-no-such-node", inv.path),
    }

    # Execute
    result = calibrate(
        inv,
        connectors,
        LocalExecutor(),
        seconds=1.5,
        ping_count=5,
        port=5291,
        delay_note=f"delay active: {delay['active']}",
    )

    # Assert: pi1 carries its profiles' rates (ethernet 100/100, cell 24/8) ...
    rows = {(m.node, m.network, m.quantity): m for m in result.measurements}
    text = describe(result)
    for network, quantity, profile in (
        ("ethernet", "down_mbit", 100),
        ("ethernet", "up_mbit", 100),
        ("cell", "down_mbit", 24),
        ("cell", "up_mbit", 8),
    ):
        row = rows["pi1", network, quantity]
        assert row.profile == profile
        assert row.verdict == "link", text
        assert row.measured == pytest.approx(profile, rel=0.10)
    # ... its round trips are measured and judged against 2 x delay_ms (30 ms)
    cell_rtt = rows["pi1", "cell", "rtt_ms"]
    assert cell_rtt.measured is not None and cell_rtt.profile == 30
    if not delay["active"]:
        assert cell_rtt.verdict == "below-profile"
        assert "delay active: False" in cell_rtt.detail
    # ... and pi2 has error rows that say what to do, without stopping pi1.
    gone = rows["pi2", "ethernet", "up_mbit"]
    assert gone.verdict == "error" and gone.measured is None
    assert "fb-no-such-node is gone" in (gone.error or "")
    assert "cluster up" in (gone.error or "")
    assert len(result.measurements) == 3 * 2 + 3
