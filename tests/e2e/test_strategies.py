"""End to end: FedBN, FedWon, HeteroFL and FedBuff via the registry on SuperNodes."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from analysis.asynchrony import asynchronous_timeline, update_table
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
    folder = tmp_path_factory.mktemp("strategies-cluster")
    # a weak node (HeteroFL)
    with two_node_cluster(
        folder, "fws", "10.232", "{capacity-ratio: 0.25}"
    ) as inventory:
        yield inventory


def _campaign(
    folder: Path,
    strategy: str,
    rounds: int = 2,
    parameters: str = "",
    workload: str = "",
) -> Path:
    path = folder / f"{strategy}.yaml"
    choice = f"{{name: {strategy}, parameters: {{{parameters}}}}}"
    path.write_text(
        f"""name: e2e-{strategy}
networks: [ethernet]
strategy: {choice}
rounds: {rounds}
capture: false
clock_probes: false
system_sampling_hz: 0
run_deadline_s: 240
round_timeout_s: 120
workload: {{samples-per-node: 24, local-epochs: 1, batch-size: 8,
           model-width: 0.1{workload}}}
"""
    )
    return path


# FedWon trains the FedBN/FedWon papers' digit CNN on Digits-5-lite: 185,141
# float32 parameters at width 0.1 on 3-channel images, 0.71 MB in Flower's log.
@pytest.mark.parametrize(
    ("strategy", "server_strategy", "workload", "model_mb"),
    [
        ("fedbn", "FedBN", "", None),
        ("fedwon", "FedAvg", ", dataset: digits5, model: cnn", "0.71"),
    ],
)
def test_strategy_completes_two_rounds_on_real_supernodes(
    cluster: Inventory,
    strategy: str,
    server_strategy: str,
    workload: str,
    model_mb: str | None,
    tmp_path: Path,
) -> None:
    campaign = load_campaign(_campaign(tmp_path, strategy, workload=workload))
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
    if model_mb is not None:
        assert f"ArrayRecord ({model_mb} MB)" in serverapp_log
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


def test_heterofl_trains_sub_models_for_two_rounds_on_real_supernodes(
    cluster: Inventory, tmp_path: Path
) -> None:
    campaign = load_campaign(
        _campaign(
            tmp_path,
            "heterofl",
            # node1 declares 0.25 in the inventory; node2 declares nothing: 0.5
            parameters="mode: static, ratios: '0.5', fraction_evaluate: 0.0",
        )
    )
    out = tmp_path / "results"
    (outcome,) = run_campaign(campaign, cluster, out, progress=print, features={})
    assert outcome.status == "ok", outcome.reason
    run_dir = out / "runs" / "ethernet-r1"
    serverapp_log = (run_dir / "serverapp.log").read_text()
    assert "Starting HeteroFL strategy" in serverapp_log
    assert "configure_train: 2 sub-models (static)" in serverapp_log
    declared = {
        name: (int(node_id), ratio)
        for node_id, name, ratio in re.findall(
            r"HeteroFL: node (\d+) \((node\d)\) declares (capacity [\d.]+|no capacity)",
            serverapp_log,
        )
    }
    assert {k: v[1] for k, v in declared.items()} == {
        "node1": "capacity 0.25",
        "node2": "no capacity",
    }
    assert "0 failures" in serverapp_log and "1 failures" not in serverapp_log
    events = read_events(run_dir / "events.jsonl")
    coverage = [
        e for e in events if e["event"] == "metrics" and e.get("scope") == "coverage"
    ]
    assert [e["round"] for e in coverage] == [1, 2]
    # Static, no full-capacity client: half the channels are never trained.
    assert all(e["values"]["gamma-star"] == 0.0 for e in coverage)
    assert coverage[-1]["values"]["never-covered-fraction"] > 0.3
    # The weak node gets the smaller sub-model in every round.
    sent = {
        (e["round"], e["node_id"]): e["bytes"]
        for e in events
        if e["event"] == "dispatch" and e["message_type"] == "train"
    }
    weak, other = declared["node1"][0], declared["node2"][0]
    for rnd in (1, 2):
        assert sent[(rnd, weak)] < sent[(rnd, other)], sent
    server = [e for e in events if e["event"] == "metrics" and e["scope"] == "server"]
    assert sorted(e["round"] for e in server) == [0, 1, 2]


def test_fedbuff_reaches_four_versions_on_real_supernodes(
    cluster: Inventory, tmp_path: Path
) -> None:
    campaign = load_campaign(
        _campaign(
            tmp_path,
            "fedbuff",
            rounds=4,
            parameters="concurrency: 2, buffer_size: 1, max_staleness: 3,"
            " poll_interval_s: 0.1",
        )
    )
    out = tmp_path / "results"
    (outcome,) = run_campaign(campaign, cluster, out, progress=print, features={})
    assert outcome.status == "ok", outcome.reason
    run_dir = out / "runs" / "ethernet-r1"
    events = read_events(run_dir / "events.jsonl")
    updates = [e for e in events if e["event"] == "fedbuff_update"]
    applied = [u for u in updates if u["outcome"] == "applied"]
    assert sum(u["server_step"] for u in applied) == 4
    assert sorted(u["version_after"] for u in applied if u["server_step"]) == [
        1,
        2,
        3,
        4,
    ]
    # Both SuperNodes trained, each update's staleness is its versions' gap.
    assert len({u["node_id"] for u in applied}) == 2
    for u in applied:
        assert (
            u["staleness"]
            == u["version_after"] - u["server_step"] - u["trained_on_version"]
        )
        assert u["sent_ns"] < u["arrival_ns"]
    # Two nodes train concurrently with K = 1: some update is stale.
    assert max(u["staleness"] for u in applied) >= 1
    server = [e for e in events if e["event"] == "metrics" and e["scope"] == "server"]
    assert sorted(e["round"] for e in server) == [0, 1, 2, 3, 4]
    assert any(e["event"] == "app_end" and e["status"] == "ok" for e in events)
    # The asynchronous timeline reads the real log: one bar per update, per node.
    table = update_table(events)
    assert len(table) == len(updates)
    assert set(table[table.outcome == "applied"].node) == {"node1", "node2"}
    assert (table.dropna(subset=["end_s"]).duration_s > 0).all()
    assert len(asynchronous_timeline(table).axes[0].patches) >= len(updates)
