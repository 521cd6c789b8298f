"""Tests of analysis/convergence.py: metrics events to curves and time to target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analysis.convergence import (
    chance_accuracy,
    default_target,
    learning_table,
    metric_records,
    read_metrics,
    time_to_target,
)

S = 1_000_000_000
T0 = 1_800_000_000_000_000_000


def _events(
    run_id: str, network: str, accuracies: list[float], round_s: float
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        {
            "event": "run_start",
            "run_id": run_id,
            "t_ns": T0 - 5 * S,
            "network": network,
            "strategy": "fedavg",
            "repetition": 1,
        }
    ]
    for rnd, accuracy in enumerate(accuracies):
        t_ns = T0 - S if rnd == 0 else T0 + int(rnd * round_s * S)
        events.append(
            {
                "event": "metrics",
                "run_id": run_id,
                "t_ns": t_ns,
                "round": rnd,
                "scope": "server",
                "values": {"accuracy": accuracy, "loss": 1 - accuracy},
            }
        )
        if rnd:
            events.append(
                {
                    "event": "metrics",
                    "run_id": run_id,
                    "t_ns": t_ns,
                    "round": rnd,
                    "scope": "evaluate",
                    "values": {"eval-accuracy": 0.0, "eval-loss": 9.0},
                }
            )
    return events


def _write(
    results: Path, run_id: str, events: list[dict[str, Any]], tail: str = ""
) -> None:
    run_dir = results / "runs" / run_id
    run_dir.mkdir(parents=True)
    text = "\n".join(json.dumps(e) for e in events) + "\n" + tail
    (run_dir / "events.jsonl").write_text(text, encoding="utf-8")


@pytest.fixture
def results(tmp_path: Path) -> Path:
    _write(
        tmp_path,
        "ethernet-r1",
        _events("ethernet-r1", "ethernet", [0.1, 0.5, 0.8, 0.9], 10.0),
    )
    # a cut last line (the run was killed) is skipped
    _write(
        tmp_path,
        "5g-r1",
        _events("5g-r1", "5g", [0.1, 0.5, 0.8, 0.9], 25.0),
        tail='{"event": "metr',
    )
    return tmp_path


def _phases(origins: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame({"run_id": list(origins), "start_ns": list(origins.values())})


def test_metrics_use_the_server_scope_and_the_first_dispatch_as_origin(
    results: Path,
) -> None:
    metrics = read_metrics(results, {}, _phases({"ethernet-r1": T0, "5g-r1": T0}))

    assert set(metrics["scope"]) == {"server"}
    eth = metrics[metrics["run_id"] == "ethernet-r1"].sort_values("round")
    assert eth["accuracy"].tolist() == [0.1, 0.5, 0.8, 0.9]
    assert eth["elapsed_s"].tolist() == pytest.approx([0.0, 10.0, 20.0, 30.0])
    assert set(metrics["network"]) == {"ethernet", "5g"}


def test_time_to_target_per_network(results: Path) -> None:
    metrics = read_metrics(results, {}, _phases({"ethernet-r1": T0, "5g-r1": T0}))

    targets = time_to_target(metrics, 0.75).set_index("network")

    assert targets.loc["ethernet", "median_time_to_target_s"] == pytest.approx(20.0)
    assert targets.loc["5g", "median_time_to_target_s"] == pytest.approx(50.0)
    assert targets.loc["5g", "median_rounds_to_target"] == 2
    assert targets.loc["5g", "median_final_accuracy"] == pytest.approx(0.9)
    assert list(targets.index) == ["ethernet", "5g"]


def test_unreached_target_is_nan_not_zero(results: Path) -> None:
    metrics = read_metrics(results, {}, None)

    targets = time_to_target(metrics, 0.95)

    assert (targets["runs_reaching"] == 0).all()
    assert targets["median_time_to_target_s"].isna().all()


def test_without_phases_the_run_start_is_the_origin(results: Path) -> None:
    metrics = read_metrics(results, {}, None)

    eth = metrics[(metrics["run_id"] == "ethernet-r1") & (metrics["round"] == 1)]
    assert eth["elapsed_s"].iloc[0] == pytest.approx(15.0)


def test_default_target_ignores_the_initial_model() -> None:
    metrics = pd.DataFrame({"round": [0, 1, 2], "accuracy": [0.99, 0.4, 0.6]})

    assert default_target(metrics) == pytest.approx(0.54)


def test_evaluate_scope_is_used_when_there_is_no_server_scope() -> None:
    lines = [
        json.dumps(
            {
                "event": "metrics",
                "t_ns": T0,
                "round": 1,
                "scope": "evaluate",
                "values": {"eval-accuracy": 0.7, "eval-loss": 0.4},
            }
        ),
        json.dumps({"event": "phase", "t_ns": T0}),
        "not json",
    ]

    records = metric_records(lines, "wifi-r1")

    assert len(records) == 1 and records[0]["run_id"] == "wifi-r1"


def _curve(run_id: str, network: str, accuracies: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": run_id,
            "network": network,
            "strategy": "fedavg",
            "round": range(len(accuracies)),
            "accuracy": accuracies,
        }
    )


def test_default_target_lies_above_the_first_round() -> None:
    # 90% of the best (0.558) would be reached at round 1 already
    metrics = _curve("r1", "wifi", [0.1, 0.6, 0.62])

    target = default_target(metrics)

    assert target == pytest.approx(0.61)
    assert target is not None and target > 0.6


def test_a_run_that_did_not_learn_gets_no_target() -> None:
    # make demo before the fix: chance accuracy throughout
    metrics = pd.concat(
        [
            _curve("ethernet-r1", "ethernet", [0.098, 0.1, 0.1]),
            _curve("5g-r1", "5g", [0.101, 0.1, 0.1]),
        ]
    )

    assert default_target(metrics) is None
    learning = learning_table(metrics).set_index("network")
    assert learning["runs_learned"].tolist() == [0, 0]
    assert learning.loc["5g", "median_final_accuracy"] == pytest.approx(0.1)


def test_a_target_is_never_at_or_below_chance() -> None:
    # four classes: chance is 0.25, and a best of 0.255 is not learning
    metrics = _curve("r1", "wifi", [0.2, 0.22, 0.255])

    assert default_target(metrics, chance=0.25) is None
    assert learning_table(metrics, chance=0.25)["runs_learned"].tolist() == [0]
    assert learning_table(metrics, chance=0.1)["runs_learned"].tolist() == [1]


def test_learning_counts_runs_above_their_initial_model() -> None:
    metrics = pd.concat(
        [
            _curve("wifi-r1", "wifi", [0.1, 0.5, 0.8]),
            _curve("wifi-r2", "wifi", [0.3, 0.31, 0.32]),
        ]
    )

    learning = learning_table(metrics)

    assert learning["runs"].tolist() == [2]
    assert learning["runs_learned"].tolist() == [1]


def test_chance_comes_from_the_workload_classes() -> None:
    manifest = {"campaign": {"workload": {"num-classes": 4}}}

    assert chance_accuracy(manifest) == pytest.approx(0.25)
    assert chance_accuracy({}) == pytest.approx(0.1)
