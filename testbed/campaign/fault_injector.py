"""Fault injection during a run: the runner's driver of a campaign's faults.

Each fault fires once, ``after_s`` seconds after its round started (round 1 starts
when the run does; round r > 1 when round r - 1 was aggregated). Faults with a
``duration_s`` are undone after it: a frozen SuperNode continues, a cut link comes
back, the loss goes, a killed or rebooted node's SuperNode restarts (and rejoins
under a new Flower node id). Every action is an ``fault`` event in the run's log,
so the report can put each failure next to its cause.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from instrumentation.schema import EventKind
from testbed.campaign.faults import Fault
from testbed.transport.executor import Background, CommandError, Executor, LocalExecutor


def loss_rules(ifname: str, loss_pct: float) -> list[list[str]]:
    """iptables rules dropping ``loss_pct`` % of packets in and out of ``ifname``."""
    probability = f"{loss_pct / 100:.4f}"
    spec = ["-m", "statistic", "--mode", "random", "--probability", probability]
    return [
        ["INPUT", "-i", ifname, *spec, "-j", "DROP"],
        ["OUTPUT", "-o", ifname, *spec, "-j", "DROP"],
    ]


@dataclass
class NodeHandle:
    """What the injector may act on for one node."""

    executor: Executor
    ifname: str
    host_side_link: str | None  # the server end of an emulated link
    namespace: str | None  # emulated nodes: their namespace
    restart: Callable[[], Background]
    privileged: bool = True


EventWriter = Callable[..., None]


class FaultInjector:
    """Fires a run's faults at their moments and undoes timed ones."""

    def __init__(
        self,
        faults: Sequence[Fault],
        nodes: Mapping[str, NodeHandle],
        supernodes: dict[str, Background],
        superlink: Background | None,
        write_event: EventWriter,
        host: Executor | None = None,
    ) -> None:
        self.pending = list(faults)
        self.nodes, self.supernodes, self.superlink = nodes, supernodes, superlink
        self.write = write_event
        self.host = host if host is not None else LocalExecutor()
        self.expected_dead: set[int] = set()
        self.undo: list[tuple[float, Fault, Callable[[], None]]] = []
        self.round_started: dict[int, float] = {1: time.monotonic()}
        self.extra: list[Background] = []

    def round_aggregated(self, rounds: int) -> None:
        """Round ``rounds`` was aggregated: round ``rounds + 1`` starts now."""
        self.round_started.setdefault(rounds + 1, time.monotonic())

    def excused(self, proc: Background) -> bool:
        """Whether ``proc`` is dead because a fault killed it."""
        return id(proc) in self.expected_dead

    def tick(self) -> None:
        """Fire due faults and undo expired ones (call often)."""
        now = time.monotonic()
        for fault in list(self.pending):
            started = self.round_started.get(fault.round)
            if started is not None and now >= started + fault.after_s:
                self.pending.remove(fault)
                self._fire(fault)
        for item in list(self.undo):
            due, fault, action = item
            if now >= due:
                self.undo.remove(item)
                self._record(fault, "undone", action)

    def finish(self) -> None:
        """Undo whatever is still in force (the run is ending)."""
        for _, fault, action in self.undo:
            self._record(fault, "undone", action)
        self.undo.clear()

    def _record(self, fault: Fault, what: str, action: Callable[[], None]) -> None:
        error = ""
        try:
            action()
        except (CommandError, OSError) as err:
            error = str(err)
        self.write(
            EventKind.FAULT,
            kind=fault.kind,
            node=fault.node or "",
            round=fault.round,
            action=what,
            duration_s=fault.duration_s,
            t_fault_ns=time.time_ns(),
            error=error,
        )

    def _later(self, fault: Fault, action: Callable[[], None]) -> None:
        if fault.duration_s is not None:
            self.undo.append((time.monotonic() + fault.duration_s, fault, action))

    def _fire(self, fault: Fault) -> None:
        action = getattr(self, "_" + fault.kind.replace("-", "_"))
        self._record(fault, "injected", lambda: action(fault))

    def _kill(self, proc: Background) -> None:
        self.expected_dead.add(id(proc))
        proc.signal(signal.SIGKILL)

    def _restart_later(self, fault: Fault, node: NodeHandle, name: str) -> None:
        def restart() -> None:
            proc = node.restart()
            self.supernodes[name] = proc
            self.extra.append(proc)

        self._later(fault, restart)

    def _kill_supernode(self, fault: Fault) -> None:
        name = str(fault.node)
        self._kill(self.supernodes[name])
        self._restart_later(fault, self.nodes[name], name)

    def _freeze_supernode(self, fault: Fault) -> None:
        proc = self.supernodes[str(fault.node)]
        proc.signal(signal.SIGSTOP)
        self._later(fault, lambda: proc.signal(signal.SIGCONT))

    def _link(self, node: NodeHandle, state: str) -> None:
        if node.host_side_link is not None:
            self.host.run(["ip", "link", "set", "dev", node.host_side_link, state])
        else:
            argv = ["ip", "link", "set", "dev", node.ifname, state]
            node.executor.run(argv if node.privileged else ["sudo", "-n", *argv])

    def _cut_link(self, fault: Fault) -> None:
        node = self.nodes[str(fault.node)]
        self._link(node, "down")
        self._later(fault, lambda: self._link(node, "up"))

    def _iptables(self, node: NodeHandle, op: str, rule: list[str]) -> None:
        argv = ["iptables", op, *rule]
        node.executor.run(argv if node.privileged else ["sudo", "-n", *argv])

    def _loss(self, fault: Fault) -> None:
        node = self.nodes[str(fault.node)]
        rules = loss_rules(node.ifname, fault.loss_pct)
        for rule in rules:
            self._iptables(node, "-I", rule)

        def remove() -> None:
            for rule in rules:
                self._iptables(node, "-D", rule)

        # without a duration the loss stays until the run ends
        self.undo.append(
            (
                time.monotonic() + (fault.duration_s or float("inf")),
                fault,
                remove,
            )
        )

    def _kill_superlink(self, fault: Fault) -> None:
        # not excused: without its SuperLink the run cannot go on, so the runner
        # notices at once, marks the run failed and the campaign moves on
        if self.superlink is not None:
            self.superlink.signal(signal.SIGKILL)

    def _reboot_node(self, fault: Fault) -> None:
        """Everything running on the node dies at once, as in a power cut."""
        name = str(fault.node)
        node = self.nodes[name]
        self.expected_dead.add(id(self.supernodes[name]))
        if node.namespace is not None:
            pids = self.host.run(["ip", "netns", "pids", node.namespace]).stdout
            if pids.split():
                self.host.run(["kill", "-9", *pids.split()], check=False)
        else:
            self._kill(self.supernodes[name])
        self._restart_later(fault, node, name)
