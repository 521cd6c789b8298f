"""Campaign orchestration: per network and repetition, start Flower, run, measure, stop.

One run = one SuperLink on the server's address on the network under test, one
SuperNode per client inside its namespace pointed at that address (so the
traffic crosses that network's shaped links), two packet captures per node (the
server side of its link and the node's own interface under test, inside its
namespace), ``flwr run``, a deadline, and a teardown that happens on success,
failure, timeout and Ctrl-C alike.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.failures import failure_table
from analysis.phases import RunInfo, concat_phases, phases_from_events, write_phases
from analysis.system import read_samples, system_table, write_system
from analysis.wire import byte_accounting, reconcile_transfers
from instrumentation.capture import (
    Capture,
    CaptureError,
    read_packets,
    segment_transfers,
    transfer_events,
)
from instrumentation.client_mod import CLOCK_OFFSET_KEY
from instrumentation.clock import ChronyError, chrony_tracking
from instrumentation.events import EventLog, read_events
from instrumentation.inject_server import EVENT_LOG_KEY, RUN_ID_KEY
from instrumentation.patience import NODE_WAIT_KEY
from instrumentation.supernode_log import supernode_log_events
from inventory.models import Host, Inventory, Network
from testbed.commands import flower
from testbed.campaign.model import Campaign
from testbed.emulation.naming import host_side_veth, node_namespace
from testbed.campaign.manifest import build_manifest
from testbed.campaign.app_bundle import (
    BundleError,
    flatten_config,
    prepare_bundle,
    read_app_config,
)
from testbed.campaign.probes import (
    CLOCK_PORT,
    PROBE_SAMPLES,
    ClockPath,
    clock_paths,
    start_clock_responders,
    server_interface,
    start_server_sampler,
)
from testbed.transport.executor import Background, CommandError
from testbed.campaign.fault_injector import FaultInjector, NodeHandle
from testbed.transport.processes import (
    ManagedProcess,
    ProcessError,
    read_stamped_log,
    stop_all,
    wait_for_port,
)
from testbed.campaign.sites import (
    NodeCapture,
    NodeSite,
    fetch,
    probe_clock,
    start_sampler,
    start_supernode,
)
from testbed.campaign.resume import (
    CampaignStopped,
    check_free_space,
    previous_runs,
    set_aside,
    stop_leftovers,
    write_csv,
)
from testbed.campaign.status import (
    CampaignStatus,
    eta_s,
    write_status,
)
from testbed.campaign.topology import BIN_DIR, Topology, emulated_topology
from testbed.transport.files import write_atomically, write_json_atomically

Progress = Callable[[str], None]


class RunFailed(RuntimeError):
    """A run could not complete; the message says why and where its logs are."""


@dataclass(frozen=True)
class RunPlan:
    """One cell of the campaign grid."""

    index: int
    total: int
    network: str
    repetition: int

    @property
    def run_id(self) -> str:
        """Folder name and event-log id of the run, e.g. ``5g-r1``."""
        return f"{self.network}-r{self.repetition}"


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one run."""

    run_id: str
    network: str
    repetition: int
    status: str  # ok | failed | timeout | interrupted
    reason: str
    duration_s: float
    flower_run_id: str
    rounds_completed: int
    # Flower's own measure of the run (flwr ls "elapsed"), the same with or
    # without flowerbed's instrumentation: the overhead benchmark compares it.
    flower_elapsed_s: float | None = None


def plan_runs(campaign: Campaign) -> list[RunPlan]:
    """Networks x repetitions, network-major (all repetitions of a network together)."""
    cells = [
        (n, r) for n in campaign.networks for r in range(1, campaign.repetitions + 1)
    ]
    return [RunPlan(i + 1, len(cells), n, r) for i, (n, r) in enumerate(cells)]


def node_config_for(
    inventory: Inventory, host: Host, clock_offset_ns: int = 0
) -> dict[str, flower.ConfigValue]:
    """Node config of a client: partition, inventory name, the inventory's extras."""
    index = inventory.clients.index(host)
    config: dict[str, flower.ConfigValue] = {
        "partition-id": index,
        "num-partitions": len(inventory.clients),
        "flowerbed-node": host.name,
    }
    config.update(host.node_config_dict)
    if clock_offset_ns:
        config[CLOCK_OFFSET_KEY] = clock_offset_ns
    return config


