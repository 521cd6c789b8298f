"""Replaying bandwidth traces: which shaped directions follow a trace, the tc lines
that move their rate, and the one replay process per cluster that sends them.

A profile's ``uplink_trace`` / ``downlink_trace`` (inventory/traces.py) makes that
direction's HTB class rate follow the trace: ``cluster up`` shapes it at the
trace's mean, then starts ``python -m testbed.emulation.trace_replay`` (started,
found and stopped like the delay line: testbed/emulation/helper.py), which
changes the class rate ``REPLAY_HZ`` times a second through one ``tc -batch``
per namespace, looping the trace. Every node starts at its own point of the loop
(``phase_offset_s``, hashed from the node's name), so nodes do not fade in
lockstep. ``cluster down`` stops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inventory.models import Inventory
from inventory.traces import (
    MIN_RATE_MBIT,
    BandwidthTrace,
    TraceStep,
    phase_offset_s,
)
from testbed.commands import shaping
from testbed.commands.shaping import Direction, Shaper
from testbed.emulation import helper
from testbed.emulation.plan import ClusterPlan, FeatureUse

MODULE = "testbed.emulation.trace_replay"
STEM = "trace_replay"
# Rate changes per second (the issue asks for 10 or more); the synthetic traces
# step every 100 ms, so 20 Hz lands each step within 50 ms of its time.
REPLAY_HZ = 20.0
# An explicit quantum keeps HTB from warning on every change at low rates.
HTB_QUANTUM = shaping.MTU_FRAME_BYTES


@dataclass(frozen=True)
class ReplayLink:
    """One shaped direction that follows a trace, from ``phase_s`` into its loop."""

    node: str
    network: str
    direction: Direction
    namespace: str | None  # None: the host namespace (downlinks)
    device: str
    trace: BandwidthTrace
    phase_s: float

    @property
    def label(self) -> str:
        """``node network direction``, for logs."""
        return f"{self.node} {self.network} {self.direction}"

    def rate_at(self, elapsed_s: float) -> float:
        """The rate to install ``elapsed_s`` after the replay started (Mbit/s)."""
        return replay_rate(self.trace, elapsed_s, self.phase_s)


@dataclass(frozen=True)
class ReplayPlan:
    """Every traced direction of a cluster, and how they are replayed."""

    cluster: str
    links: tuple[ReplayLink, ...]
    shaper: Shaper = "htb"
    hz: float = REPLAY_HZ

    @property
    def networks(self) -> tuple[str, ...]:
        """The networks with a traced direction."""
        return tuple(dict.fromkeys(link.network for link in self.links))


def replay_rate(trace: BandwidthTrace, elapsed_s: float, phase_s: float) -> float:
    """The trace's rate at ``elapsed_s + phase_s`` (looping), at least
    ``MIN_RATE_MBIT`` (an outage: HTB needs a rate above 0)."""
    return max(MIN_RATE_MBIT, trace.rate_at(elapsed_s + phase_s))


def plan_replay(
    inventory: Inventory, plan: ClusterPlan, shaper: Shaper = "htb"
) -> ReplayPlan:
    """Every shaped direction whose network's profile names a trace."""
    links = []
    for link in plan.links:
        if link.management:
            continue
        profile = inventory.network(link.network).profile
        for shape in (link.downlink, link.uplink):
            if shape is None:
                continue
            trace = profile.trace(shape.direction)
            if trace is None:
                continue
            links.append(
                ReplayLink(
                    link.node,
                    link.network,
                    shape.direction,
                    shape.namespace,
                    shape.device,
                    trace,
                    phase_offset_s(link.node, trace.period_s),
                )
            )
    return ReplayPlan(plan.cluster, tuple(links), shaper)


