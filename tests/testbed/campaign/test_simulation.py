"""Flower's real simulation runtime (Ray) running the digits app via the registry."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from strategies.client_side import ModelShape
from strategies.registry import client_side
from testbed.campaign.model import DEFAULT_APP, load_campaign
from testbed.campaign.simulation import (
    SimulationOutcome,
    SimulationSpec,
    campaign_run_config,
    rounds_in_log,
    run_simulated_campaign,
    run_simulation,
)


def test_rounds_are_read_from_the_stream() -> None:
    log = "INFO [ROUND 1/3]\n...\nINFO [ROUND 2/3]\n"
    assert rounds_in_log(log) == (2, 3, False)
    assert rounds_in_log(log + "Strategy execution finished in 2s") == (2, 3, True)
    assert rounds_in_log("") == (0, 0, False)


def test_spec_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pyproject.toml"):
        SimulationSpec(app=tmp_path, num_supernodes=2)
    with pytest.raises(ValueError, match="num_supernodes"):
        SimulationSpec(app=DEFAULT_APP, num_supernodes=0)


needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Flower's simulation runtime needs flwr[simulation] (Ray)",
)


def _assert_two_clean_rounds(outcome: SimulationOutcome, server_strategy: str) -> None:
    assert outcome.status == "ok", outcome.reason
    assert (outcome.rounds_completed, outcome.rounds_planned) == (2, 2)
    log = outcome.log_path.read_text()
    assert f"Starting {server_strategy} strategy" in log
    assert log.count("aggregate_train: Received 2 results and 0 failures") == 2
    assert log.count("aggregate_evaluate: Received 2 results and 0 failures") == 2
    ps = subprocess.run(
        ["ps", "-eo", "args"], capture_output=True, text=True, check=True
    ).stdout
    assert f"--port {outcome.superlink_port}" not in ps  # nothing outlives the run


@needs_ray
def test_fedbn_on_digits5_runs_two_rounds_in_flowers_simulation_runtime(
    tmp_path: Path,
) -> None:
    spec = SimulationSpec(
        app=DEFAULT_APP,
        num_supernodes=2,
        run_config={
            "strategy": "fedbn",
            "num-server-rounds": 2,
            "dataset": "digits5",
            "samples-per-node": 16,
            "batch-size": 4,
            "model-width": 0.1,
            "min-nodes": 2,
            "strategy-parameters": '{"fraction_evaluate": 1.0}',
        },
        deadline_s=240.0,
    )
    outcome = run_simulation(spec, tmp_path)
    _assert_two_clean_rounds(outcome, "FedBN")
    log = outcome.log_path.read_text()  # BatchNorm kept in context.state
    assert "'local-state-restored': 0.0" in log  # round 1 train: nothing kept yet
    assert "'local-state-restored': 1.0" in log


def _domain_files_campaign(folder: Path, data_dir: Path) -> Path:
    path = folder / f"campaign-{data_dir.name}.yaml"
    path.write_text(
        "name: sim-files\nnetworks: [ethernet]\nrounds: 2\nrun_deadline_s: 240\n"
        "strategy: fedbn\n"
        "workload: {samples-per-node: 10, batch-size: 4, model-width: 0.1,\n"
        f"           dataset: domain-files, data-dir: '{data_dir}'}}\n"
    )
    return path


@needs_ray
def test_a_campaign_trains_on_domain_files_in_flowers_simulation_runtime(
    tmp_path: Path,
) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for name, shape in (("mnist", (20, 28, 28)), ("svhn", (20, 32, 32, 3))):
        (data / name).mkdir(parents=True)
        for split in ("train", "test"):
            np.savez(
                data / name / f"{split}.npz",
                x=rng.integers(0, 256, shape, dtype=np.uint8),
                y=np.arange(20) % 10,
            )
    campaign = load_campaign(_domain_files_campaign(tmp_path, data))
    ((_, outcome),) = run_simulated_campaign(
        campaign, tmp_path / "out", 2, lambda line: None
    )
    _assert_two_clean_rounds(outcome, "FedBN")
    # The same campaign on an empty folder fails, and says why: the app reads
    # the folder the campaign names.
    (tmp_path / "empty").mkdir()
    campaign = load_campaign(_domain_files_campaign(tmp_path, tmp_path / "empty"))
    ((_, failed),) = run_simulated_campaign(
        campaign, tmp_path / "out-empty", 2, lambda line: None
    )
    assert failed.status != "ok"
    assert "no subfolder holds a train.npz" in failed.log_path.read_text()


@needs_ray
def test_a_fedwon_campaign_runs_in_flowers_simulation_runtime(tmp_path: Path) -> None:
    path = tmp_path / "campaign.yaml"
    path.write_text(
        "name: sim-fedwon\nnetworks: [ethernet]\nrounds: 2\nrun_deadline_s: 240\n"
        "strategy: {name: fedwon, parameters: {clip_lambda: 0.02}}\n"
        "workload: {samples-per-node: 16, batch-size: 1, model-width: 0.1,\n"
        "           dataset: digits5, model: cnn}\n"
    )
    progress: list[str] = []
    ((run_id, outcome),) = run_simulated_campaign(
        load_campaign(path), tmp_path / "out", 2, progress.append
    )
    assert run_id == "simulation-r1"
    assert outcome.log_path.parent == tmp_path / "out" / "runs" / "simulation-r1"
    assert any("ok" in line for line in progress)
    _assert_two_clean_rounds(outcome, "FedAvg")
    # The campaign's network reached the app: the digit CNN at width 0.1 on
    # 3-channel images is 185,141 float32 values (the SqueezeNet, about 0.03 MB).
    cnn = client_side("fedwon").build_model(ModelShape(3, 10, 0.1, "cnn"))
    megabytes = sum(v.numel() * 4 for v in cnn.state_dict().values()) / 1024**2
    assert f"ArrayRecord ({megabytes:.2f} MB)" in outcome.log_path.read_text()


def test_a_campaign_gives_its_app_the_same_run_config_as_in_deployment(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "name: sim\nnetworks: [ethernet]\nrounds: 7\n"
        "strategy: {name: fedwon, parameters: {clip_lambda: 0.02}}\n"
        "workload: {batch-size: 1, model-width: 0.25, model: cnn}\n"
    )
    values = campaign_run_config(load_campaign(path), num_supernodes=5)
    assert values["model"] == "cnn"
    assert values["num-server-rounds"] == 7
    assert values["strategy"] == "fedwon"
    assert json.loads(str(values["strategy-parameters"])) == {"clip_lambda": 0.02}
    assert values["min-nodes"] == 5
    assert values["batch-size"] == 1 and values["model-width"] == 0.25
