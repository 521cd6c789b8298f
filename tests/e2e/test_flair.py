"""End to end: `dataset: flair` trains on a generated FLAIR file on SuperNodes."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from instrumentation.events import read_events
from inventory.models import Inventory
from testbed.campaign.model import load_campaign
from testbed.campaign.runner import run_campaign
from tests.e2e.clusters import two_node_cluster
from workloads.flair_example import write_example_file

pytestmark = [pytest.mark.root, pytest.mark.e2e]

if os.geteuid() != 0:
    pytest.skip(
        "end-to-end tests build network namespaces: run as root",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inventory]:
    folder = tmp_path_factory.mktemp("flair-cluster")
    # named: one user
    with two_node_cluster(
        folder, "fl", "10.223", '{flair-users: "train-user-2"}'
    ) as inventory:
        yield inventory


def test_a_flair_campaign_trains_on_supernodes_and_reports_averaged_precision(
    cluster: Inventory, tmp_path: Path
) -> None:
    # Prepare: a generated file (4 train, 2 val, 2 test users, 6 images each);
    # node1 names its user, node2 (partition 1 of 2) is dealt users 1 and 3.
    data = write_example_file(tmp_path / "flair.hdf5")
    path = tmp_path / "flair.yaml"
    path.write_text(
        f"""name: e2e-flair
networks: [ethernet]
strategy: fedavg
rounds: 1
capture: false
clock_probes: false
system_sampling_hz: 0
run_deadline_s: 300
round_timeout_s: 150
workload: {{dataset: flair, flair-path: '{data}', samples-per-node: 24,
           local-epochs: 1, batch-size: 4, model-width: 0.1}}
"""
    )
    out = tmp_path / "results"

    # Execute
    (outcome,) = run_campaign(
        load_campaign(path), cluster, out, progress=print, features={}
    )

    # Assert: one round on both nodes, each on its own users; AP reported.
    assert outcome.status == "ok", outcome.reason
    run_dir = out / "runs" / "ethernet-r1"
    log = (run_dir / "serverapp.log").read_text()
    assert "aggregate_train: Received 2 results and 0 failures" in log
    node1 = (run_dir / "nodes" / "node1.log").read_text()
    node2 = (run_dir / "nodes" / "node2.log").read_text()
    assert "trains on users train-user-2 (6 images), evaluates on val-user-0" in node1
    assert (
        "trains on users train-user-1,train-user-3 (12 images), evaluates on"
        " val-user-1" in node2
    )
    events = read_events(run_dir / "events.jsonl")
    metrics = [e for e in events if e["event"] == "metrics"]
    server = [e for e in metrics if e["scope"] == "server"]
    assert sorted(e["round"] for e in server) == [0, 1]
    for event in server:
        values = event["values"]
        assert "accuracy" not in values
        assert 0.0 < values["macro-ap"] <= 1.0 and 0.0 < values["micro-ap"] <= 1.0
        assert math.isfinite(values["loss"])
    (evaluated,) = [e for e in metrics if e["scope"] == "evaluate"]
    assert 0.0 < evaluated["values"]["eval-macro-ap"] <= 1.0
    (trained,) = [e for e in metrics if e["scope"] == "train"]
    assert trained["values"]["train-loss"] > 0.0
