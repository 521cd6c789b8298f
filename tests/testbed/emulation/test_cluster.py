"""The emulated cluster against real namespaces: up, status, down, host checks."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from inventory.models import Inventory
from testbed.emulation import cgroups
from testbed.emulation.apply import cluster_down, cluster_up, host_firewall_problems
from testbed.emulation.errors import (
    ClusterUpError,
)
from testbed.emulation.naming import host_side_veth, node_namespace
from testbed.emulation.plan import ClusterState, plan_cluster
from testbed.emulation.sshd import forget_state, plan_ssh, sshd_state
from testbed.emulation.status import cluster_status, describe_status, manifest_features
from testbed.transport.executor import (
    Background,
    LocalExecutor,
    NetnsExecutor,
)
from testbed.transport.processes import ManagedProcess
from tests.testbed.emulation.inventories import LOSSY, make_inventory

needs_root = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and tc"),
]


# --- against the real kernel -------------------------------------------------------


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60)


def _links() -> set[str]:
    out = _run(["ip", "-j", "link", "show"]).stdout
    return {link["ifname"] for link in json.loads(out or "[]")}


def _namespaces() -> set[str]:
    out = _run(["ip", "-j", "netns", "list"]).stdout.strip()
    return {entry["name"] for entry in json.loads(out or "[]")}


_PINGER = r"""
import json, os, select, socket, struct, sys, time
dst, count = sys.argv[1], int(sys.argv[2])
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident, received, errors = os.getpid() & 0xFFFF, 0, []
for seq in range(count):
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    body = b"flowerbed" * 4
    packet = struct.pack("!BBHHH", 8, 0, checksum(head + body), ident, seq) + body
    try:
        sock.sendto(packet, (dst, 0))
    except OSError as exc:  # dropped by iptables OUTPUT: EPERM
        errors.append(exc.errno)
        continue
    deadline = time.monotonic() + 0.5
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        data, addr = sock.recvfrom(2048)
        icmp = data[(data[0] & 0x0F) * 4:]
        ours = struct.unpack("!HH", icmp[4:8]) == (ident, seq)
        if addr[0] == dst and icmp[0] == 0 and ours:
            received += 1
            break
