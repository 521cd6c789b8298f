"""What a run measures beside Flower: packet captures on both ends of every node's
link, each node's system sampler, and clock probes at the run's start and end."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instrumentation.capture import Capture
from instrumentation.clock import ChronyError, chrony_tracking
from instrumentation.events import EventLog
from instrumentation.schema import EventKind
from inventory.models import Host
from testbed.campaign.probes import (
    CLOCK_PORT,
    PROBE_SAMPLES,
    ClockPath,
    server_interface,
)
from testbed.campaign.run import Run, RunFailed
from testbed.campaign.sites import NodeCapture, probe_clock, start_sampler
from testbed.emulation.naming import host_side_veth
from testbed.transport.executor import Background


@dataclass(frozen=True)
class RunCapture:
    """One packet capture of a run: whose link, which end of it, where it writes.

    ``side`` is ``server`` (the host-side veth: ``transfer`` events, server clock)
    or ``node`` (the node's interface under test, captured inside its namespace:
    ``node_transfer`` events, node clock).
    """

    host: Host
    side: str
    pcap: Path
    capture: Capture | NodeCapture

    def __post_init__(self) -> None:
        if self.side not in ("server", "node"):
            raise ValueError(f"side must be 'server' or 'node', got {self.side!r}")


def server_capture(run: Run, host: Host) -> Capture:
    """The server's end of ``host``'s link: its host-side veth on the emulated
    cluster, else the server's interface on the network, filtered to the node."""
    pcap = run.dir / "captures" / f"{host.name}.pcap"
    iface = host.interface(run.network.name)
    if run.topology.emulated:
        veth = host_side_veth(run.inventory, host.name, run.network.name)
        return Capture(veth, pcap, run.port)
    assert iface is not None  # start_captures checked
    return Capture(
        server_interface(str(run.network.server_address)),
        pcap,
        run.port,
        peer=str(iface.address),
    )


def start_captures(run: Run, stack: ExitStack) -> list[RunCapture]:
    """Per node: a capture on the server side of its link and one on its own
    interface under test, inside its namespace (as tcpdump would run on a Pi).
    """
    captures = []
    folder = run.dir / "captures"
    folder.mkdir(parents=True, exist_ok=True)
    for host in run.inventory.clients:
        iface = host.interface(run.network.name)
        if iface is None:
            raise RunFailed(
                f"host {host.name} has no interface on network "
                f"{run.network.name} in {run.inventory.path}; add one or "
                "leave the network out of the campaign"
            )
        server = server_capture(run, host)
        server.start()
        stack.callback(server.stop)
        captures.append(RunCapture(host, "server", server.pcap_path, server))
        node_dir = run.node_dir(host)
        node = NodeCapture(
            run.site(host),
            iface.ifname,
            f"{node_dir}/{node_pcap(host)}",
            run.port,
            f"{node_dir}/captures/{host.name}-tcpdump.log",
        )
        stack.callback(node.stop)
        node.start()
        captures.append(RunCapture(host, "node", run.dir / node_pcap(host), node))
    return captures


def node_pcap(host: Host) -> str:
    return f"captures/{host.name}-node.pcap"


def start_node_samplers(run: Run, interval_s: float) -> list[Background]:
    """Per node: a system sampler on its interface under test (and management)."""
    procs: list[Background] = []
    for host in run.inventory.clients:
        nics = [i.ifname for i in host.interfaces if i.network == run.network.name]
        if run.inventory.management is not None and run.topology.emulated:
            nics.append("mgmt0")
        node_dir = run.node_dir(host)
        procs.append(
            start_sampler(
                run.site(host),
                interval_s,
                f"{node_dir}/system/{host.name}.jsonl",
                f"{node_dir}/system/{host.name}.log",
                nics,
            )
        )
    return procs


def probe_clocks(run: Run, paths: list[ClockPath]) -> list[dict[str, Any]]:
    """Every (node, path) probe, in parallel; errors are results too."""
    offsets = run.campaign.clock_offsets_ns
    jobs = [(host, path) for host in run.inventory.clients for path in paths]

    def one(host: Host, path: ClockPath) -> dict[str, Any]:
        injected = offsets.get(host.name, 0)
        fields: dict[str, Any] = {"node": host.name, "path": path.name}
        fields["injected_offset_ns"] = injected
        measured = probe_clock(
            run.site(host),
            path.server_address,
            CLOCK_PORT,
            PROBE_SAMPLES,
            injected,
        )
        return {**fields, **measured}

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(jobs)))) as pool:
        return list(pool.map(lambda job: one(*job), jobs))


def record_clocks(run: Run, when: str, paths: list[ClockPath]) -> None:
    """Probe every node's clock offset over every path; write ``clock`` events."""
    results = probe_clocks(run, paths)
    try:  # the server's own synchronisation state, when chrony runs here
        tracking, chrony_error = chrony_tracking(), ""
    except ChronyError as err:
        tracking, chrony_error = None, str(err)
    with EventLog(run.events_path, run_id=run.plan.run_id) as events:
        for result in results:
            kind = EventKind.CLOCK_ERROR if "error" in result else EventKind.CLOCK
            events.append(kind, when=when, **result)
        if tracking is not None or chrony_error:
            events.append(
                EventKind.CHRONY,
                when=when,
                host=run.inventory.server.name,
                tracking=tracking,
                error=chrony_error,
            )
