"""Measurement beside Flower in each run: clock probes and system samplers.

Clocks: a UDP responder on the server's address on the network under test (and on
the management network when the inventory has one); before and after the run each
node runs an NTP-style probe over each path, and the estimates become ``clock``
events. System metrics: the server's sampler (each node's starts through its
site, ``testbed/campaign/sites.py``), writing JSON lines into the run folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from instrumentation.clock import serve_argv
from inventory.models import Inventory, Network
from testbed.emulation.naming import bridge_name
from testbed.transport.processes import ManagedProcess, ProcessError

PYTHON = sys.executable
CLOCK_PORT = 9099
PROBE_SAMPLES = 8


@dataclass(frozen=True)
class ClockPath:
    """A way to reach the server's clock responder: a network and its address."""

    name: str  # the network under test's name, or "management"
    server_address: str


def clock_paths(inventory: Inventory, network: Network) -> list[ClockPath]:
    """The network under test, then the management network if there is one."""
    paths = [ClockPath(network.name, str(network.server_address))]
    if inventory.management is not None:
        paths.append(ClockPath("management", str(inventory.management.server_address)))
    return paths


def start_clock_responders(
    paths: Sequence[ClockPath], run_dir: Path, deadline_s: float = 10.0
) -> list[ManagedProcess]:
    """Start one responder per path and wait until each says it is listening."""
    procs = []
    for path in paths:
        argv = serve_argv(path.server_address, CLOCK_PORT, python=PYTHON)
        log = run_dir / "clock" / f"responder-{path.name}.log"
        procs.append(  # cwd: a leftover after a crash is found by its folder
            ManagedProcess(
                f"clock responder on {path.server_address}", argv, log, cwd=run_dir
            )
        )
    deadline = time.monotonic() + deadline_s
    for proc in procs:
        while '"listening": true' not in proc.log_tail(5):
            proc.check_alive()
            if time.monotonic() > deadline:
                raise ProcessError(
                    f"{proc.name} did not start within {deadline_s:.0f} s"
                )
            time.sleep(0.05)
    return procs


def start_server_sampler(
    inventory: Inventory, network: Network, run_dir: Path, interval_s: float
) -> ManagedProcess:
    """The system sampler on the server (nodes get theirs through their sites)."""
    out = run_dir / "system"
    out.mkdir(parents=True, exist_ok=True)
    argv = [PYTHON, "-m", "instrumentation.system", "--interval", str(interval_s)]
    argv += ["--out", str(out / "server.jsonl"), "--host", inventory.server.name]
    argv += ["--interfaces", server_nic(inventory, network)]
    return ManagedProcess("system sampler on the server", argv, out / "server.log")


def server_nic(inventory: Inventory, network: Network) -> str:
    """The server's interface on ``network``: the emulated bridge when it exists,
    else the interface holding the server's address."""
    bridge = bridge_name(inventory, network.name)
    if Path("/sys/class/net", bridge).exists():
        return bridge
    return server_interface(str(network.server_address))


def server_interface(address: str) -> str:
    """The local interface holding ``address``; ValueError says what to fix."""
    result = subprocess.run(
        ["ip", "-j", "-4", "addr", "show"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    for link in json.loads(result.stdout or "[]"):
        for info in link.get("addr_info", []):
            if info.get("local") == address:
                return str(link["ifname"])
    raise ValueError(
        f"no interface of this server holds {address}; the inventory names it as "
        "the server's address on a network under test: add it to an interface "
        "(ip addr add) or fix server_address"
    )