def _flwr(
    argv: list[str], env: dict[str, str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def _run_info(env: dict[str, str], flower_run_id: str) -> dict[str, Any]:
    """Flower's record of a run (``flwr ls --run-id``), or {} if unavailable."""
    result = _flwr(flower.flwr_ls_argv(BIN_DIR, int(flower_run_id)), env, 30.0)
    try:
        runs = json.loads(result.stdout).get("runs", [])
    except json.JSONDecodeError:
        return {}
    return dict(runs[0]) if runs else {}


def _finished_elapsed(
    env: dict[str, str], flower_run_id: str, deadline_s: float = 30.0
) -> float | None:
    """Flower's ``elapsed`` for the run once Flower marks it finished.

    The ServerApp writes ``app_end`` a moment before Flower closes the run; read
    earlier, ``elapsed`` would still be growing.
    """
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        info = _run_info(env, flower_run_id)
        if str(info.get("status", "")).startswith("finished"):
            elapsed = info.get("elapsed")
            return float(elapsed) if elapsed is not None else None
        time.sleep(0.5)
    return None


def _run_status(env: dict[str, str], flower_run_id: str) -> str:
    """Flower's status string for a run (``running``, ``finished:completed``, ...)."""
    return str(_run_info(env, flower_run_id).get("status", "unknown"))


def _count_rounds(events_path: Path) -> tuple[int, bool]:
    """Rounds aggregated so far and whether the ServerApp reported its end."""
    if not events_path.exists():
        return 0, False
    events = read_events(events_path)
    rounds = {e["round"] for e in events if e.get("phase") == "aggregation"}
    # FedBuff: a round is a model version, stepped when its buffer filled
    rounds |= {
        e["version_after"]
        for e in events
        if e["event"] == "fedbuff_update" and e.get("server_step")
    }
    return len(rounds), any(e["event"] == "app_end" for e in events)


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


class _Run:
    """The processes and files of one run; a context manager that always tears down."""

    def __init__(
        self,
        campaign: Campaign,
        inventory: Inventory,
        plan: RunPlan,
        out: Path,
        topology: Topology,
    ):
        self.campaign, self.inventory, self.plan = campaign, inventory, plan
        self.topology = topology
        self.network: Network = inventory.network(plan.network)
        self.dir = out / "runs" / plan.run_id
        self.events_path = self.dir / "events.jsonl"
        self.port = inventory.superlink_port
        self.address = f"{self.network.server_address}:{self.port}"
        self.cli_env = flower.flower_env(self.dir / "flwr" / "cli")
        self.tls = topology.security.tls
        self.flower_run_id = ""
        self.finished = False
        self.elapsed_s: float | None = None

    def site(self, host: Host) -> NodeSite:
        return self.topology.sites[host.name]

    def node_dir(self, host: Host) -> str:
        """The run's folder on ``host`` (this run folder for namespaces)."""
        return self.site(host).run_dir(self.dir, self.campaign.name, self.plan.run_id)

    def prepare_nodes(self) -> None:
        """Create the run's folders on every node."""
        for host in self.inventory.clients:
            folder = self.node_dir(host)
            self.site(host).executor.run(
                ["mkdir", "-p", *(f"{folder}/{d}" for d in NODE_FOLDERS)]
            )

    def server_capture(self, host: Host) -> Capture:
        """The server's end of ``host``'s link: its host-side veth on the emulated
        cluster, else the server's interface on the network, filtered to the node."""
        pcap = self.dir / "captures" / f"{host.name}.pcap"
        iface = host.interface(self.network.name)
        if self.topology.emulated:
            veth = host_side_veth(self.inventory, host.name, self.network.name)
            return Capture(veth, pcap, self.port)
        assert iface is not None  # start_captures checked
        return Capture(
            server_interface(str(self.network.server_address)),
            pcap,
            self.port,
            peer=str(iface.address),
        )

    def start_captures(self, stack: ExitStack) -> list[RunCapture]:
        """Per node: a capture on the server side of its link and one on its own
        interface under test, inside its namespace (as tcpdump would run on a Pi).
        """
        captures = []
        folder = self.dir / "captures"
        folder.mkdir(parents=True, exist_ok=True)
        for host in self.inventory.clients:
            iface = host.interface(self.network.name)
            if iface is None:
                raise RunFailed(
                    f"host {host.name} has no interface on network "
                    f"{self.network.name} in {self.inventory.path}; add one or "
                    "leave the network out of the campaign"
                )
            server = self.server_capture(host)
            server.start()
            stack.callback(server.stop)
            captures.append(RunCapture(host, "server", server.pcap_path, server))
            node_dir = self.node_dir(host)
            node = NodeCapture(
                self.site(host),
                iface.ifname,
                f"{node_dir}/{self.node_pcap(host)}",
                self.port,
                f"{node_dir}/captures/{host.name}-tcpdump.log",
            )
            stack.callback(node.stop)
            node.start()
            captures.append(
                RunCapture(host, "node", self.dir / self.node_pcap(host), node)
            )
        return captures

    @staticmethod
    def node_pcap(host: Host) -> str:
        return f"captures/{host.name}-node.pcap"

    def start_superlink(self, stack: ExitStack) -> ManagedProcess:
        home = self.dir / "flwr" / "superlink"
        home.mkdir(parents=True, exist_ok=True)
        security = self.topology.security
        argv = flower.superlink_argv(
            BIN_DIR,
            str(self.network.server_address),
            self.port,
            tls=(
                None
                if self.tls is None
                else flower.Tls(
                    self.tls.ca_cert, self.tls.server_cert, self.tls.server_key
                )
            ),
            supernode_auth=security.supernode_keys is not None,
        )
        proc = ManagedProcess(
            "flower-superlink",
            argv,
            self.dir / "superlink.log",
            env=flower.flower_env(home),
            cwd=home,
        )
        stack.callback(proc.stop)
        wait_for_port(str(self.network.server_address), self.port, 30.0, proc)
        return proc

    def register_supernodes(self) -> None:
        """Register every node's public key with the SuperLink (authentication)."""
        keys = self.topology.security.supernode_keys
        if keys is None:
            return
        for host in self.inventory.clients:
            key = keys.get(host.name)
            if key is None or not key.exists():
                raise RunFailed(
                    f"no SuperNode public key for {host.name} (looked for {key}); "
                    f"run `flowerbed cluster provision {self.inventory.path}` first"
                )
            argv = flower.flwr_supernode_register_argv(BIN_DIR, key)
            result = _flwr(argv, self.cli_env, 30.0)
            if result.returncode != 0:
                raise RunFailed(
                    f"registering {host.name}'s SuperNode key failed: "
                    f"`{flower.display(argv)}` exited {result.returncode}:\n"
                    f"{(result.stdout + result.stderr)[-1500:]}"
                )

    def start_supernode(self, host: Host) -> Background:
        """The SuperNode of ``host`` (again, after a fault: its log continues)."""
        config = node_config_for(
            self.inventory, host, self.campaign.clock_offsets_ns.get(host.name, 0)
        )
        node_dir = self.node_dir(host)
        return start_supernode(
            self.site(host),
            self.address,
            config,
            node_dir,
            f"{node_dir}/nodes/{host.name}.log",
        )

    def start_supernodes(self, stack: ExitStack) -> list[Background]:
        procs: list[Background] = []
        stack.callback(stop_all, procs)
        for host in self.inventory.clients:
            procs.append(self.start_supernode(host))
        return procs

    def run_config(self, declared: frozenset[str]) -> dict[str, flower.ConfigValue]:
        """Run config for the app: the campaign's workload, our keys, and the
        generic keys (rounds, strategy...) the app declares."""
        unknown = sorted(set(self.campaign.workload_dict) - declared)
        if unknown:
            raise RunFailed(
                f"the app {self.campaign.app} declares no run-config key(s) "
                f"{', '.join(unknown)} (campaign key workload); it declares: "
                f"{', '.join(sorted(declared))}"
            )
        generic: dict[str, flower.ConfigValue] = {
            "num-server-rounds": self.campaign.rounds,
            "strategy": self.campaign.strategy.name,
            "min-nodes": len(self.inventory.clients),
            "round-timeout-s": float(self.campaign.round_timeout_s),
            "strategy-parameters": json.dumps(dict(self.campaign.strategy.parameters)),
        }
        values = {k: v for k, v in generic.items() if k in declared}
        values.update(self.campaign.workload_dict)
        values[EVENT_LOG_KEY] = str(self.events_path.resolve())
        values[RUN_ID_KEY] = self.plan.run_id
        values[NODE_WAIT_KEY] = float(self.campaign.node_wait)
        return values

    def submit(self) -> None:
        home = self.dir / "flwr" / "cli"
        home.mkdir(parents=True, exist_ok=True)
        run_config = self.dir / "run_config.toml"
        if self.campaign.instrument:
            bundle_dir = self.dir / "app"
            shutil.rmtree(bundle_dir, ignore_errors=True)
            try:
                bundle = prepare_bundle(self.campaign.app, bundle_dir)
            except BundleError as err:
                raise RunFailed(str(err)) from None
            app_dir, values = bundle.path, self.run_config(bundle.config_keys)
        else:  # the app exactly as written: the overhead benchmark's baseline
            declared = frozenset(
                flatten_config(
                    read_app_config(self.campaign.app / "pyproject.toml")["tool"][
                        "flwr"
                    ]["app"].get("config", {})
                )
            )
            values = self.run_config(declared)
            del values[EVENT_LOG_KEY], values[RUN_ID_KEY], values[NODE_WAIT_KEY]
            app_dir = self.campaign.app
        run_config.write_text(flower.run_config_toml(values))
        argv = flower.flwr_run_argv(BIN_DIR, app_dir, run_config)
        result = _flwr(argv, self.cli_env, 120.0)
        try:
            self.flower_run_id = str(json.loads(result.stdout)["run-id"])
        except (json.JSONDecodeError, KeyError):
            raise RunFailed(
                f"`{flower.display(argv)}` did not start a run "
                f"(exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-2000:]}"
            ) from None

    def write_connection(self) -> None:
        """The ``flwr`` CLI's connection to this run's SuperLink."""
        home = self.dir / "flwr" / "cli"
        home.mkdir(parents=True, exist_ok=True)
        ca = self.tls.ca_cert if self.tls is not None else None
        (home / "config.toml").write_text(flower.connection_toml(self.address, ca))

    def probe_clocks(self, paths: list[ClockPath]) -> list[dict[str, Any]]:
        """Every (node, path) probe, in parallel; errors are results too."""
        offsets = self.campaign.clock_offsets_ns
        jobs = [(host, path) for host in self.inventory.clients for path in paths]

        def one(host: Host, path: ClockPath) -> dict[str, Any]:
            injected = offsets.get(host.name, 0)
            fields: dict[str, Any] = {"node": host.name, "path": path.name}
            fields["injected_offset_ns"] = injected
            measured = probe_clock(
                self.site(host),
                path.server_address,
                CLOCK_PORT,
                PROBE_SAMPLES,
                injected,
            )
            return {**fields, **measured}

        with ThreadPoolExecutor(max_workers=max(1, min(8, len(jobs)))) as pool:
            return list(pool.map(lambda job: one(*job), jobs))

    def record_clocks(self, when: str, paths: list[ClockPath]) -> None:
        """Probe every node's clock offset over every path; write ``clock`` events."""
        results = self.probe_clocks(paths)
        try:  # the server's own synchronisation state, when chrony runs here
            tracking, chrony_error = chrony_tracking(), ""
        except ChronyError as err:
            tracking, chrony_error = None, str(err)
        with EventLog(self.events_path, run_id=self.plan.run_id) as events:
            for result in results:
                kind = "clock_error" if "error" in result else "clock"
                events.append(kind, when=when, **result)
            if tracking is not None or chrony_error:
                events.append(
                    "chrony",
                    when=when,
                    host=self.inventory.server.name,
                    tracking=tracking,
                    error=chrony_error,
                )

    def stop_flower_run(self) -> None:
        if self.flower_run_id and not self.finished:
            _flwr(
                flower.flwr_stop_argv(BIN_DIR, int(self.flower_run_id)),
                self.cli_env,
                30.0,
            )

    def serverapp_log(self) -> str:
        if not self.flower_run_id:
            return ""
        argv = [
            str(BIN_DIR / "flwr"),
            "log",
            self.flower_run_id,
            flower.CONNECTION_NAME,
            "--show",
        ]
        try:
            result = _flwr(argv, self.cli_env, 30.0)
        except subprocess.TimeoutExpired:
            return ""
        (self.dir / "serverapp.log").write_text(result.stdout + result.stderr)
        return result.stdout[-3000:]


def _wait(
    run: _Run,
    procs: list[Background],
    deadline: float,
    progress: Progress,
    on_round: Callable[[int], None] | None = None,
    injector: FaultInjector | None = None,
) -> tuple[str, str, int]:
    """Wait for the ServerApp to finish; return (status, reason, rounds done).

    ``procs`` must stay alive (the SuperLink first), except those a fault killed.
    """
    shown, next_check = 0, time.monotonic() + 10.0
    while True:
        rounds, ended = _count_rounds(run.events_path)
        if rounds > shown:
            shown = rounds
            progress(f"  round {rounds}/{run.campaign.rounds} aggregated")
            if on_round is not None:
                on_round(rounds)
            if injector is not None:
                injector.round_aggregated(rounds)
        if ended:
            return "ok", "", rounds
        if injector is not None:
            injector.tick()
        for proc in procs:
            if injector is None or not injector.excused(proc):
                try:
                    proc.check_alive()
                except ProcessError as err:
                    # stamped now: the teardown that follows takes seconds
                    with EventLog(run.events_path, run_id=run.plan.run_id) as events:
                        events.append("run_error", reason=str(err)[:2000])
                    raise
        now = time.monotonic()
        if now > deadline:
            return (
                "timeout",
                (
                    f"run exceeded its deadline of {run.campaign.run_deadline_s:.0f} s "
                    f"(campaign key run_deadline_s) after {rounds} round(s)"
                ),
                rounds,
            )
        if now > next_check:
            next_check = now + 10.0
            status = _run_status(run.cli_env, run.flower_run_id)
            if status.startswith("finished"):
                rounds, ended = _count_rounds(run.events_path)
                if ended:
                    return "ok", "", rounds
                if not run.campaign.instrument and status == "finished:completed":
                    return "ok", "", run.campaign.rounds
                return (
                    "failed",
                    f"Flower reports {status}; ServerApp log:\n{run.serverapp_log()}",
                    rounds,
                )
        time.sleep(0.5)


def _injector(
    run: _Run, superlink: Background, supernodes: list[Background], stack: ExitStack
) -> FaultInjector | None:
    """The run's fault injector, or None when the campaign injects no fault."""
    if not run.campaign.faults:
        return None
    handles, by_host = {}, {}
    for host, proc in zip(run.inventory.clients, supernodes, strict=True):
        site = run.site(host)
        iface = host.interface(run.network.name)
        assert iface is not None  # checked when the captures started
        by_host[host.name] = proc
        handles[host.name] = NodeHandle(
            executor=site.executor,
            ifname=iface.ifname,
            host_side_link=(
                host_side_veth(run.inventory, host.name, run.network.name)
                if run.topology.emulated
                else None
            ),
            namespace=(
                node_namespace(run.inventory, host.name)
                if run.topology.emulated
                else None
            ),
            restart=functools.partial(run.start_supernode, host),
            privileged=site.privileged,
        )

    def write(event: str, /, **fields: Any) -> None:
        with EventLog(run.events_path, run_id=run.plan.run_id) as events:
            events.append(event, **fields)

    injector = FaultInjector(run.campaign.faults, handles, by_host, superlink, write)
    stack.callback(stop_all, injector.extra)
    stack.callback(injector.finish)
    return injector


# Bursts are cut at 50 ms of silence, finer than the parser's default: a message is
# then rebuilt from every burst inside the SuperNode's send/receive window, and a
# poll or heartbeat 0.1-0.25 s beside the message stays a burst of its own instead
# of stretching the message's first or last byte.
CAPTURE_GAP_S = 0.05


def _capture_events(run: _Run, captured: RunCapture) -> list[dict[str, Any]]:
    """The ``transfer`` (server side) or ``node_transfer`` (node side) events of
    one capture, without the keys the event log adds.

    On a real node tcpdump stamps packets with the node's clock; an emulated node
    with an injected offset gets it here, as its SuperNode log and samples do.
    """
    transfers = segment_transfers(
        read_packets(captured.pcap),
        str(run.network.server_address),
        run.port,
        gap_s=CAPTURE_GAP_S,
    )
    offset = 0
    if captured.side == "node":
        offset = run.campaign.clock_offsets_ns.get(captured.host.name, 0)
    out = []
    for event in transfer_events(transfers, captured.host.name, run.network.name):
        fields = {
            k: v for k, v in event.items() if k not in ("event", "run_id", "t_ns")
        }
        if captured.side == "node":
            fields["start_ns"] += offset
            fields["end_ns"] += offset
            fields["side"] = "node"
        out.append(fields)
    return out


NODE_FOLDERS = ("nodes", "captures", "system", "flwr")


def _fetch_node_files(run: _Run) -> list[str]:
    """Copy each remote node's log, capture and samples into the run folder;
    return what could not be fetched."""
    missing = []
    for host in run.inventory.clients:
        site = run.site(host)
        if not site.fetch_needed:
            continue
        remote = run.node_dir(host)
        wanted = [f"nodes/{host.name}.log"]
        if run.campaign.instrument and run.campaign.capture:
            wanted += [run.node_pcap(host), f"captures/{host.name}-tcpdump.log"]
        if run.campaign.instrument and run.campaign.system_sampling_hz > 0:
            wanted += [f"system/{host.name}.jsonl", f"system/{host.name}.log"]
        for rel in wanted:
            if not fetch(site, remote, run.dir, rel):
                missing.append(f"{host.name}:{remote}/{rel}")
    return missing


def _start_node_samplers(run: _Run, interval_s: float) -> list[Background]:
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


def _post_process(run: _Run, captures: list[RunCapture]) -> None:
    """Turn captures and SuperNode logs into events of the run's log."""
    missing = _fetch_node_files(run)
    if missing:
        with EventLog(run.events_path, run_id=run.plan.run_id) as events:
            events.append("fetch_error", missing=missing)
    with EventLog(run.events_path, run_id=run.plan.run_id) as events:
        for captured in captures:
            if not captured.pcap.exists():
                continue
            kind = "transfer" if captured.side == "server" else "node_transfer"
            for fields in _capture_events(run, captured):
                events.append(kind, **fields)
        for host in run.inventory.clients:
            log = run.dir / "nodes" / f"{host.name}.log"
            if log.exists():
                # On a real node the SuperNode log is read (and stamped) on the
                # node; an emulated node with an injected offset gets it here too.
                offset = run.campaign.clock_offsets_ns.get(host.name, 0)
                lines = [(t + offset, text) for t, text in read_stamped_log(log)]
                for event in supernode_log_events(lines, host.name):
                    events.append("supernode_log", **event)


def execute_run(
    campaign: Campaign,
    inventory: Inventory,
    plan: RunPlan,
    out: Path,
    progress: Progress,
    topology: Topology | None = None,
    on_round: Callable[[int], None] | None = None,
) -> RunOutcome:
    """Run one (network, repetition) cell; run failures are returned, not raised."""
    topology = topology if topology is not None else emulated_topology(inventory)
    run = _Run(campaign, inventory, plan, out, topology)
    run.dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    status, reason, rounds = "failed", "", 0
    captures: list[RunCapture] = []
    with EventLog(run.events_path, run_id=plan.run_id) as events:
        events.append(
            "run_start",
            network=plan.network,
            strategy=campaign.strategy.name,
            repetition=plan.repetition,
            address=run.address,
            security=topology.security.label,
            transport=sorted({s.transport for s in topology.sites.values()}),
        )
    try:
        # The stack unwinds in reverse: run, nodes, link, probes, samplers, captures.
        with ExitStack() as stack:
            measure = campaign.instrument
            run.prepare_nodes()
            if measure and campaign.capture:
                captures = run.start_captures(stack)
            if measure and campaign.system_sampling_hz > 0:
                interval_s = 1.0 / campaign.system_sampling_hz
                samplers: list[Background] = [
                    start_server_sampler(inventory, run.network, run.dir, interval_s)
                ]
                stack.callback(stop_all, samplers)
                samplers += _start_node_samplers(run, interval_s)
            probe = measure and campaign.clock_probes
            paths = clock_paths(inventory, run.network) if probe else []
            if paths:
                stack.callback(stop_all, start_clock_responders(paths, run.dir))
                run.record_clocks("start", paths)
            run.write_connection()
            superlink = run.start_superlink(stack)
            run.register_supernodes()
            procs = run.start_supernodes(stack)
            stack.callback(run.stop_flower_run)
            run.submit()
            progress(f"  Flower run {run.flower_run_id} submitted to {run.address}")
            deadline = started + campaign.run_deadline_s
            injector = _injector(run, superlink, procs, stack)
            status, reason, rounds = _wait(
                run, [superlink, *procs], deadline, progress, on_round, injector
            )
            if paths:
                run.record_clocks("end", paths)
            if status == "ok":
                run.finished = True
                run.serverapp_log()
                run.elapsed_s = _finished_elapsed(run.cli_env, run.flower_run_id)
    except KeyboardInterrupt:
        status, reason = "interrupted", "interrupted by the user (Ctrl-C)"
    except (
        ProcessError,
        RunFailed,
        CaptureError,
        CommandError,
        OSError,
        subprocess.SubprocessError,
    ) as err:
        status, reason = "failed", str(err)
        rounds = max(rounds, _count_rounds(run.events_path)[0])
    finally:
        try:
            _post_process(run, captures)
        except Exception as err:  # noqa: BLE001 - keep the run's data, report the problem
            reason = (
                reason + "\n" if reason else ""
            ) + f"post-processing failed: {err}"
            status = "failed" if status == "ok" else status
        with EventLog(run.events_path, run_id=plan.run_id) as events:
            events.append(
                "run_end",
                status=status,
                reason=reason,
                rounds=rounds,
                flower_run_id=run.flower_run_id,
            )
    return RunOutcome(
        plan.run_id,
        plan.network,
        plan.repetition,
        status,
        reason,
        time.monotonic() - started,
        run.flower_run_id,
        rounds,
        run.elapsed_s,
    )


@dataclass(frozen=True)
class RunTables:
    """What one finished run contributes to the campaign's tables."""

    phases: pd.DataFrame
    system: pd.DataFrame | None
    clocks: list[dict[str, Any]]
    transfers: pd.DataFrame
    bytes: pd.DataFrame
    failures: pd.DataFrame


def _node_samples(path: Path, offset_ns: int) -> list[dict[str, Any]]:
    """A node's system samples, shifted by an emulated node's injected offset."""
    samples = read_samples(path)
    if offset_ns:
        for sample in samples:
            if "t_ns" in sample:
                sample["t_ns"] = int(sample["t_ns"]) + offset_ns
    return samples


def collect_run(
    campaign: Campaign, inventory: Inventory, outcome: RunOutcome, out: Path
) -> RunTables:
    """Read one run's event log and system samples into tables."""
    info = RunInfo(
        campaign=campaign.name,
        run_id=outcome.run_id,
        network=outcome.network,
        strategy=campaign.strategy.name,
        repetition=outcome.repetition,
    )
    run_dir = out / "runs" / outcome.run_id
    events = read_events(run_dir / "events.jsonl")
    clocks = [
        {
            k: e.get(k)
            for k in (
                "node",
                "path",
                "when",
                "offset_ns",
                "uncertainty_ns",
                "rtt_ns",
                "injected_offset_ns",
                "error",
            )
        }
        | {"run_id": outcome.run_id}
        for e in events
        if e["event"] in ("clock", "clock_error")
    ]
    offsets = campaign.clock_offsets_ns
    tables = [
        system_table(
            _node_samples(path, offsets.get(path.stem, 0)),
            outcome.run_id,
            outcome.network,
        )
        for path in sorted((run_dir / "system").glob("*.jsonl"))
    ]
    system = pd.concat(tables, ignore_index=True) if tables else None
    phases = phases_from_events(events, info)
    nics = {}
    for host in inventory.clients:
        iface = host.interface(outcome.network)
        if iface is not None:
            nics[host.name] = iface.ifname
    return RunTables(
        phases,
        system,
        clocks,
        reconcile_transfers(events),
        byte_accounting(phases, system, nics),
        failure_table(events, outcome.run_id),
    )


def run_campaign(
    campaign: Campaign,
    inventory: Inventory,
    out: Path,
    progress: Progress = print,
    features: dict[str, Any] | None = None,
    topology: Topology | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> list[RunOutcome]:
    """Run every cell; write phases.parquet and manifest.json as runs finish.

    ``resume`` continues an interrupted campaign in ``out``: finished runs are
    kept as they are (their tables rebuilt from their own files), processes the
    interruption left behind are stopped, an unfinished run's folder is moved to
    ``interrupted/`` and the run starts again. Without ``resume`` (or
    ``overwrite``), a folder that already holds a campaign is refused.
    """
    topology = topology if topology is not None else emulated_topology(inventory)
    clients = {h.name for h in inventory.clients}
    faulty = {f.node for f in campaign.faults if f.node is not None} - clients
    if faulty:
        raise ValueError(
            f"{campaign.path}: key 'faults' names host(s) {', '.join(sorted(faulty))} "
            f"that are not clients of {inventory.path}. Fix: use client host names"
        )
    unknown = sorted(set(campaign.clock_offsets_ns) - clients)
    if unknown:
        raise ValueError(
            f"{campaign.path}: key 'clock_offsets_ms' names host(s) "
            f"{', '.join(unknown)} that are not clients of {inventory.path}. "
            "Fix: use client host names"
        )
    # Absolute: Flower processes run with their FLWR_HOME as working directory.
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    finished = {
        run_id: RunOutcome(**run)
        for run_id, run in previous_runs(out, campaign, resume, overwrite).items()
    }
    if resume:
        stop_leftovers(out, campaign, topology, progress)
    outcomes: list[RunOutcome] = []
    tables: list[RunTables] = []
    manifest_path = out / "manifest.json"

    def save() -> None:
        phases = concat_phases([t.phases for t in tables])
        write_atomically(out / "phases.parquet", lambda p: write_phases(phases, p))
        system = [t.system for t in tables if t.system is not None]
        if system:
            frame = pd.concat(system, ignore_index=True)
            write_atomically(out / "system.parquet", lambda p: write_system(frame, p))
        for name, attr in (
            ("transfers.csv", "transfers"),
            ("bytes.csv", "bytes"),
            ("failures.csv", "failures"),
        ):
            frames = [getattr(t, attr) for t in tables if len(getattr(t, attr))]
            if frames:
                table = pd.concat(frames, ignore_index=True)
                write_atomically(out / name, functools.partial(write_csv, table))
        manifest = build_manifest(campaign, inventory, outcomes, features)
        manifest["clocks"] = [c for t in tables for c in t.clocks]
        write_json_atomically(manifest_path, manifest)

    save()
    plans = plan_runs(campaign)
    live = write_status(
        out,
        CampaignStatus(
            campaign=campaign.name,
            total_runs=len(plans),
            rounds_per_run=campaign.rounds,
            started_ns=time.time_ns(),
            pid=os.getpid(),
        ),
    )

    def update(**changes: Any) -> None:
        nonlocal live
        live = write_status(out, replace(live, **changes))

    previous = _stop_on_sigterm()
    state = "interrupted"
    try:
        for plan in plans:
            if plan.run_id in finished:
                outcome = finished[plan.run_id]
                outcomes.append(outcome)
                tables.append(collect_run(campaign, inventory, outcome, out))
                progress(
                    f"[{plan.index}/{plan.total}] {plan.run_id}: {outcome.status} "
                    "before the interruption, kept"
                )
                update(
                    finished_runs=(
                        *live.finished_runs,
                        (outcome.run_id, outcome.status, outcome.duration_s),
                    )
                )
                continue
            set_aside(out, plan.run_id)
            check_free_space(out, [o.run_id for o in outcomes])
            update(
                run_index=plan.index,
                run_id=plan.run_id,
                network=plan.network,
                repetition=plan.repetition,
                round=0,
                run_started_ns=time.time_ns(),
            )
            eta = eta_s(live, time.time_ns())
            progress(
                f"[{plan.index}/{plan.total}] network {plan.network}, "
                f"repetition {plan.repetition}/{campaign.repetitions}"
                + (f" (campaign ETA {eta / 60:.1f} min)" if eta is not None else "")
            )
            outcome = execute_run(
                campaign,
                inventory,
                plan,
                out,
                progress,
                topology,
                on_round=lambda r: update(round=r),
            )
            outcomes.append(outcome)
            tables.append(collect_run(campaign, inventory, outcome, out))
            progress(
                f"  {outcome.status} in {outcome.duration_s:.1f} s"
                + (f": {outcome.reason.splitlines()[0]}" if outcome.reason else "")
            )
            save()
            update(
                finished_runs=(
                    *live.finished_runs,
                    (outcome.run_id, outcome.status, round(outcome.duration_s, 1)),
                )
            )
            if outcome.status == "interrupted":
                raise KeyboardInterrupt
        state = "finished"
    except KeyboardInterrupt:
        save()
        raise
    except OSError as err:
        state = "stopped"
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CampaignStopped(
                f"the results disk of {out} is full ({err}); the runs saved before "
                "stay intact: free some space and continue with --resume"
            ) from err
        raise
    except CampaignStopped:
        state = "stopped"
        raise
    except BaseException:
        state = "failed"
        raise
    finally:
        try:
            update(state=state)
        except OSError:
            pass  # a full disk: the status keeps its last good version
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return outcomes


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_on_sigterm() -> Any:
    """Treat SIGTERM like Ctrl-C: a killed campaign still tears its processes down."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)
