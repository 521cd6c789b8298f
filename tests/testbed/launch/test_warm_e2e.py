"""The warm launcher under a real SuperLink, SuperNode and ``flwr run`` on localhost.

tests/apps/plain_app (a third-party app that imports torch at the top), measured
by flowerbed's injection, runs 2 rounds of train + evaluate on one SuperNode:
stock, warm (zygote + shim), and warm with a Flower version the guard rejects.
Start-up before the handler is the handler's start minus the instant the launched
process started (the shim's in warm mode, read from the zygote's ``fork`` line).
Run serialised: ``flock /tmp/e2e.lock ... pytest -s`` on this file.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from instrumentation.events import read_events
from testbed.campaign.app_bundle import prepare_bundle
from testbed.commands.flower import flower_env, superlink_argv, supernode_argv
from testbed.launch.wiring import (
    shim_env,
    write_shim,
    zygote_argv,
    zygote_events,
    zygote_report,
)
from testbed.transport.processes import ManagedProcess, stop_all, wait_for_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[3]
PLAIN_APP = REPO / "tests" / "apps" / "plain_app"
BIN = Path(sys.executable).parent
# torch._dynamo: torch's optimizers import it on construction (about 1 s).
PRELOAD = ("torch", "torch._dynamo", "instrumentation.inject_client")
MESSAGES = 4  # 2 rounds x (train, evaluate) x 1 node


@dataclass(frozen=True)
class Outcome:
    """What one run left behind."""

    events: list[dict[str, Any]]
    zygote_log: str
    supernode_log: str

    def handler_phases(self) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["event"] == "phase" and e["phase"] in ("training", "evaluation")
        ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_zygote(zygote: ManagedProcess) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = zygote.log_path.read_text() if zygote.log_path.exists() else ""
        if any(e["event"] in ("ready", "refused") for e in zygote_events(text)):
            return
        time.sleep(0.1)
    raise AssertionError(f"zygote silent for 60 s:\n{zygote.log_tail()}")


def _node_env(tmp_path: Path, mode: str, procs: list[ManagedProcess]) -> dict[str, str]:
    """The SuperNode's environment; in warm modes, its zygote started first."""
    home = tmp_path / "flwr-node"
    home.mkdir()
    env = flower_env(home)
    # The same short executor poll in every mode: shorter tests, same start-ups.
    env["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] = "0.05"
    if mode == "stock":
        return env
    sock = str(tmp_path / "zygote" / "zygote.sock")
    supported = ("1.42",) if mode == "warm" else ("0.1",)
    zygote = ManagedProcess(
        "zygote",
        zygote_argv(sys.executable, sock, PRELOAD, supported_flwr=supported),
        tmp_path / "zygote.log",
        env=env,
        cwd=tmp_path,
    )
    procs.append(zygote)
    _wait_zygote(zygote)
    shim_dir = tmp_path / "shim"
    write_shim(shim_dir, sys.executable)
    return shim_env(env, str(shim_dir), sock)


def _run(tmp_path: Path, mode: str) -> Outcome:
    """2 rounds of the plain app on one SuperNode, launched ``mode``-wise."""
    bundle = prepare_bundle(PLAIN_APP, tmp_path / "plain-app")
    log = tmp_path / "events.jsonl"
    port = _free_port()
    procs: list[ManagedProcess] = []
    cli_home = tmp_path / "flwr-cli"
    cli_home.mkdir()
    try:
        superlink = ManagedProcess(
            "superlink",
            superlink_argv(BIN, "127.0.0.1", port),
            tmp_path / "superlink.log",
            env=flower_env(tmp_path / "flwr-superlink"),
            cwd=tmp_path,
        )
        procs.append(superlink)
        wait_for_port("127.0.0.1", port, 30, superlink)
        node_env = _node_env(tmp_path, mode, procs)
        node_config = {"partition-id": 0, "num-partitions": 1, "flowerbed-node": "pi0"}
        supernode = ManagedProcess(
            "supernode",
            supernode_argv(BIN, f"127.0.0.1:{port}", node_config, _free_port()),
            tmp_path / "supernode.log",
            env=node_env,
            cwd=tmp_path,
        )
        procs.append(supernode)
        (cli_home / "config.toml").write_text(
            f'[superlink.e2e]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
        )
        run_config = tmp_path / "run_config.toml"
        run_config.write_text(
            f'flowerbed-event-log = "{log}"\nflowerbed-run-id = "{mode}"\n'
            "num-server-rounds = 2\nmin-nodes = 1\n"
        )
        result = subprocess.run(
            [str(BIN / "flwr"), "run", str(bundle.path), "e2e"]
            + ["--run-config", str(run_config), "--format", "json"],
            env={**os.environ, **flower_env(cli_home)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        events = _wait_app_end(log, procs, superlink)
    finally:
        stop_all(procs)
    zygote_log = tmp_path / "zygote.log"
    return Outcome(
        events,
        zygote_log.read_text() if zygote_log.exists() else "",
        (tmp_path / "supernode.log").read_text(),
    )


def _wait_app_end(
    log: Path, procs: list[ManagedProcess], superlink: ManagedProcess
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 180
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.name != "zygote":  # a refusing zygote exits on purpose
                proc.check_alive()
        events = read_events(log) if log.exists() else []
        if any(e["event"] == "app_end" for e in events):
            return events
        time.sleep(0.5)
    pytest.fail(f"no app_end in 180 s; superlink log:\n{superlink.log_tail(40)}")


def _completed(outcome: Outcome) -> None:
    end = outcome.events[-1]
    assert end["event"] == "app_end" and end["status"] == "ok", end
    phases = outcome.handler_phases()
    assert sorted((p["round"], p["message_type"]) for p in phases) == [
        (1, "evaluate"), (1, "train"), (2, "evaluate"), (2, "train"),
    ]  # fmt: skip


def _startups_s(outcome: Outcome, launch_ns: dict[int, int]) -> list[float]:
    """Per message: handler start minus the launched process's start."""
    return [
        (p["start_ns"] - launch_ns.get(p["pid"], p["process_start_ns"])) / 1e9
        for p in outcome.handler_phases()
    ]


def test_warm_launch_forks_each_message_from_the_zygote_and_starts_faster(
    tmp_path: Path,
) -> None:
    stock = _run(tmp_path / "stock", "stock")
    warm = _run(tmp_path / "warm", "warm")

    _completed(stock)
    _completed(warm)
    zygote = zygote_events(warm.zygote_log)
    forks = {int(e["pid"]): int(e["launch_ns"]) for e in zygote if e["event"] == "fork"}
    assert len(forks) == MESSAGES
    assert {p["pid"] for p in warm.handler_phases()} == set(forks)
    exits = [e for e in zygote if e["event"] == "exit"]
    assert sorted(int(e["pid"]) for e in exits) == sorted(forks)
    assert all(e["code"] == 0 for e in exits)
    report = zygote_report(warm.zygote_log)
    assert report.active and report.forks == MESSAGES and report.refused == 0
    assert "flowerbed-warm:" not in warm.supernode_log
    stock_s = _startups_s(stock, {})
    warm_s = _startups_s(warm, forks)
    print(
        "\nstart-up before the handler, per message (s):"
        f"\n  stock {[round(s, 3) for s in stock_s]}"
        f" median {statistics.median(stock_s):.3f}"
        f"\n  warm  {[round(s, 3) for s in warm_s]}"
        f" median {statistics.median(warm_s):.3f}"
    )
    for name, outcome in (("stock", stock), ("warm", warm)):
        train_s = [
            (p["end_ns"] - p["start_ns"]) / 1e9
            for p in outcome.handler_phases()
            if p["message_type"] == "train"
        ]
        print(f"  {name} train() handler (s): {[round(s, 3) for s in train_s]}")
    assert all(s >= 0 for s in stock_s + warm_s)
    # Stock imports Flower and torch per message (> 1 s here); a fork does not.
    assert statistics.median(warm_s) < 0.5 * statistics.median(stock_s)


def test_an_untested_flower_version_runs_stock_through_the_shim_and_completes(
    tmp_path: Path,
) -> None:
    outcome = _run(tmp_path, "guarded")

    _completed(outcome)
    report = zygote_report(outcome.zygote_log)
    assert not report.active
    assert "not in the tested series 0.1" in report.reason
    fallbacks = [
        line
        for line in outcome.supernode_log.splitlines()
        if "flowerbed-warm:" in line and "running the stock flwr-clientapp" in line
    ]
    assert len(fallbacks) == MESSAGES
    assert all(p["process_start_ns"] > 0 for p in outcome.handler_phases())
