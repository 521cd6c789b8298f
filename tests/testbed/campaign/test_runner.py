from pathlib import Path

import pytest

from inventory.loader import load_inventory
from testbed.campaign.manifest import redact_secrets
from testbed.campaign.model import load_campaign
from testbed.campaign.plan import node_config_for, plan_runs

REPO = Path(__file__).resolve().parents[3]


def test_plan_is_network_major() -> None:
    campaign = load_campaign(REPO / "campaigns" / "study.yaml")
    plans = plan_runs(campaign)
    assert [p.run_id for p in plans[:4]] == [
        "ethernet-r1",
        "ethernet-r2",
        "ethernet-r3",
        "wifi-r1",
    ]
    assert len(plans) == 9 and plans[-1].index == plans[-1].total == 9


def test_node_config_partitions_clients_in_file_order() -> None:
    inventory = load_inventory(REPO / "inventory" / "examples" / "emulated.yaml")
    configs = [node_config_for(inventory, host) for host in inventory.clients]
    assert [c["partition-id"] for c in configs] == [0, 1, 2]
    assert {c["num-partitions"] for c in configs} == {3}
    assert [c["flowerbed-node"] for c in configs] == ["client1", "client2", "client3"]


def test_secrets_never_reach_the_manifest() -> None:
    raw = {
        "all": {
            "vars": {
                "ansible_password": "hunter2",
                "ansible_become_pass": "x",
                "api_token": "t",
                "ansible_user": "pi",
            },
            "hosts": [{"ssh_private_key_file": "/k", "name": "pi01"}],
        }
    }
    clean = redact_secrets(raw)
    text = repr(clean)
    for secret in ("hunter2", "'x'", "'t'", "/k"):
        assert secret not in text
    assert clean["all"]["vars"]["ansible_user"] == "pi"
    assert clean["all"]["hosts"][0]["name"] == "pi01"


@pytest.mark.root
def test_a_results_disk_too_small_stops_before_a_run(tmp_path: Path) -> None:
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    from inventory.loader import load_inventory
    from testbed.campaign.model import load_campaign
    from testbed.campaign.resume import CampaignStopped
    from testbed.campaign.runner import run_campaign
    from testbed.campaign.status import read_status

    repo = Path(__file__).resolve().parents[3]
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)],
                   check=True)  # fmt: skip
    try:
        campaign = load_campaign(repo / "campaigns" / "demo.yaml")
        inventory = load_inventory(repo / "inventory" / "examples" / "emulated.yaml")

        with pytest.raises(CampaignStopped, match="MiB free") as info:
            run_campaign(campaign, inventory, small / "out", progress=print)

        assert "--resume" in str(info.value)
        assert read_status(small / "out")["state"] == "stopped"
        assert (small / "out" / "manifest.json").exists()
        assert not (small / "out" / "runs").exists()  # no run was started
    finally:
        subprocess.run(["umount", str(small)], check=True)
