"""End to end: RealFM and FedBuff with inversion of stale updates on SuperNodes."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from instrumentation.events import read_events
from inventory.models import Inventory
from testbed.campaign.model import load_campaign
from testbed.campaign.runner import run_campaign
from tests.e2e.clusters import two_node_cluster

pytestmark = [pytest.mark.root, pytest.mark.e2e]

if os.geteuid() != 0:
    pytest.skip(
        "end-to-end tests build network namespaces: run as root",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inventory]:
    folder = tmp_path_factory.mktemp("strategies-ii-cluster")
    # declared to a RealFM server
    with two_node_cluster(folder, "fw2", "10.247", "{realfm-cost: 0.009}") as inventory:
        yield inventory


def _campaign(folder: Path, strategy: str, rounds: int, parameters: str) -> Path:
    path = folder / f"{strategy}.yaml"
    path.write_text(
        f"""name: e2e-{strategy}
networks: [ethernet]
strategy: {{name: {strategy}, parameters: {{{parameters}}}}}
rounds: {rounds}
capture: false
clock_probes: false
system_sampling_hz: 0
run_deadline_s: 300
round_timeout_s: 150
workload: {{samples-per-node: 24, local-epochs: 1, batch-size: 8, model-width: 0.1}}
"""
    )
    return path


def test_realfm_sets_contributions_from_declared_costs_on_real_supernodes(
    cluster: Inventory, tmp_path: Path
) -> None:
    # Prepare: node1 declares cost 0.009, node2 nothing (it gets 0.015).
    campaign = load_campaign(
        _campaign(tmp_path, "realfm", 1, "costs: '0.015', fraction_evaluate: 0.0")
    )
    out = tmp_path / "results"

    # Execute
    (outcome,) = run_campaign(campaign, cluster, out, progress=print, features={})

    # Assert: the mechanism ran on the declared costs, one round trained.
    assert outcome.status == "ok", outcome.reason
    run_dir = out / "runs" / "ethernet-r1"
    log = (run_dir / "serverapp.log").read_text()
    assert "Starting RealFM strategy" in log
    costs = sorted(
        float(c) for c in re.findall(r"RealFM: node \d+ cost ([\d.e-]+)", log)
    )
    assert costs == [0.009, 0.015]
    assert "aggregate_train: Received 2 results and 0 failures" in log
    events = read_events(run_dir / "events.jsonl")
    (mechanism,) = [
        e for e in events if e["event"] == "metrics" and e.get("scope") == "realfm"
    ]
    values = mechanism["values"]
    assert all(
        fed > local
        for fed, local in zip(values["b-fed"], values["b-local"], strict=True)
    )
    server = [e for e in events if e["event"] == "metrics" and e["scope"] == "server"]
    assert sorted(e["round"] for e in server) == [0, 1]


def test_fedbuff_inversion_refreshes_stale_updates_on_real_supernodes(
    cluster: Inventory, tmp_path: Path
) -> None:
    # Prepare: K = 1 with two nodes training at once makes updates stale.
    campaign = load_campaign(
        _campaign(
            tmp_path,
            "fedbuff-inversion",
            4,
            "concurrency: 2, buffer_size: 1, poll_interval_s: 0.1,"
            " min_staleness: 1, num_samples: 4, iterations: 3, steps: 1,"
            " min_cosine: -1.0",
        )
    )
    out = tmp_path / "results"

    # Execute
    (outcome,) = run_campaign(campaign, cluster, out, progress=print, features={})

    # Assert: four versions; every stale update was inverted, and its cost logged.
    assert outcome.status == "ok", outcome.reason
    events = read_events((out / "runs" / "ethernet-r1") / "events.jsonl")
    applied = [
        e
        for e in events
        if e["event"] == "fedbuff_update" and e["outcome"] == "applied"
    ]
    assert sum(u["server_step"] for u in applied) == 4
    stale = [u for u in applied if u["staleness"] >= 1]
    assert stale, "two nodes at K = 1: some update must be stale"
    assert all(u["reason"].startswith("refreshed") for u in stale)
    assert all(u["weight"] == 1.0 for u in stale)
    inversions = [
        e for e in events if e["event"] == "metrics" and e.get("scope") == "inversion"
    ]
    assert len(inversions) == len(stale)
    assert all(
        e["values"]["seconds"] > 0 and e["values"]["used"] == 1 for e in inversions
    )


def test_fedlabel_trains_a_round_with_pseudo_labels_on_real_supernodes(
    cluster: Inventory, tmp_path: Path
) -> None:
    # Prepare: half the labels, a low threshold so that some pseudo-labels pass.
    campaign = load_campaign(
        _campaign(
            tmp_path,
            "fedlabel",
            1,
            "label_fraction: 0.5, threshold: 0.05, fraction_evaluate: 0.0",
        )
    )
    out = tmp_path / "results"

    # Execute
    (outcome,) = run_campaign(campaign, cluster, out, progress=print, features={})

    # Assert: both nodes trained with FedLabel's loop and said how it labelled.
    assert outcome.status == "ok", outcome.reason
    run_dir = out / "runs" / "ethernet-r1"
    log = (run_dir / "serverapp.log").read_text()
    assert "aggregate_train: Received 2 results and 0 failures" in log
    shares = re.findall(r"'pseudo-label-share': ([\d.e-]+)", log)
    assert shares, log[-2000:]
    assert all(0.0 <= float(s) <= 1.0 for s in shares)
    events = read_events(run_dir / "events.jsonl")
    server = [e for e in events if e["event"] == "metrics" and e["scope"] == "server"]
    assert sorted(e["round"] for e in server) == [0, 1]


def test_prowd_trains_each_node_at_its_bitwidth_on_real_supernodes(
    cluster: Inventory, tmp_path: Path
) -> None:
    # Prepare: two nodes, bitwidths 32 and 4 in node-id order.
    campaign = load_campaign(
        _campaign(
            tmp_path,
            "prowd",
            1,
            "bitwidths: '32,4', dequantizer_steps: 5, fraction_evaluate: 0.0",
        )
    )
    out = tmp_path / "results"

    # Execute
    (outcome,) = run_campaign(campaign, cluster, out, progress=print, features={})

    # Assert: the server handed out both bitwidths and merged one update of each.
    assert outcome.status == "ok", outcome.reason
    log = (out / "runs" / "ethernet-r1" / "serverapp.log").read_text()
    assert "ProWD configure_train: bitwidths" in log
    assert re.search(r"ProWD aggregate_train: 2 updates at bitwidths \[4, 32\]", log)
