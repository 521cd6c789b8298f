"""Fault specs and the injector's timing, with scripted processes and executors."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from testbed.campaign.fault_injector import FaultInjector, NodeHandle, loss_rules
from testbed.campaign.faults import Fault, parse_faults


def test_faults_parse_with_defaults() -> None:
    (kill, loss) = parse_faults(
        [
            {"kind": "kill-supernode", "node": "pi2", "round": 2},
            {"kind": "loss", "node": "pi1", "loss_pct": 30},
        ]  # fmt: skip
    )
    assert kill == Fault("kill-supernode", round=2, node="pi2")
    assert loss.loss_pct == 30 and loss.round == 1 and loss.duration_s is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([{"kind": "kill-supernode"}], "needs 'node'"),
        ({"kind": "kill-supernode"}, "must be a list"),
        ([{"kind": "explode", "node": "a"}], "unknown fault 'explode'"),
        ([{"kind": "loss", "node": "a", "loss_pct": 100}], "loss_pct"),
        ([{"kind": "cut-link", "node": "a", "duration_s": 0}], "duration_s"),
        ([{"kind": "cut-link", "node": "a", "when": 3}], "unknown key(s) when"),
        ([{"kind": "cut-link", "node": "a", "round": "x"}], "item 0"),
    ],
)
def test_bad_faults_say_what_is_wrong(raw: Any, message: str) -> None:
    with pytest.raises(
        ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        parse_faults(raw)


def test_loss_rules_drop_both_ways_on_the_interface() -> None:
    rules = loss_rules("wwan0", 30)
    assert rules[0][:3] == ["INPUT", "-i", "wwan0"]
    assert rules[1][:3] == ["OUTPUT", "-o", "wwan0"]
    assert all("0.3000" in rule for rule in rules)


class Proc:
    name = "p"

    def __init__(self) -> None:
        self.signals: list[int] = []

    def signal(self, sig: int) -> None:
        self.signals.append(sig)

    def poll(self) -> int | None:
        return None  # noqa: E704

    def check_alive(self) -> None: ...  # noqa: E704
    def gone(self) -> bool:
        return False  # noqa: E704

    def log_tail(self, lines: int = 15) -> str:
        return ""  # noqa: E704

    def reap(self) -> None: ...  # noqa: E704


class Recorder:
    where = "scripted"

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def run(
        self,
        argv: Sequence[str],
        check: bool = True,
        timeout: float | None = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        self.commands.append(list(argv))
        return subprocess.CompletedProcess(list(argv), 0, "", "")

    def start(self, *a: Any, **k: Any) -> Any:
        raise NotImplementedError  # noqa: E704

    def put(self, local: Path, remote: str, mode: int | None = None) -> None: ...  # noqa: E704
    def get(self, remote: str, local: Path) -> None: ...  # noqa: E704


def _injector(faults: list[Fault]) -> tuple[FaultInjector, dict[str, Any], Recorder]:
    node, host = Recorder(), Recorder()
    restarted: list[Proc] = []

    def restart() -> Proc:
        restarted.append(Proc())
        return restarted[-1]

    handles = {
        "pi1": NodeHandle(node, "eth0", "fbv-pi1", None, restart),  # type: ignore[arg-type]
    }
    procs: dict[str, Any] = {"pi1": Proc()}
    events: list[dict[str, Any]] = []
    injector = FaultInjector(
        faults, handles, procs, Proc(),  # type: ignore[arg-type]
        lambda event, **f: events.append({"event": event, **f}),
        host=host,  # type: ignore[arg-type]
    )  # fmt: skip
    return injector, {"procs": procs, "events": events, "restarted": restarted}, host


def test_a_fault_waits_for_its_round_and_is_undone_after_its_duration() -> None:
    fault = Fault("cut-link", round=2, node="pi1", duration_s=0.05)
    injector, state, host = _injector([fault])

    injector.tick()
    assert host.commands == []  # round 2 has not started
    injector.round_aggregated(1)
    injector.tick()
    assert host.commands == [["ip", "link", "set", "dev", "fbv-pi1", "down"]]
    import time

    time.sleep(0.06)
    injector.tick()
    assert host.commands[-1] == ["ip", "link", "set", "dev", "fbv-pi1", "up"]
    assert [e["action"] for e in state["events"]] == ["injected", "undone"]


def test_a_killed_supernode_is_excused_and_restarted() -> None:
    fault = Fault("kill-supernode", node="pi1", duration_s=0.01)
    injector, state, _ = _injector([fault])
    victim = state["procs"]["pi1"]

    injector.tick()
    import time

    time.sleep(0.02)
    injector.tick()

    assert victim.signals == [signal.SIGKILL] and injector.excused(victim)
    assert state["procs"]["pi1"] is state["restarted"][0]  # rejoined
    assert not injector.excused(state["restarted"][0])


def test_loss_stays_until_the_run_ends() -> None:
    injector, state, _ = _injector([Fault("loss", node="pi1", loss_pct=30)])
    node = injector.nodes["pi1"].executor

    injector.tick()
    injector.tick()
    inserted = [c for c in node.commands if c[:2] == ["iptables", "-I"]]  # type: ignore[attr-defined]
    assert len(inserted) == 2
    injector.finish()
    removed = [c for c in node.commands if c[:2] == ["iptables", "-D"]]  # type: ignore[attr-defined]
    assert [c[2:] for c in removed] == [c[2:] for c in inserted]


def test_a_killed_superlink_is_not_excused() -> None:
    injector, _, _ = _injector([Fault("kill-superlink")])
    injector.tick()
    assert injector.superlink is not None
    assert injector.superlink.signals == [signal.SIGKILL]  # type: ignore[attr-defined]
    assert not injector.excused(injector.superlink)  # the run fails at once
