"""Driving one run from start to teardown: start everything, wait for the rounds
while faults fire, stop, post-process; failures are outcomes, not exceptions.

One run = one SuperLink on the server's address on the network under test, one
SuperNode per client inside its namespace pointed at that address (so the
traffic crosses that network's shaped links), two packet captures per node (the
server side of its link and the node's own interface under test, inside its
namespace), ``flwr run``, a deadline, and a teardown that happens on success,
failure, timeout and Ctrl-C alike.
"""

from __future__ import annotations

import functools
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from instrumentation.capture import (
    CaptureError,
)
from instrumentation.events import EventLog, read_events
from instrumentation.schema import EventKind
from inventory.models import Inventory
from testbed.campaign.collect import post_process
from testbed.campaign.fault_injector import FaultInjector, NodeHandle
from testbed.campaign.measure import (
    RunCapture,
    record_clocks,
    start_captures,
    start_node_samplers,
)
from testbed.campaign.model import Campaign
from testbed.campaign.plan import Progress, RunOutcome, RunPlan
from testbed.campaign.probes import (
    clock_paths,
    start_clock_responders,
    start_server_sampler,
)
from testbed.campaign.run import Run, RunFailed
from testbed.campaign.topology import Topology, emulated_topology
from testbed.emulation.naming import host_side_veth, node_namespace
from testbed.transport.executor import Background, CommandError
from testbed.transport.processes import (
    ProcessError,
    stop_all,
)


def _count_rounds(events_path: Path) -> tuple[int, dict[str, Any] | None]:
    """Rounds aggregated so far and the ServerApp's ``app_end`` event, if any."""
    if not events_path.exists():
        return 0, None
    events = read_events(events_path)
    rounds = {e["round"] for e in events if e.get("phase") == "aggregation"}
    # FedBuff: a round is a model version, stepped when its buffer filled
    rounds |= {
        e["version_after"]
        for e in events
        if e["event"] == EventKind.FEDBUFF_UPDATE and e.get("server_step")
    }
    ends = [e for e in events if e["event"] == EventKind.APP_END]
    return len(rounds), (ends[-1] if ends else None)


def _ended(end: dict[str, Any], rounds: int, run: Run) -> tuple[str, str, int]:
    """The run's outcome from the ServerApp's ``app_end``: ``ok`` only when it
    returned; an exception in the ServerApp (a strategy it cannot build, a bug
    in the app) fails the run with the error and the ServerApp's log."""
    if end.get("status") == "failed":
        error = f"{end.get('error_type') or 'error'}: {end.get('error') or ''}"
        return (
            "failed",
            f"the ServerApp raised {error.strip()}; ServerApp log:\n"
            f"{run.serverapp_log()}",
            rounds,
        )
    return "ok", "", rounds


def _wait(
    run: Run,
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
        if ended is not None:
            return _ended(ended, rounds, run)
        if injector is not None:
            injector.tick()
        for proc in procs:
            if injector is None or not injector.excused(proc):
                try:
                    proc.check_alive()
                except ProcessError as err:
                    # stamped now: the teardown that follows takes seconds
                    with EventLog(run.events_path, run_id=run.plan.run_id) as events:
                        events.append(EventKind.RUN_ERROR, reason=str(err)[:2000])
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
            status = run.flower_status()
            if status.startswith("finished"):
                rounds, ended = _count_rounds(run.events_path)
                if ended is not None:
                    return _ended(ended, rounds, run)
                if not run.campaign.instrument and status == "finished:completed":
                    return "ok", "", run.campaign.rounds
                return (
                    "failed",
                    f"Flower reports {status}; ServerApp log:\n{run.serverapp_log()}",
                    rounds,
                )
        time.sleep(0.5)


def _injector(
    run: Run, superlink: Background, supernodes: list[Background], stack: ExitStack
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
    run = Run(campaign, inventory, plan, out, topology)
    run.dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    status, reason, rounds = "failed", "", 0
    captures: list[RunCapture] = []
    with EventLog(run.events_path, run_id=plan.run_id) as events:
        events.append(
            EventKind.RUN_START,
            network=plan.network,
            strategy=campaign.strategy.name,
            repetition=plan.repetition,
            address=run.address,
            security=topology.security.label,
            transport=sorted({s.transport for s in topology.sites.values()}),
            launch=campaign.launch.mode,
            levers=list(campaign.launch.levers),
        )
    try:
        # The stack unwinds in reverse: run, nodes, link, probes, samplers, captures.
        with ExitStack() as stack:
            measure = campaign.instrument
            run.prepare_nodes()
            if measure and campaign.capture:
                captures = start_captures(run, stack)
            if measure and campaign.system_sampling_hz > 0:
                interval_s = 1.0 / campaign.system_sampling_hz
                samplers: list[Background] = [
                    start_server_sampler(inventory, run.network, run.dir, interval_s)
                ]
                stack.callback(stop_all, samplers)
                samplers += start_node_samplers(run, interval_s)
            probe = measure and campaign.clock_probes
            paths = clock_paths(inventory, run.network) if probe else []
            if paths:
                stack.callback(stop_all, start_clock_responders(paths, run.dir))
                record_clocks(run, "start", paths)
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
                record_clocks(run, "end", paths)
            if status == "ok":
                run.finished = True
                run.serverapp_log()
                run.elapsed_s = run.flower_elapsed()
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
            post_process(run, captures)
        except Exception as err:  # noqa: BLE001 - keep the run's data, report the problem
            reason = (
                reason + "\n" if reason else ""
            ) + f"post-processing failed: {err}"
            status = "failed" if status == "ok" else status
        with EventLog(run.events_path, run_id=plan.run_id) as events:
            events.append(
                EventKind.RUN_END,
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
        run.warm_manifest(),
    )
