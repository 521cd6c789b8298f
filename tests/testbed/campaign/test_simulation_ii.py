"""RealFM and fedbuff-inversion campaigns in Flower's real simulation runtime (Ray)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from testbed.campaign.model import load_campaign
from testbed.campaign.simulation import run_simulated_campaign

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Flower's simulation runtime needs flwr[simulation] (Ray)",
)


def _run(tmp_path: Path, strategy: str, rounds: int, parameters: str) -> str:
    path = tmp_path / "campaign.yaml"
    path.write_text(
        f"name: sim-{strategy}\nnetworks: [ethernet]\nrounds: {rounds}\n"
        "run_deadline_s: 300\nruntime: simulation\n"
        f"strategy: {{name: {strategy}, parameters: {{{parameters}}}}}\n"
        "workload: {samples-per-node: 16, batch-size: 8, model-width: 0.1,"
        " fraction-evaluate: 0.0}\n"
    )
    ((_, outcome),) = run_simulated_campaign(
        load_campaign(path), tmp_path / "out", 2, print
    )
    assert outcome.status == "ok", outcome.reason
    return outcome.log_path.read_text()


def test_a_realfm_campaign_runs_in_flowers_simulation_runtime(tmp_path: Path) -> None:
    # Simulated nodes declare no cost: the campaign's costs apply, cyclically.
    log = _run(tmp_path, "realfm", 2, "costs: '0.009,0.015'")
    assert "Starting RealFM strategy" in log
    assert log.count("RealFM: node") == 2
    assert "cost 0.009" in log and "cost 0.015" in log
    assert log.count("aggregate_train: Received 2 results and 0 failures") == 2


def test_a_fedbuff_inversion_campaign_runs_in_flowers_simulation_runtime(
    tmp_path: Path,
) -> None:
    log = _run(
        tmp_path,
        "fedbuff-inversion",
        3,
        "concurrency: 2, buffer_size: 1, poll_interval_s: 0.1, min_staleness: 1,"
        " num_samples: 4, iterations: 2, steps: 1",
    )
    assert "Strategy execution finished (fedbuff, version 3)" in log
