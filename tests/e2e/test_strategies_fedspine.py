"""End to end: FedSpine fine-tunes its tiny transformer one round on SuperNodes."""

from __future__ import annotations

import ast
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from instrumentation.events import read_events
from inventory.models import Inventory
from testbed.campaign.model import load_campaign
from testbed.campaign.runner import run_campaign
from tests.e2e.clusters import emulated_cluster

pytestmark = [pytest.mark.root, pytest.mark.e2e]

if os.geteuid() != 0:
    pytest.skip(
        "end-to-end tests build network namespaces: run as root",
        allow_module_level=True,
    )


def _inventory_yaml(name: str) -> str:
    return f"""all:
  vars:
    cluster_name: {name}
    superlink_port: 8000
    management: {{subnet: 10.222.0.0/24, server_address: 10.222.0.1}}
    networks:
      ethernet: {{subnet: 10.222.1.0/24, server_address: 10.222.1.1, profile: ethernet}}
  children:
    server:
      hosts:
        server: {{ansible_host: 10.222.0.1}}
    clients:
      hosts:
        node1:
          ansible_host: 10.222.0.11
          interfaces:
            ethernet: {{ifname: eth0, ip: 10.222.1.11}}
        node2:
          ansible_host: 10.222.0.12
          interfaces:
            ethernet: {{ifname: eth0, ip: 10.222.1.12}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inventory]:
    folder = tmp_path_factory.mktemp("fedspine-cluster")
    with emulated_cluster(folder, _inventory_yaml("fsp" + secrets.token_hex(2))) as (
        inventory,
        _,
    ):
        yield inventory


def test_fedspine_prunes_and_tunes_at_the_bandits_arms_on_real_supernodes(
    cluster: Inventory, tmp_path: Path
) -> None:
    # Prepare: two arms of different rank; text sentences on each node.
    path = tmp_path / "fedspine.yaml"
    path.write_text(
        """name: e2e-fedspine
networks: [ethernet]
strategy:
  name: fedspine
  parameters: {ratios: '0.25,0.5', ranks: '2,4', fraction_evaluate: 0.0}
rounds: 1
capture: false
clock_probes: false
system_sampling_hz: 0
run_deadline_s: 300
round_timeout_s: 150
workload: {dataset: text, samples-per-node: 24, local-epochs: 1, batch-size: 8,
  learning-rate: 0.01}
"""
    )
    campaign = load_campaign(path)
    out = tmp_path / "results"

    # Execute
    (outcome,) = run_campaign(campaign, cluster, out, progress=print, features={})

    # Assert: each node got an arm from the bandit, trained at it and reported
    # its measured seconds; the server merged both updates and evaluated.
    assert outcome.status == "ok", outcome.reason
    run_dir = out / "runs" / "ethernet-r1"
    log = (run_dir / "serverapp.log").read_text()
    arms_text = re.search(
        r"FedSpine configure_train: \(ratio, rank\) per node (\{.*\})", log
    )
    assert arms_text, log[-2000:]
    arms = ast.literal_eval(arms_text.group(1))
    assert len(arms) == 2
    assert all(ratio in (0.25, 0.5) and rank in (2, 4) for ratio, rank in arms.values())
    seconds_text = re.search(
        r"FedSpine aggregate_train: 2 updates, seconds (\{.*\})", log
    )
    assert seconds_text, log[-2000:]
    seconds = ast.literal_eval(seconds_text.group(1))
    assert sorted(seconds) == sorted(arms)
    assert all(s > 0 for s in seconds.values())
    events = read_events(run_dir / "events.jsonl")
    server = [e for e in events if e["event"] == "metrics" and e["scope"] == "server"]
    assert sorted(e["round"] for e in server) == [0, 1]
    assert all(0.0 <= e["values"]["accuracy"] <= 1.0 for e in server)
