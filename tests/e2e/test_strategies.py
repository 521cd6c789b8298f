"""End to end: FedBN and FedWon via the registry on real SuperNodes (emulated)."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from instrumentation.events import read_events
from inventory.loader import load_inventory
from inventory.models import Inventory
from testbed import emulated
from testbed.campaign import load_campaign
from testbed.runner import run_campaign

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
    management: {{subnet: 10.232.0.0/24, server_address: 10.232.0.1}}
    networks:
      ethernet: {{subnet: 10.232.1.0/24, server_address: 10.232.1.1, profile: ethernet}}
  children:
    server:
      hosts:
        server: {{ansible_host: 10.232.0.1}}
    clients:
      hosts:
        node1:
          ansible_host: 10.232.0.11
          interfaces:
            ethernet: {{ifname: eth0, ip: 10.232.1.11}}
        node2:
          ansible_host: 10.232.0.12
          interfaces:
            ethernet: {{ifname: eth0, ip: 10.232.1.12}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inventory]:
    folder = tmp_path_factory.mktemp("strategies-cluster")
    path = folder / "inventory.yaml"
    path.write_text(_inventory_yaml("fws" + secrets.token_hex(2)))
    inventory = load_inventory(path)
    try:
        emulated.cluster_up(inventory)
        yield inventory
    finally:
        emulated.cluster_down(inventory)


def _campaign(folder: Path, strategy: str) -> Path:
    path = folder / f"{strategy}.yaml"
    path.write_text(
        f"""name: e2e-{strategy}
networks: [ethernet]
strategy: {strategy}
rounds: 2
capture: false
clock_probes: false
system_sampling_hz: 0
run_deadline_s: 240
round_timeout_s: 120
workload: {{samples-per-node: 24, local-epochs: 1, batch-size: 8, model-width: 0.1}}
"""
    )
    return path


@pytest.mark.parametrize(
    ("strategy", "server_strategy"), [("fedbn", "FedBN"), ("fedwon", "FedAvg")]
)
def test_strategy_completes_two_rounds_on_real_supernodes(
    cluster: Inventory, strategy: str, server_strategy: str, tmp_path: Path
) -> None:
    campaign = load_campaign(_campaign(tmp_path, strategy))
    out = tmp_path / "results"
    (outcome,) = run_campaign(campaign, cluster, out, progress=print, features={})
    assert outcome.status == "ok", outcome.reason
    df = pd.read_parquet(out / "phases.parquet")
    aggregation = df[(df.node == "server") & (df.phase == "aggregation")]
    assert sorted(aggregation["round"]) == [1, 2]
    for node in ("node1", "node2"):
        for rnd in (1, 2):
            cell = df[(df.node == node) & (df["round"] == rnd)]
            assert {"training", "evaluation"} <= set(cell.phase), (node, rnd)
    run_dir = out / "runs" / "ethernet-r1"
    serverapp_log = (run_dir / "serverapp.log").read_text()
    assert f"Starting {server_strategy} strategy" in serverapp_log
    assert "0 failures" in serverapp_log and "1 failures" not in serverapp_log
    if strategy == "fedbn":  # BatchNorm kept in context.state from round 1 to 2
        assert "'local-state-restored': 0.0" in serverapp_log  # round 1 train
        assert "'local-state-restored': 1.0" in serverapp_log  # later messages
    else:
        assert "local-state-restored" not in serverapp_log
    events = read_events(run_dir / "events.jsonl")
    server_metrics = [
        e for e in events if e["event"] == "metrics" and e.get("scope") == "server"
    ]
    assert sorted(e["round"] for e in server_metrics) == [0, 1, 2]
    ps = subprocess.run(
        ["ps", "-eo", "args"], capture_output=True, text=True, check=True
    ).stdout
    assert str(out) not in ps  # nothing outlives the campaign
