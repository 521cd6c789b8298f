"""End to end: MAS (merge, then split), PROAR-PFed and FedSpine on real SuperNodes."""

from __future__ import annotations

import ast
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
    folder = tmp_path_factory.mktemp("strategies-iii-cluster")
    with two_node_cluster(folder, "fw3", "10.221") as inventory:
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
workload:
  {{model: cnn, samples-per-node: 24, local-epochs: 1, batch-size: 8, model-width: 0.1}}
"""
    )
    return path


def test_mas_merges_measures_affinities_and_splits_on_real_supernodes(
    cluster: Inventory, tmp_path: Path
) -> None:
    # Prepare: one merged round (affinities measured in it), then one split round.
    campaign = load_campaign(
        _campaign(
            tmp_path,
            "mas",
            2,
            "merge_rounds: 1, groups: 2, affinity_batches: 1, fraction_evaluate: 0.0",
        )
    )
    out = tmp_path / "results"

    # Execute
    (outcome,) = run_campaign(campaign, cluster, out, progress=print, features={})

    # Assert: round 1 asked for affinities on one encoder, the server split the
    # tasks into two groups from both nodes' measurements, round 2 sent two.
    assert outcome.status == "ok", outcome.reason
    run_dir = out / "runs" / "ethernet-r1"
    log = (run_dir / "serverapp.log").read_text()
    assert "MAS configure_train: round 1, encoders [0], affinities asked" in log
    assert re.search(r"MAS split after round 1: groups \[\[", log), log[-2000:]
    assert "MAS configure_train: round 2, encoders [0, 1], affinities not asked" in log
    assert log.count("aggregate_train: Received 2 results and 0 failures") == 2
    events = read_events(run_dir / "events.jsonl")
    (split,) = [
        e for e in events if e["event"] == "metrics" and e.get("scope") == "mas"
    ]
    assert len(split["values"]["affinity"]) == 25
    assert sorted(set(split["values"]["groups"])) == [0, 1]


def test_proar_pfed_aggregates_over_the_simulated_air_on_real_supernodes(
    cluster: Inventory, tmp_path: Path
) -> None:
    # Prepare: no truncation, so both nodes transmit; the head stays on the node.
    campaign = load_campaign(
        _campaign(
            tmp_path,
            "proar-pfed",
            1,
            "snr_db: 10.0, ris_elements: 8, truncation: 0.0, fraction_evaluate: 0.0",
        )
    )
    out = tmp_path / "results"

    # Execute
    (outcome,) = run_campaign(campaign, cluster, out, progress=print, features={})

    # Assert: both updates went through the simulated channel, reported as such.
    assert outcome.status == "ok", outcome.reason
    run_dir = out / "runs" / "ethernet-r1"
    log = (run_dir / "serverapp.log").read_text()
    assert "aggregate_train: Received 2 results and 0 failures" in log
    assert "PROAR-PFed aggregate_train (simulated channel): 2 of 2 transmitted" in log
    events = read_events(run_dir / "events.jsonl")
    (ota,) = [e for e in events if e["event"] == "metrics" and e.get("scope") == "ota"]
    assert ota["values"]["transmitted"] == 2
    assert len(ota["values"]["channel-power"]) == 2
    server = [e for e in events if e["event"] == "metrics" and e["scope"] == "server"]
    assert sorted(e["round"] for e in server) == [0, 1]


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