def change_line(device: str, rate_mbit: float, shaper: Shaper = "htb") -> str:
    """One ``tc -batch`` line that sets ``device``'s rate (HTB class, or TBF root)."""
    rate = shaping.tc_rate(rate_mbit)
    burst = shaping.burst_bytes(rate_mbit)
    if shaper == "tbf":
        return (
            f"qdisc change dev {device} root handle {shaping.ROOT_HANDLE} tbf rate "
            f"{rate} burst {burst} latency {shaping.TBF_LATENCY_MS:g}ms"
        )
    return (
        f"class change dev {device} parent {shaping.ROOT_HANDLE} classid "
        f"{shaping.CLASS_ID} htb rate {rate} ceil {rate} burst {burst} cburst {burst} "
        f"quantum {HTB_QUANTUM}"
    )


def batch_command(namespace: str | None) -> list[str]:
    """The long-lived ``tc`` that reads change lines from its stdin."""
    where = [] if namespace is None else ["-n", namespace]
    return ["tc", *where, "-force", "-batch", "-"]


def process_config(plan: ReplayPlan) -> dict[str, Any]:
    """The JSON config the replay process reads."""
    return {
        "cluster": plan.cluster,
        "hz": plan.hz,
        "shaper": plan.shaper,
        "links": [
            {
                "label": link.label,
                "namespace": link.namespace,
                "device": link.device,
                "period_s": link.trace.period_s,
                "phase_s": link.phase_s,
                "steps": [[s.start_s, s.mbit] for s in link.trace.steps],
            }
            for link in plan.links
        ],
    }


def trace_from_config(raw: dict[str, Any]) -> BandwidthTrace:
    """The trace of one link of the config file."""
    steps = tuple(TraceStep(float(a), float(b)) for a, b in raw["steps"])
    return BandwidthTrace(str(raw["label"]), "csv", steps, float(raw["period_s"]))


# --- the process ---------------------------------------------------------------------


def files_for(cluster: str) -> helper.HelperFiles:
    """The replay process's files of ``cluster``."""
    return helper.files_for(cluster, STEM)


def running_pid(cluster: str) -> int | None:
    """The pid of ``cluster``'s replay process if it runs, else None."""
    return helper.running_pid(files_for(cluster), MODULE)


def started_at(cluster: str) -> float | None:
    """When (epoch seconds) the running replay's loop began, from its ready file."""
    value = helper.read_ready(files_for(cluster)).get("started_at")
    return float(value) if isinstance(value, int | float) else None


def start(plan: ReplayPlan) -> int:
    """Start the replay of ``plan`` detached; return its pid once it replays."""
    return helper.start(
        files_for(plan.cluster),
        MODULE,
        process_config(plan),
        f"the trace replay of {plan.cluster}",
        "check that `tc -batch -` works here (iproute2).",
    )


def stop(cluster: str) -> int | None:
    """Stop ``cluster``'s replay process; return its pid if it ran."""
    return helper.stop(files_for(cluster), MODULE)


def forget(cluster: str) -> None:
    """Remove the replay's files (config, log) of ``cluster``."""
    helper.forget(files_for(cluster))


def replay_use(
    plan: ReplayPlan, pid: int | None, requested: tuple[str, ...]
) -> FeatureUse:
    """The ``trace`` feature for the manifest and ``cluster status``.

    ``requested``: the networks whose profile names a trace; ``pid`` the running
    replay process (None: not running).
    """
    if not requested:
        return FeatureUse("trace", False, False, "no profile names a bandwidth trace")
    traces = sorted({f"{link.direction} {link.trace.path}" for link in plan.links})
    if pid is None:
        return FeatureUse(
            "trace",
            True,
            False,
            "trace replay process NOT running: traced links stay at the trace's "
            "mean rate",
            requested,
            "none",
        )
    detail = (
        f"trace replay, one process, pid {pid}: tc {plan.shaper} rate changed "
        f"{plan.hz:g} times a second on {len(plan.links)} direction(s), looping, "
        f"each node from its own phase; {'; '.join(traces)}"
    )
    return FeatureUse("trace", True, True, detail, requested, "trace-replay")


def requested_networks(inventory: Inventory) -> tuple[str, ...]:
    """The networks whose profile names a trace."""
    return tuple(n.name for n in inventory.networks if n.profile.traced)
