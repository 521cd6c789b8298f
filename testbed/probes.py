"""Measurement beside Flower in each run: clock probes and system samplers.

Clocks: a UDP responder on the server's address on the network under test (and on
the management network when the inventory has one); before and after the run each
node runs an NTP-style probe over each path, and the estimates become ``clock``
events. System metrics: one sampler on the server and one inside every node's
namespace, each writing JSON lines into the run folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instrumentation.clock import probe_argv, serve_argv
from inventory.models import Host, Inventory, Network
from testbed.emulated import bridge_name, node_namespace
from testbed.processes import ManagedProcess, ProcessError

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
        procs.append(
            ManagedProcess(f"clock responder on {path.server_address}", argv, log)
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


def probe_node(
    inventory: Inventory, host: Host, path: ClockPath, injected_offset_ns: int
) -> dict[str, Any]:
    """Run one probe inside ``host``'s namespace; return a ``clock`` event's fields."""
    argv = ["ip", "netns", "exec", node_namespace(inventory, host.name)]
    argv += probe_argv(
        path.server_address,
        CLOCK_PORT,
        samples=PROBE_SAMPLES,
        inject_offset_ns=injected_offset_ns,
        python=PYTHON,
    )
    fields: dict[str, Any] = {
        "node": host.name,
        "path": path.name,
        "injected_offset_ns": injected_offset_ns,
    }
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        return {**fields, "error": "clock probe timed out after 30 s"}
    if result.returncode != 0:
        return {**fields, "error": result.stderr.strip()[-500:]}
    estimate = json.loads(result.stdout)
    return {
        **fields,
        "offset_ns": int(estimate["offset_ns"]),
        "uncertainty_ns": int(estimate["uncertainty_ns"]),
        "rtt_ns": int(estimate["rtt_ns"]),
        "samples_used": int(estimate["samples_used"]),
    }


def probe_all(
    inventory: Inventory, paths: Sequence[ClockPath], offsets_ns: dict[str, int]
) -> list[dict[str, Any]]:
    """Probe every (node, path) in parallel; one result per pair, errors included."""
    jobs = [(host, path) for host in inventory.clients for path in paths]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(jobs)))) as pool:
        futures = [
            pool.submit(probe_node, inventory, h, p, offsets_ns.get(h.name, 0))
            for h, p in jobs
        ]
        return [f.result() for f in futures]


def start_samplers(
    inventory: Inventory, network: Network, run_dir: Path, interval_s: float
) -> list[ManagedProcess]:
    """One system sampler on the server and one inside every node's namespace."""
    out = run_dir / "system"
    out.mkdir(parents=True, exist_ok=True)
    base = [PYTHON, "-m", "instrumentation.system", "--interval", str(interval_s)]
    procs = [
        ManagedProcess(
            "system sampler on the server",
            [
                *base,
                "--out",
                str(out / "server.jsonl"),
                "--host",
                inventory.server.name,
                "--interfaces",
                bridge_name(inventory, network.name),
            ],
            out / "server.log",
        )
    ]
    for host in inventory.clients:
        nics = [
            iface.ifname for iface in host.interfaces if iface.network == network.name
        ]
        if inventory.management is not None:
            nics.append("mgmt0")
        argv = ["ip", "netns", "exec", node_namespace(inventory, host.name), *base]
        argv += ["--out", str(out / f"{host.name}.jsonl"), "--host", host.name]
        argv += ["--interfaces", ",".join(nics), "--shared-host"]
        procs.append(
            ManagedProcess(
                f"system sampler on {host.name}", argv, out / f"{host.name}.log"
            )
        )
    return procs
