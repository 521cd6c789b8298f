"""End to end: campaigns that survive faults, and resume after flowerbed is killed.

Real SuperLink and SuperNodes on an emulated cluster of three nodes. Every wait in
these runs has a deadline of its own (round timeout, node wait, run deadline): no
test relies on Flower's defaults (a 12 h message TTL, a forever-waiting sampler).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from inventory.models import Inventory
from testbed.campaign.leftovers import local_leftovers
from testbed.campaign.model import load_campaign
from testbed.campaign.runner import run_campaign
from testbed.emulation.naming import host_side_veth
from tests.e2e.clusters import emulated_cluster

pytestmark = [pytest.mark.root, pytest.mark.e2e]

if os.geteuid() != 0:
    pytest.skip("end-to-end tests build network namespaces: run as root",
                allow_module_level=True)  # fmt: skip

FLOWERBED = str(Path(sys.executable).parent / "flowerbed")


def _inventory_yaml(name: str) -> str:
    hosts = "".join(
        f"""        n{i}:
          ansible_host: 10.235.0.{10 + i}
          interfaces:
            ethernet: {{ifname: eth0, ip: 10.235.1.{10 + i}}}
            5g: {{ifname: wwan0, ip: 10.235.3.{10 + i}}}
"""
        for i in (1, 2, 3)
    )
    return f"""all:
  vars:
    cluster_name: {name}
    management: {{subnet: 10.235.0.0/24, server_address: 10.235.0.1}}
    networks:
      ethernet: {{subnet: 10.235.1.0/24, server_address: 10.235.1.1, profile: ethernet}}
      5g:
        subnet: 10.235.3.0/24
        server_address: 10.235.3.1
        profile: {{base: 5g, uplink_mbit: 4, downlink_mbit: 8}}
  children:
    server: {{hosts: {{server: {{ansible_host: 10.235.0.1}}}}}}
    clients:
      hosts:
{hosts}"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inventory]:
    folder = tmp_path_factory.mktemp("faults")
    yaml = _inventory_yaml("fbf" + secrets.token_hex(2))
    with emulated_cluster(folder, yaml, ssh=False) as (inventory, _):
        yield inventory


def _campaign(folder: Path, name: str, **settings: object) -> Path:
    body = {
        "name": name,
        "networks": "[ethernet]",
        "rounds": 4,
        "strategy": "fedavg",
        "run_deadline_s": 300,
        "round_timeout_s": 30,
        "node_wait_s": 8,
        "workload": "{samples-per-node: 32, local-epochs: 1, batch-size: 16, "
        "fraction-evaluate: 0.0}",
    }
    body.update(settings)
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(f"{k}: {v}" for k, v in body.items()) + "\n")
    return path


def test_a_supernode_killed_in_round_2_of_4_leaves_a_run_that_finishes(
    cluster: Inventory, tmp_path: Path
) -> None:
    campaign = load_campaign(
        _campaign(
            tmp_path,
            "kill",
            faults="[{kind: kill-supernode, node: n3, round: 2, after_s: 1}]",
        )
    )
    out = tmp_path / "results"

    (outcome,) = run_campaign(campaign, cluster, out, progress=print, features={})

    assert outcome.status == "ok", outcome.reason
    assert outcome.rounds_completed == 4
    phases = pd.read_parquet(out / "phases.parquet")
    training = phases[phases.phase == "training"]
    nodes_by_round = training.groupby("round").node.apply(set).to_dict()
    assert nodes_by_round[1] == {"n1", "n2", "n3"}
    assert nodes_by_round[3] == nodes_by_round[4] == {"n1", "n2"}
    failures = pd.read_csv(out / "failures.csv")
    injected = failures[failures.kind == "fault_injected"]
    assert list(injected.node) == ["n3"] and list(injected["round"]) == [2]
    lost = failures[failures.kind.isin(["no_reply", "error_reply"])]
    assert set(lost.node) == {"n3"} and 2 in set(lost["round"])
    assert set(lost.phase.str.split(":").str[0]) == {"train"}


def test_a_link_cut_for_10_s_mid_uplink_never_hangs(
    cluster: Inventory, tmp_path: Path
) -> None:
    campaign = load_campaign(
        _campaign(
            tmp_path,
            "cut",
            networks="[5g]",
            rounds=2,
            run_deadline_s=150,
            faults="[{kind: cut-link, node: n2, round: 1, after_s: 18, "
            "duration_s: 10}]",
        )
    )
    out = tmp_path / "results"
    started = time.monotonic()

    (outcome,) = run_campaign(campaign, cluster, out, progress=print, features={})

    assert time.monotonic() - started < 150 + 60  # its deadline plus teardown
    assert outcome.status in ("ok", "failed", "timeout")
    failures = pd.read_csv(out / "failures.csv")
    actions = failures[failures.kind.str.startswith("fault_")]
    assert list(actions.kind) == ["fault_injected", "fault_undone"]
    assert set(actions.cause) == {"cut-link"}
    assert local_leftovers(out) == {}
    link = host_side_veth(cluster, "n2", "5g")
    state = subprocess.run(
        ["ip", "-j", "link", "show", "dev", link], capture_output=True, text=True
    )
    assert json.loads(state.stdout)[0]["operstate"] != "DOWN"  # the cut was undone


def _status(out: Path) -> dict[str, object]:
    try:
        data: dict[str, object] = json.loads((out / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data


def test_resume_after_sigkill_keeps_finished_runs_and_completes(
    cluster: Inventory, tmp_path: Path
) -> None:
    campaign = _campaign(tmp_path, "resume", networks="[ethernet, 5g]", rounds=1)
    out = tmp_path / "results"
    argv = [FLOWERBED, "campaign", "run", str(campaign), "-i", str(cluster.path),
            "--via", "netns", "--out", str(out)]  # fmt: skip
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = _status(out)
        if status.get("run_index") == 2 and status.get("finished_runs"):
            break
        assert first.poll() is None, first.stdout.read() if first.stdout else ""
        time.sleep(0.5)
    time.sleep(8)  # well inside run 2: its SuperLink and SuperNodes are up
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = pd.read_parquet(out / "phases.parquet")
    assert set(before.run_id) == {"ethernet-r1"}
    assert local_leftovers(out)  # the killed campaign's processes live on

    refused = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    resumed = subprocess.run(
        [*argv, "--resume"], capture_output=True, text=True, timeout=400
    )

    assert refused.returncode != 0 and "--resume" in refused.stderr
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "stopped a leftover" in resumed.stdout
    assert "ethernet-r1: ok before the interruption, kept" in resumed.stdout
    after = pd.read_parquet(out / "phases.parquet")
    assert set(after.run_id) == {"ethernet-r1", "5g-r1"}
    kept = after[after.run_id == "ethernet-r1"].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before.reset_index(drop=True))
    assert (out / "interrupted").is_dir()  # the unfinished run's data is kept
    assert local_leftovers(out) == {}
    assert _status(out)["state"] == "finished"