print(json.dumps({"sent": count, "received": received, "send_errors": len(errors)}))
"""


def ping(namespace: str, address: str, count: int = 3) -> dict[str, int]:
    """ICMP echo from inside ``namespace`` (no iputils needed); sent/received counts."""
    argv = ["ip", "netns", "exec", namespace, sys.executable, "-c", _PINGER]
    result = _run([*argv, address, str(count)])
    assert result.returncode == 0, result.stderr
    counts: dict[str, int] = json.loads(result.stdout)
    return counts


def iperf_mbit(namespace: str, server: str, reverse: bool, seconds: int = 4) -> float:
    """TCP goodput (Mbit/s) between ``namespace`` and an iperf3 server at ``server``."""
    port = str(5201 + secrets.randbelow(2000))
    srv = subprocess.Popen(
        ["iperf3", "-s", "-1", "-B", server, "-p", port],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        argv = ["ip", "netns", "exec", namespace, "iperf3", "-c", server, "-p", port]
        argv += ["-t", str(seconds), "-O", "1", "-J"] + (["-R"] if reverse else [])
        result = _run(argv)
        assert result.returncode == 0, result.stdout[-500:] + result.stderr
        bits = json.loads(result.stdout)["end"]["sum_received"]["bits_per_second"]
        return float(bits) / 1e6
    finally:
        srv.kill()
        srv.wait()


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Inventory, ClusterState]]:
    if os.geteuid() != 0:
        pytest.skip("needs root for namespaces and tc")
    inv = make_inventory()
    try:
        yield inv, cluster_up(inv)
    finally:
        cluster_down(inv)
        forget_state(inv)


class TestUpCluster:
    pytestmark = needs_root

    def test_pieces_exist_with_addresses(
        self, cluster: tuple[Inventory, ClusterState]
    ) -> None:
        inv, state = cluster
        plan = state.plan
        assert set(plan.namespaces) <= _namespaces()
        assert set(plan.bridge_names) | set(plan.host_side_veths) <= _links()
        out = _run(["ip", "-n", "fb-" + inv.name + "-pi1", "-j", "-4", "addr"]).stdout
        addrs = {
            (link["ifname"], f"{a['local']}/{a['prefixlen']}")
            for link in json.loads(out)
            for a in link.get("addr_info", [])
        }
        assert addrs == {
            ("lo", "127.0.0.1/8"),
            ("eth0", "10.250.1.11/24"),
            ("wwan0", "10.250.2.11/24"),
            ("mgmt0", "10.250.0.11/24"),
        }
        status = cluster_status(inv)
        assert status.is_up, describe_status(status)
        sshd = {node.host: node.sshd for node in status.nodes}
        assert sshd["pi1"].startswith("listening on 10.250.0.11:22 (pid "), sshd
        assert "    sshd: listening on" in describe_status(status)

    def test_nodes_reach_the_server_on_their_networks_only(
        self, cluster: tuple[Inventory, ClusterState]
    ) -> None:
        inv, _ = cluster
        pi1 = node_namespace(inv, "pi1")
        pi2 = node_namespace(inv, "pi2")
        for address in ("10.250.1.1", "10.250.2.1", "10.250.0.1"):
            assert ping(pi1, address)["received"] == 3, address
        assert ping(pi2, "10.250.1.1")["received"] == 3
        # pi2 has no cell interface: no route to the server's cell address
        unreachable = ping(pi2, "10.250.2.1", count=2)
        assert unreachable["received"] == 0

    def test_installed_rates_match_the_profile(
        self, cluster: tuple[Inventory, ClusterState]
    ) -> None:
        inv, _ = cluster
        host_side = host_side_veth(inv, "pi1", "cell")
        down = _run(["tc", "class", "show", "dev", host_side]).stdout
        up = _run(
            ["ip", "netns", "exec", node_namespace(inv, "pi1"),
             "tc", "class", "show", "dev", "wwan0"]
        ).stdout  # fmt: skip
        assert "rate 24Mbit ceil 24Mbit" in down
        assert "rate 8Mbit ceil 8Mbit" in up
        status = cluster_status(inv)
        link = next(lk for lk in status.nodes[0].links if lk.network == "cell")
        assert link.downlink is not None and link.uplink is not None
        assert link.downlink.installed_rate_bit == 24_000_000
        assert link.uplink.installed_rate_bit == 8_000_000
        mgmt = _run(["tc", "qdisc", "show", "dev", host_side_veth(
            inv, "pi1", "mgmt")]).stdout  # fmt: skip
        assert "htb" not in mgmt and "tbf" not in mgmt  # management is unshaped

    def test_transfers_run_at_the_shaped_rate_both_ways(
        self, cluster: tuple[Inventory, ClusterState]
    ) -> None:
        inv, _ = cluster
        pi1 = node_namespace(inv, "pi1")

        uplink = iperf_mbit(pi1, "10.250.2.1", reverse=False)
        downlink = iperf_mbit(pi1, "10.250.2.1", reverse=True)

        assert uplink == pytest.approx(8, rel=0.15)
        assert downlink == pytest.approx(24, rel=0.15)

    def test_delay_is_reported_honestly(
        self, cluster: tuple[Inventory, ClusterState]
    ) -> None:
        inv, state = cluster
        status = cluster_status(inv)
        delay = manifest_features(status)["delay"]
        assert delay["requested"] is True and delay["networks"] == ["cell"]
        if state.features.delay:
            assert delay["active"] is True and delay["mechanism"] == "netem"
        elif state.features.nfqueue:
            assert delay["active"] is True and delay["mechanism"] == "delay-line"
            assert "delay line" in delay["detail"] and "netem" in delay["detail"]
            assert "delay line" in describe_status(status)
        else:
            assert "netem" in delay["detail"]
            assert manifest_features(state)["delay"]["active"] is False

    def test_up_twice_is_safe_and_converges(
        self, cluster: tuple[Inventory, ClusterState]
    ) -> None:
        inv, _ = cluster
        pi1 = node_namespace(inv, "pi1")
        # drift: an extra address on a node interface, the wrong rate on a veth
        _run(["ip", "-n", pi1, "addr", "add", "10.250.1.99/24", "dev", "eth0"])
        host_side = host_side_veth(inv, "pi1", "cell")
        _run(["tc", "class", "replace", "dev", host_side, "parent", "1:",
              "classid", "1:10", "htb", "rate", "1mbit"])  # fmt: skip

        cluster_up(inv)

        status = cluster_status(inv)
        assert status.is_up, describe_status(status)
        eth0 = next(lk for lk in status.nodes[0].links if lk.network == "ethernet")
        assert eth0.addresses == ("10.250.1.11/24",)
        cell = next(lk for lk in status.nodes[0].links if lk.network == "cell")
        assert cell.downlink is not None
        assert cell.downlink.installed_rate_bit == 24_000_000
        assert ping(pi1, "10.250.2.1")["received"] == 3


@pytest.fixture
def scratch() -> Iterator[Inventory]:
    """A fresh cluster name for one test; always torn down."""
    if os.geteuid() != 0:
        pytest.skip("needs root for namespaces and tc")
    inv = make_inventory(second=251)
    try:
        yield inv
    finally:
        cluster_down(inv)
        forget_state(inv)


@pytest.mark.root
def test_nth_loss_drops_exactly_the_expected_pings(scratch: Inventory) -> None:
    inv = make_inventory(scratch.name, cell=LOSSY, management=False, second=251)
    cluster_up(inv, loss_mode="nth")
    pi1 = node_namespace(inv, "pi1")

    counts = ping(pi1, "10.251.2.1", count=32)

    # one in every 4 requests dropped leaving (8), one in every 4 of the 24 replies
    # arriving (6). Multiples of 4 keep the count exact whichever packet of each 4
    # the iptables backend drops (nft compat here drops the 1st, legacy the 4th).
    assert counts["send_errors"] == 8
    assert counts["received"] == 18
    assert ping(pi1, "10.251.1.1", count=8)["received"] == 8  # ethernet: no loss
    status = cluster_status(inv)
    assert manifest_features(status)["loss"]["active"] is True


class _InjectFault:
    """Executor that corrupts one argument of one command, so the real tool fails."""

    def __init__(self, device: str) -> None:
        self.inner = LocalExecutor()
        self.device = device

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
        if "class" in argv and self.device in argv and "rate" in argv:
            argv[argv.index("rate") + 1] = "notarate"
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
def test_down_after_a_failed_up_leaves_nothing_of_ours(scratch: Inventory) -> None:
    inv = scratch
    plan = plan_cluster(inv)
    bad = _InjectFault(host_side_veth(inv, "pi2", "ethernet"))

    with pytest.raises(ClusterUpError) as info:
        cluster_up(inv, executor=bad)

    message = str(info.value)
    assert info.value.node == "pi2" and info.value.network == "ethernet"
    assert "notarate" in message
    assert f"flowerbed cluster down {inv.path}" in message
    assert set(plan.namespaces) <= _namespaces()  # half built, as the error says

    cluster_down(inv)

    assert not set(plan.namespaces) & _namespaces()
    ours = set(plan.bridge_names) | set(plan.host_side_veths)
    assert not ours & _links()
    assert cluster_status(inv).is_down


@pytest.mark.root
def test_down_touches_nothing_else(scratch: Inventory) -> None:
    inv = scratch
    other_ns = "fbtother" + secrets.token_hex(2)
    other_bridge = "fbb" + secrets.token_hex(3)  # our prefix, not our plan
    _run(["ip", "netns", "add", other_ns])
    _run(["ip", "link", "add", other_bridge, "type", "bridge"])
    try:
        cluster_up(inv)
        version = cgroups.detect_version()
        names = [h.name for h in inv.clients]
        ours = (
            {f"cgroup {a[-1]}" for a in cgroups.remove_argvs(version, inv.name, names)}
            if version is not None
            else set()
        )
        assert all(Path(g.removeprefix("cgroup ")).is_dir() for g in ours)

        report = cluster_down(inv)

        assert other_ns in _namespaces()
        assert other_bridge in _links()
        delay_line = ("iptables ", "NFQUEUE rules ", "delay-line pid ")
        ours = {r for r in report.removed if not r.startswith(delay_line)}
        assert ours == {
            *plan_cluster(inv).namespaces,
            *plan_cluster(inv).bridge_names,
            *plan_cluster(inv).host_side_veths,
            *(f"sshd@{host.name}" for host in inv.clients),  # their sshd went first
            *ours,  # each node's cgroups, then the cluster's
        }
        assert not any(Path(g.removeprefix("cgroup ")).exists() for g in ours)
        assert cluster_down(inv).removed == ()  # missing pieces are fine
    finally:
        _run(["ip", "link", "del", other_bridge])
        _run(["ip", "netns", "del", other_ns])


@pytest.mark.root
def test_up_refuses_subnets_the_host_already_routes(scratch: Inventory) -> None:
    inv = scratch
    dummy_bridge = "fbt" + secrets.token_hex(3)
    _run(["ip", "link", "add", dummy_bridge, "type", "bridge"])
    _run(["ip", "addr", "add", "10.251.1.200/24", "dev", dummy_bridge])
    _run(["ip", "link", "set", dummy_bridge, "up"])
    try:
        with pytest.raises(ClusterUpError, match="overlaps the host's route") as info:
            cluster_up(inv)
        assert "nothing was created" in str(info.value)
        assert not set(plan_cluster(inv).namespaces) & _namespaces()
    finally:
        _run(["ip", "link", "del", dummy_bridge])


@pytest.mark.root
def test_down_reports_processes_left_in_a_namespace(
    scratch: Inventory, tmp_path: Path
) -> None:
    inv = scratch
    cluster_up(inv)
    node = NetnsExecutor(node_namespace(inv, "pi1"))
    sleeper = node.start("sleeper", ["sleep", "30"], str(tmp_path / "sleep.log"))
    assert isinstance(sleeper, ManagedProcess)
    try:
        report = cluster_down(inv)

        assert report.lingering_pids == {node_namespace(inv, "pi1"): (
            sleeper.pid,
        )}  # fmt: skip
        assert "still running" in str(report)
        # its devices went with the host-side veths, even though the netns lives on
        assert host_side_veth(inv, "pi1", "cell") not in _links()
    finally:
        sleeper.stop(grace_s=0.1)


# --- host checks with a scripted executor (the real firewall is not ours to change) ---


class _Scripted:
    """Executor answering ``iptables -S`` and the br_netfilter sysctl from a script."""

    def __init__(self, rules: str, bridge_nf: str | None) -> None:
        self.rules, self.bridge_nf = rules, bridge_nf

    @property
    def where(self) -> str:
        return "scripted host"

    def run(
        self,
        argv: Sequence[str],
        check: bool = True,
        timeout: float | None = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        if argv[0] == "iptables":
            return subprocess.CompletedProcess(list(argv), 0, self.rules, "")
        if self.bridge_nf is None:
            return subprocess.CompletedProcess(list(argv), 255, "", "unknown key")
        return subprocess.CompletedProcess(list(argv), 0, self.bridge_nf + "\n", "")

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


OPEN = "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n"
DOCKERISH = "-P INPUT ACCEPT\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n"
LOCKED = "-P INPUT DROP\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n"


@pytest.mark.parametrize(
    ("rules", "bridge_nf", "expected"),
    [
        (OPEN, "1", []),
        (DOCKERISH, None, []),  # no br_netfilter: bridged frames skip iptables
        (DOCKERISH, "0", []),
        (DOCKERISH, "1", ["FORWARD"] * 3),
        (DOCKERISH + "-A FORWARD -i fbb+ -j ACCEPT\n", "1", []),
        (LOCKED, "0", ["INPUT"] * 3),
        (LOCKED + "-A INPUT -i fbb+ -j ACCEPT\n", "0", []),
    ],
)
def test_host_firewall_problems_are_named_with_a_fix(
    rules: str, bridge_nf: str | None, expected: list[str]
) -> None:
    plan = plan_cluster(make_inventory("emu"))

    problems = host_firewall_problems(plan, _Scripted(rules, bridge_nf))

    assert [("FORWARD" if "FORWARD" in p else "INPUT") for p in problems] == expected
    for problem, bridge in zip(problems, plan.bridges, strict=False):
        assert bridge.name in problem and "iptables -I" in problem


def test_sshd_state_of_a_node_without_a_live_pid_is_not_running(
    tmp_path: Path,
) -> None:
    inv = make_inventory()
    node = plan_ssh(inv, {"pi1": "fb-nonexistent-ns", "pi2": "fb-nonexistent-ns"})
    pi1 = replace(node.nodes[0], pid_file=tmp_path / "sshd.pid")
    executor = LocalExecutor()

    assert sshd_state(pi1, executor) == "not running"  # no pid file
    pi1.pid_file.write_text("999999999\n")  # a pid no process has
    assert sshd_state(pi1, executor) == "not running"
