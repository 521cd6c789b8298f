"""The userspace delay line: its plan (pure) and one real cluster (root).

The real test builds its own cluster on 10.252.x (name ``fbdl<hex>``), checks that
plain ``ping`` shows the profile's RTT, and that ``cluster down`` leaves no
delay-line process, iptables chain or qdisc behind, also after a failed ``up``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from inventory.models import Inventory
from testbed.emulation import delay, nfqueue, replay
from testbed.emulation.apply import cluster_down, cluster_up
from testbed.emulation.delay_schedule import DelaySpec
from testbed.emulation.errors import ClusterUpError
from testbed.emulation.features import EmulationFeatures, detect_features
from testbed.emulation.naming import node_namespace
from testbed.emulation.plan import plan_cluster
from testbed.emulation.sshd import forget_state
from testbed.emulation.status import cluster_status, manifest_features
from testbed.transport.executor import Background, LocalExecutor
from tests.testbed.emulation.inventories import CELL, TRACED_CELL, make_inventory

NO_NETEM = EmulationFeatures(True, True, False, True, {"delay": "no netem"}, True)

# --- the plan (pure) ----------------------------------------------------------------


def test_icmp_is_held_where_it_is_sent_the_rest_where_it_is_received() -> None:
    inv = make_inventory("emu")
    plan = plan_cluster(inv)
    cell = plan.link("pi1", "cell")

    line = delay.plan_delay_line(inv, plan, 400.0)

    # only the cell network asks for delay: four queues, one per direction and place
    assert line.delayed_networks == ("cell",) and len(line.queues) == 4
    where = {
        (q.direction, q.namespace, q.chain, q.protocol): q.match for q in line.queues
    }
    ns, bridge = node_namespace(inv, "pi1"), cell.bridge
    assert where == {
        ("uplink", None, line.chain, "non-icmp"): (
            "-i", bridge, "-s", "10.250.2.11/32", "!", "-p", "icmp"),
        ("uplink", ns, "POSTROUTING", "icmp"): ("-o", "wwan0", "-p", "icmp"),
        ("downlink", ns, "PREROUTING", "non-icmp"): (
            "-i", "wwan0", "!", "-p", "icmp"),
        ("downlink", None, line.egress_chain, "icmp"): (
            "-o", bridge, "-d", "10.250.2.11/32", "-p", "icmp"),
    }  # fmt: skip
    assert all(q.spec == DelaySpec(15, 2) for q in line.queues)
    host = [q.queue for q in line.queues if q.namespace is None]
    base = delay.host_queue_base(inv.name)
    assert host == [base, base + 1] and line.bridges == (bridge,)
    assert sorted(q.queue for q in line.queues if q.namespace) == [0, 1]
    assert delay.nfqueue_rule(line.queues[0])[-4:] == [
        "-j", "NFQUEUE", "--queue-num", str(base)]  # fmt: skip


def test_chains_and_jumps_are_ours_by_name() -> None:
    chain, egress = delay.chain_name("emu"), delay.egress_chain_name("emu")

    assert chain.startswith("FBDL") and egress.startswith("FBDE")
    assert len(chain) == len(egress) == 14 and chain[4:] == egress[4:]
    assert delay.chain_name("emu2") != chain
    assert delay.jump("-I", "fbbx", chain)[-6:] == [
        "-I", "PREROUTING", "-i", "fbbx", "-j", chain]  # fmt: skip
    assert delay.jump("-D", "fbbx", egress)[-6:] == [
        "-D", "POSTROUTING", "-o", "fbbx", "-j", egress]  # fmt: skip


def test_networks_faster_than_the_limit_get_their_rate_only() -> None:
    inv = make_inventory("emu")

    line = delay.plan_delay_line(inv, plan_cluster(inv), 20.0)
    use = delay.delay_use(inv, NO_NETEM, line, False, "not started")

    assert line.queues == () and line.rate_only[0][0] == "cell"
    assert "24 Mbit/s is above the delay line's 20 Mbit/s" in line.rate_only[0][1]
    assert use.mechanism == "delay-line" and use.rate_only == ("cell",)
    assert use.requested and not use.active and "rate only" in use.detail


def test_the_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(delay.MAX_MBIT_ENV, raising=False)
    assert delay.max_mbit() == delay.DEFAULT_MAX_MBIT
    monkeypatch.setenv(delay.MAX_MBIT_ENV, "1000")
    assert delay.max_mbit() == 1000.0
    monkeypatch.setenv(delay.MAX_MBIT_ENV, "fast")
    with pytest.raises(ValueError, match="DELAY_LINE_MAX_MBIT"):
        delay.max_mbit()


def test_the_mechanism_follows_the_kernel() -> None:
    assert delay.delay_mechanism(replace(NO_NETEM, delay=True)) == "netem"
    assert delay.delay_mechanism(NO_NETEM) == "delay-line"
    assert delay.delay_mechanism(replace(NO_NETEM, nfqueue=False)) == "none"


# --- against the real kernel --------------------------------------------------------


def _ours_left(inv: Inventory) -> list[str]:
    """Delay-line and trace-replay processes, iptables chains and qdiscs of ``inv``
    still present."""
    left = []
    configs = [
        str(files.config).encode()
        for files in (delay.files_for(inv.name), replay.files_for(inv.name))
    ]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if any(config in cmdline for config in configs):
                left.append(f"process {proc.name}")
    rules = subprocess.run(
        ["iptables", "-w", "5", "-t", "mangle", "-S"], capture_output=True, text=True
    ).stdout
    for chain in (delay.chain_name(inv.name), delay.egress_chain_name(inv.name)):
        left += [f"iptables: {line}" for line in rules.splitlines() if chain in line]
    qdiscs = subprocess.run(
        ["tc", "qdisc", "show"], capture_output=True, text=True
    ).stdout
    plan = plan_cluster(inv)
    devices = {*plan.host_side_veths, *plan.bridge_names}
    left += [q for q in qdiscs.splitlines() if set(q.split()) & devices]
    return left


@pytest.fixture
def fbdl() -> Iterator[Inventory]:
    """A delay-line cluster of our own on 10.252.x; always torn down."""
    if os.geteuid() != 0:
        pytest.skip("needs root for namespaces, tc and iptables")
    inv = make_inventory("fbdl" + secrets.token_hex(2), management=False, second=252)
    try:
        yield inv
    finally:
        cluster_down(inv)
        forget_state(inv)


@pytest.mark.root
def test_plain_ping_shows_the_profiles_rtt_and_down_leaves_nothing(
    fbdl: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("ping") is None:
        pytest.skip("needs iputils-ping")
    monkeypatch.setenv(delay.MAX_MBIT_ENV, "30")
    with socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW, nfqueue.NETLINK_NETFILTER
    ) as squatter:
        # someone else holds the cluster's hashed host queue: up moves on a block
        squatter.bind((0, 0))
        squatter.send(nfqueue.bind(delay.host_queue_base(fbdl.name)))
        squatter.recv(4096)
        state = cluster_up(fbdl)
        if state.features.delay or not state.features.nfqueue:
            pytest.skip("the kernel has netem, or no NFQUEUE: no delay line here")
        assert delay.running_pid(fbdl.name) is not None
        config = json.loads(delay.files_for(fbdl.name).config.read_text())
        assert config["host_base"] == delay.host_queue_base(fbdl.name, shift=1)
        # status without up's limit still reads it (and the block) from the line
        monkeypatch.setenv(delay.MAX_MBIT_ENV, "10")
        record = manifest_features(cluster_status(fbdl))["delay"]
        assert record["active"] is True and record["mechanism"] == "delay-line"
        assert "rate_only_networks" not in record, record

    argv = ["ip", "netns", "exec", node_namespace(fbdl, "pi1"), "ping", "-q", "-n"]
    out = subprocess.run(
        [*argv, "-c", "20", "-i", "0.05", "10.252.2.1"],
        capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip

    found = re.search(r"= [\d.]+/([\d.]+)/", out)
    assert found is not None, out
    want = 2 * CELL.delay_ms
    assert abs(float(found.group(1)) - want) <= max(1.0, 0.1 * want), out

    report = cluster_down(fbdl)

    assert any(r.startswith("delay-line pid ") for r in report.removed)
    assert _ours_left(fbdl) == []
    assert not delay.files_for(fbdl.name).folder.parent.exists()


class _FailNodeRule:
    """Executor whose NFQUEUE rules in node namespaces fail (after the line started)."""

    def __init__(self) -> None:
        self.inner = LocalExecutor()

    @property
    def where(self) -> str:
        return self.inner.where

    def run(
        self,
        argv: Sequence[str],
        check: bool = True,
        timeout: float | None = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        if "netns" in argv and "NFQUEUE" in argv:
            argv[argv.index("--queue-num") + 1] = "notaqueue"
        return self.inner.run(argv, check=check, timeout=timeout, env=env)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log_path: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Background:
        raise NotImplementedError

    def put(self, local: Path, remote: str, mode: int | None = None) -> None:
        raise NotImplementedError

    def get(self, remote: str, local: Path) -> None:
        raise NotImplementedError


@pytest.mark.root
def test_down_after_a_failed_up_leaves_no_delay_line_behind(fbdl: Inventory) -> None:
    features = detect_features()  # probed with the real executor
    if features.delay or not features.nfqueue:
        pytest.skip("the kernel has netem, or no NFQUEUE: no delay line here")

    # the cell uplink replays a trace: its process starts before the delay line's
    traced = make_inventory(fbdl.name, TRACED_CELL, management=False, second=252)

    with pytest.raises(ClusterUpError, match="--queue-num"):
        cluster_up(traced, executor=_FailNodeRule(), features=features)
    assert delay.running_pid(fbdl.name) is not None  # half built: it runs
    assert replay.running_pid(fbdl.name) is not None  # and so does the replay

    report = cluster_down(traced)

    assert any(r.startswith("trace-replay pid ") for r in report.removed)
    assert delay.running_pid(fbdl.name) is None
    assert replay.running_pid(fbdl.name) is None
    assert _ours_left(traced) == []
