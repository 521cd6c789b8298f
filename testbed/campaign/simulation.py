"""Flower's simulation runtime for a campaign: a private SuperLink, `flwr run` on it.

The same app that runs on real SuperNodes runs here unchanged, with Ray
simulating ``num_supernodes`` SuperNodes (needs ``flwr[simulation]``). We
never use ``flwr run APP local`` as is: its managed SuperLink is detached,
listens on fixed ports shared by every user of the machine and outlives the
run. Instead :func:`run_simulation` starts its own
``flower-superlink --simulation`` on free localhost ports with a private
``FLWR_HOME``, runs ``flwr run APP flowerbed --federation-config
"num-supernodes=N client-resources-num-cpus=C" --stream`` against it (the
stream ends with the run), counts the rounds in the streamed log, and stops
the SuperLink's whole process group on success, failure and timeout alike.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from testbed.campaign.model import Campaign
from testbed.commands import flower
from testbed.transport.processes import (
    ManagedProcess,
    ProcessError,
    stop_all,
    wait_for_port,
)

_ROUND = re.compile(r"\[ROUND (\d+)/(\d+)\]")
_FINISHED = "Strategy execution finished"
_POLL_S = 0.2


@dataclass(frozen=True)
class SimulationSpec:
    """One simulated run: the app, how many SuperNodes, their CPUs, run config."""

    app: Path
    num_supernodes: int
    run_config: Mapping[str, flower.ConfigValue] = field(default_factory=dict)
    client_cpus: int = 1  # Flower takes whole CPUs here
    deadline_s: float = 600.0

    def __post_init__(self) -> None:
        if self.num_supernodes < 1:
            raise ValueError(
                f"num_supernodes must be >= 1, got {self.num_supernodes!r}"
            )
        if not self.client_cpus > 0 or not self.deadline_s > 0:
            raise ValueError("client_cpus and deadline_s must be > 0")
        if not (self.app / "pyproject.toml").is_file():
            raise ValueError(
                f"{self.app} has no pyproject.toml: point at a Flower app directory"
            )


@dataclass(frozen=True)
class SimulationOutcome:
    """How a simulated run ended: ``ok``, ``failed`` or ``timeout``, and why."""

    status: str
    rounds_completed: int
    rounds_planned: int
    duration_s: float
    log_path: Path
    reason: str = ""
    superlink_port: int = 0


LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def rounds_in_log(text: str) -> tuple[int, int, bool]:
    """(last round started, rounds planned, strategy finished) from a streamed log."""
    rounds = [(int(a), int(b)) for a, b in _ROUND.findall(text)]
    last, planned = rounds[-1] if rounds else (0, 0)
    return last, planned, _FINISHED in text


def _outcome(
    run: ManagedProcess, timed_out: bool, started: float, port: int
) -> SimulationOutcome:
    text = run.log_path.read_text(errors="replace")
    last, planned, finished = rounds_in_log(text)
    completed = last if finished else max(0, last - 1)
    duration_s = time.monotonic() - started
    if timed_out:
        return SimulationOutcome(
            "timeout",
            completed,
            planned,
            duration_s,
            run.log_path,
            f"still running at the deadline; see {run.log_path}",
            port,
        )
    if run.poll() != 0 or not finished:
        return SimulationOutcome(
            "failed",
            completed,
            planned,
            duration_s,
            run.log_path,
            f"`flwr run` exited with {run.poll()} after round {last};"
            f" last lines:\n{run.log_tail()}",
            port,
        )
    return SimulationOutcome(
        "ok", completed, planned, duration_s, run.log_path, superlink_port=port
    )


def run_simulation(
    spec: SimulationSpec, out_dir: Path, bin_dir: Path | None = None
) -> SimulationOutcome:
    """Run ``spec`` in Flower's simulation runtime; logs go under ``out_dir``.

    Never raises for a failed or overdue run: that is the outcome's status.
    """
    bin_dir = bin_dir or Path(sys.executable).parent
    home = (out_dir / "flwr").resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = flower.flower_env(home, bin_dir=bin_dir)
    port, control_port, health_port = free_port(), free_port(), free_port()
    (home / "config.toml").write_text(flower.connection_toml(f"{LOCALHOST}:{port}"))
    run_config = out_dir / "run_config.toml"
    run_config.write_text(flower.run_config_toml(dict(spec.run_config)))
    started = time.monotonic()
    superlink = ManagedProcess(
        "simulation-superlink",
        flower.superlink_argv(
            bin_dir,
            LOCALHOST,
            port,
            simulation=True,
            control_api_address=f"{LOCALHOST}:{control_port}",
            health_server_address=f"{LOCALHOST}:{health_port}",
        ),
        out_dir / "superlink.log",
        env=env,
        cwd=home,
    )
    run: ManagedProcess | None = None
    try:
        try:
            wait_for_port(LOCALHOST, port, 30.0, superlink)
        except ProcessError as err:
            return SimulationOutcome(
                "failed",
                0,
                0,
                time.monotonic() - started,
                superlink.log_path,
                str(err),
                port,
            )
        run = ManagedProcess(
            "flwr-run",
            flower.flwr_run_argv(
                bin_dir,
                spec.app.resolve(),
                run_config.resolve(),
                flower.federation_config(spec.num_supernodes, spec.client_cpus),
                stream=True,
            ),
            out_dir / "run.log",
            env=env,
            cwd=home,
        )
        deadline = started + spec.deadline_s
        while run.poll() is None and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        timed_out = run.poll() is None
        stop_all([run], grace_s=2.0)
        return _outcome(run, timed_out, started, port)
    finally:
        stop_all([p for p in (run, superlink) if p is not None], grace_s=5.0)


def campaign_run_config(
    campaign: Campaign, num_supernodes: int
) -> dict[str, flower.ConfigValue]:
    """The run config a campaign gives its app in simulation (as in deployment).

    The generic keys the deployment runner sends (rounds, strategy, its
    parameters as JSON, minimum nodes, round timeout), then the workload.
    """
    values: dict[str, flower.ConfigValue] = {
        "num-server-rounds": campaign.rounds,
        "strategy": campaign.strategy.name,
        "strategy-parameters": json.dumps(dict(campaign.strategy.parameters)),
        "min-nodes": num_supernodes,
        "round-timeout-s": float(campaign.round_timeout_s),
    }
    values.update(campaign.workload_dict)
    return values


def run_simulated_campaign(
    campaign: Campaign,
    out: Path,
    num_supernodes: int,
    progress: Callable[[str], None] = print,
) -> list[tuple[str, SimulationOutcome]]:
    """Every repetition of ``campaign`` in the simulation runtime, as (run id, outcome).

    Runs land in ``out/runs/simulation-r<k>/``; networks do not apply.
    """
    outcomes = []
    for repetition in range(1, campaign.repetitions + 1):
        run_id = f"simulation-r{repetition}"
        spec = SimulationSpec(
            app=campaign.app,
            num_supernodes=num_supernodes,
            run_config=campaign_run_config(campaign, num_supernodes),
            deadline_s=campaign.run_deadline_s,
        )
        progress(f"{run_id}: {num_supernodes} simulated SuperNodes")
        outcome = run_simulation(spec, out / "runs" / run_id)
        progress(f"{run_id}: {outcome.status} after {outcome.duration_s:.0f} s")
        outcomes.append((run_id, outcome))
    return outcomes
