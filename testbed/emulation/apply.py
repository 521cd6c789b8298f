"""Converging the machine to the plan (``cluster up``) and removing exactly its
pieces (``cluster down``), with the root and host-firewall checks before."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from inventory.models import Inventory
from testbed.commands import netcmd, shaping
from testbed.commands.shaping import LossMode, Shaper
from testbed.emulation import cgroups, delay, replay
from testbed.emulation.errors import (
    ClusterUpError,
    EmulationError,
    require_root,
)
from testbed.emulation.features import EmulationFeatures, detect_features
from testbed.emulation.naming import (
    BRIDGE_PREFIX,
    bridge_name,
    host_side_veth,
    management_names,
    node_namespace,
    node_namespaces,
)
from testbed.emulation.plan import (
    BridgePlan,
    ClusterPlan,
    ClusterState,
    FeatureUse,
    LinkPlan,
    NodePlan,
    ShapePlan,
    feature_uses,
    plan_cluster,
)
from testbed.emulation.readback import (
    ip_json,
    read_addresses,
    read_links,
    read_namespaces,
    read_qdiscs,
    veths_paired,
)
from testbed.emulation.sshd import ssh_down, ssh_up
from testbed.transport.executor import (
    CommandError,
    Executor,
    LocalExecutor,
    NetnsExecutor,
)

# --- root and host checks -----------------------------------------------------------


def _accepts(rules: str, chain: str, bridge: str) -> bool:
    for line in rules.splitlines():
        tokens = line.split()
        if tokens[:2] == ["-A", chain] and tokens[-2:] == ["-j", "ACCEPT"]:
            if any(t in (bridge, BRIDGE_PREFIX + "+") for t in tokens):
                return True
    return False


def host_firewall_problems(plan: ClusterPlan, host: Executor) -> list[str]:
    """Return why the host's iptables would drop the cluster's traffic (empty: fine).

    Node-to-server packets end in the host's INPUT chain; with
    ``net.bridge.bridge-nf-call-iptables=1`` (br_netfilter) node-to-node frames also
    cross FORWARD. A DROP policy there without an ACCEPT for our bridges is reported,
    never changed: the firewall is the machine owner's.
    """
    try:
        rules = host.run(shaping.iptables_rules(), timeout=10.0).stdout
    except CommandError:
        return []  # no iptables binary or no filter table: nothing of it can drop
    bridges = [b for b in plan.bridges]
    problems = []
    if "-P INPUT DROP" in rules or "-P INPUT REJECT" in rules:
        blocked = [b for b in bridges if not _accepts(rules, "INPUT", b.name)]
        for b in blocked:
            problems.append(
                f"the host's iptables INPUT policy is DROP, so traffic from the nodes "
                f"to "
                f"the server on network {b.network} (bridge {b.name}, {b.address.ip}) "
                f"would be dropped; allow it: `iptables -I INPUT -i {b.name} -j ACCEPT`"
            )
    nf = host.run(netcmd.sysctl_get("net.bridge.bridge-nf-call-iptables"), check=False)
    if nf.returncode == 0 and nf.stdout.strip() == "1" and "-P FORWARD DROP" in rules:
        for b in bridges:
            if not _accepts(rules, "FORWARD", b.name):
                problems.append(
                    "net.bridge.bridge-nf-call-iptables=1 sends bridged frames through "
                    "the host's iptables FORWARD chain, whose policy is DROP, so "
                    f"traffic between nodes on network {b.network} (bridge {b.name}) "
                    f"would be dropped; allow it: `iptables -I FORWARD -i {b.name} -o "
                    f"{b.name} -j ACCEPT` (or set the sysctl to 0 if nothing else on "
                    "this host needs it)"
                )
    return problems


def subnet_conflicts(plan: ClusterPlan, host: Executor) -> list[str]:
    """Return host routes (not via our bridges) that overlap the cluster's subnets."""
    ours = set(plan.bridge_names)
    conflicts = []
    for route in ip_json(host.run(netcmd.route_show()).stdout):
        dst, dev = str(route.get("dst", "default")), str(route.get("dev", ""))
        if dst == "default" or dev in ours:
            continue
        try:
            routed = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        for bridge in plan.bridges:
            if routed.overlaps(bridge.address.network):
                conflicts.append(
                    f"network {bridge.network} ({bridge.address.network}) overlaps the "
                    f"host's route {dst} dev {dev}; pick another subnet"
                )
    return conflicts


# --- building -------------------------------------------------------------------


class _Builder:
    """Runs the plan's steps; turns a failure into a ``ClusterUpError`` with context."""

    def __init__(self, inventory: Inventory, host: Executor) -> None:
        self.inventory = inventory
        self.host = host

    def netns(self, namespace: str) -> NetnsExecutor:
        return NetnsExecutor(namespace, self.host)

    @contextmanager
    def step(
        self, what: str, node: str | None = None, network: str | None = None
    ) -> Iterator[None]:
        try:
            yield
        except CommandError as exc:
            place = ", ".join(
                part
                for part in (
                    f"node {node}" if node else "",
                    f"network {network}" if network else "",
                )
                if part
            )
            where = f" ({place})" if place else ""
            raise ClusterUpError(
                f"cluster up of {self.inventory.name} failed while {what}{where}: "
                f"{exc}\n"
                "The cluster is half built. Remove what was made with "
                f"`flowerbed cluster down {self.inventory.path}`, fix the cause, and "
                "run `cluster up` again.",
                node,
                network,
            ) from exc


def _converge_addresses(
    executor: Executor, dev: str, wanted: ipaddress.IPv4Interface
) -> None:
    for present in read_addresses(executor, dev):
        if present != wanted:
            executor.run(netcmd.addr_del(dev, present))
    executor.run(netcmd.addr_replace(dev, wanted))


def _ensure_bridge(
    b: _Builder, bridge: BridgePlan, host_links: Mapping[str, Any]
) -> None:
    with b.step(f"creating bridge {bridge.name}", network=bridge.network):
        if bridge.name not in host_links:
            b.host.run(netcmd.bridge_add(bridge.name, bridge.mac))
        alias = f"flowerbed {b.inventory.name} network {bridge.network}"
        b.host.run(netcmd.link_alias(bridge.name, alias))
        b.host.run(netcmd.disable_ipv6(bridge.name), check=False)
        _converge_addresses(b.host, bridge.name, bridge.address)
        b.host.run(netcmd.link_up(bridge.name))


def _ensure_namespace(b: _Builder, node: NodePlan, existing: set[str]) -> None:
    with b.step(f"creating namespace {node.namespace}", node=node.host):
        if node.namespace not in existing:
            b.host.run(netcmd.netns_add(node.namespace))
        ns = b.netns(node.namespace)
        ns.run(netcmd.lo_up())
        ns.run(netcmd.disable_ipv6_namespace(), check=False)
        ns.run(netcmd.rp_filter_off_namespace())


def _ensure_link(b: _Builder, link: LinkPlan, host_links: Mapping[str, Any]) -> None:
    ns = b.netns(link.namespace)
    with b.step(
        f"creating veth {link.host_side}/{link.node_ifname}", link.node, link.network
    ):
        node_links = read_links(ns)
        host_link = host_links.get(link.host_side)
        node_link = node_links.get(link.node_ifname)
        if not veths_paired(host_link, node_link):
            # A leftover half (from an interrupted up) is ours by name: replace it.
            if host_link is not None:
                b.host.run(netcmd.link_del(link.host_side))
            if node_link is not None:
                ns.run(netcmd.link_del(link.node_ifname))
            b.host.run(
                netcmd.veth_add(link.host_side, link.node_ifname, link.namespace)
            )
        alias = f"flowerbed {b.inventory.name} {link.node} {link.network}"
        b.host.run(netcmd.link_alias(link.host_side, alias))
        b.host.run(netcmd.disable_ipv6(link.host_side), check=False)
        b.host.run(netcmd.link_set_master(link.host_side, link.bridge))
        b.host.run(netcmd.link_up(link.host_side))
    with b.step(f"addressing {link.node_ifname}", link.node, link.network):
        _converge_addresses(ns, link.node_ifname, link.address)
        ns.run(netcmd.link_up(link.node_ifname))


def _apply_shape(
    executor: Executor, shape: ShapePlan, features: EmulationFeatures, shaper: Shaper
) -> None:
    with_delay = shape.wants_delay and features.delay
    kind = "htb" if with_delay else shaper
    installed = read_qdiscs(executor, shape.device)
    root = next((q for q in installed if q.parent == "root"), None)
    ours = root is not None and root.kind == kind and root.handle == shaping.ROOT_HANDLE
    if root is not None and root.kind != "noqueue" and not ours:
        executor.run(shaping.qdisc_del_root(shape.device))
        installed = []
    commands = shaping.egress_shaping(
        shape.device,
        shape.rate_mbit,
        shape.delay_ms if with_delay else 0.0,
        shape.jitter_ms if with_delay else 0.0,
        kind,
        htb_root_present=ours and kind == "htb",
    )
    for argv in commands:
        executor.run(argv)
    stale_leaf = any(q.kind == "netem" for q in installed)
    if stale_leaf and not with_delay:
        executor.run(shaping.qdisc_del_leaf(shape.device))


def _apply_link_shaping(
    b: _Builder, link: LinkPlan, features: EmulationFeatures, shaper: Shaper
) -> None:
    for shape in (link.downlink, link.uplink):
        if shape is None:
            continue
        executor = b.host if shape.namespace is None else b.netns(shape.namespace)
        what = (
            f"shaping {shape.direction} on {shape.device} to {shape.rate_mbit:g} Mbit/s"
        )
        with b.step(what, link.node, link.network):
            _apply_shape(executor, shape, features, shaper)


def _apply_loss(b: _Builder, node: NodePlan, features: EmulationFeatures) -> None:
    if not features.loss:
        return
    ns = b.netns(node.namespace)
    with b.step(f"installing loss rules in {node.namespace}", node.host):
        # The namespace is ours alone, so its INPUT/OUTPUT chains hold only our rules:
        # flushing them makes a changed profile converge.
        ns.run(shaping.iptables_flush("OUTPUT"))
        ns.run(shaping.iptables_flush("INPUT"))
        for link in node.links:
            for rule in link.loss:
                ns.run(shaping.iptables_append(rule))


def _start_delay(
    b: _Builder, plan: ClusterPlan, features: EmulationFeatures
) -> FeatureUse:
    """(Re)start the delay line where the kernel has no netem; say what delays."""
    try:
        line = delay.plan_delay_line(b.inventory, plan, delay.max_mbit())
    except ValueError as exc:
        raise ClusterUpError(
            f"cluster up of {b.inventory.name} cannot plan its delay line: {exc}"
        ) from exc
    with b.step("removing the previous delay line's rules"):
        delay.remove_rules(b.host, plan.cluster, plan.bridge_names, plan.namespaces)
    delay.stop(plan.cluster)
    if delay.delay_mechanism(features) != "delay-line" or not line.queues:
        return delay.delay_use(b.inventory, features, line, False, "not started")
    base = delay.free_host_base(plan.cluster, line.host_queue_count)
    if base != line.host_base:
        line = delay.plan_delay_line(b.inventory, plan, line.limit_mbit, base)
    pid = delay.start(line)
    with b.step("installing the delay line's NFQUEUE rules"):
        delay.install_rules(b.host, line)
    how = f"one process, pid {pid}, {delay.scheduling(plan.cluster)}"
    return delay.delay_use(b.inventory, features, line, True, how)


def _start_replay(b: _Builder, plan: ClusterPlan, shaper: Shaper) -> FeatureUse:
    """(Re)start the trace replay when a profile names a trace; say what replays."""
    replay.stop(plan.cluster)
    replays = replay.plan_replay(b.inventory, plan, shaper)
    requested = replay.requested_networks(b.inventory)
    pid = replay.start(replays) if replays.links else None
    return replay.replay_use(replays, pid, requested)


def cluster_up(
    inventory: Inventory,
    executor: Executor | None = None,
    features: EmulationFeatures | None = None,
    *,
    shaper: Shaper = "htb",
    loss_mode: LossMode = "random",
    check_host: bool = True,
    ssh: bool = True,
) -> ClusterState:
    """Build (or converge to) the emulated cluster of ``inventory``; return its state.

    With ``ssh`` and a management network, every node also runs an sshd on its
    management address (``testbed/emulation/sshd.py``).

    Safe to run twice: existing pieces are detected and kept, qdiscs re-applied with
    ``replace``. ``features`` defaults to ``detect_features()``; delay and jitter are
    applied only when it reports netem, and are otherwise recorded as not emulated.
    ``check_host`` refuses to start when the host firewall or routes would break the
    cluster. A failure part-way raises ``ClusterUpError`` telling how to clean up.
    """
    host = executor if executor is not None else LocalExecutor()
    if isinstance(host, LocalExecutor):
        require_root("flowerbed cluster up")
    plan = plan_cluster(inventory, loss_mode)
    b = _Builder(inventory, host)
    with b.step("probing the kernel's emulation features"):
        features = features if features is not None else detect_features(host)
    if not features.rate:
        raise ClusterUpError(
            f"cannot emulate link rates on {host.where}: "
            f"{features.details.get('rate')}; "
            "the kernel needs sch_htb or sch_tbf"
        )
    if check_host:
        with b.step("checking the host's firewall and routes"):
            problems = host_firewall_problems(plan, host) + subnet_conflicts(plan, host)
        if problems:
            raise ClusterUpError(
                f"cluster up of {inventory.name} refused, nothing was created:\n- "
                + "\n- ".join(problems)
            )
    with b.step("listing links and namespaces"):
        host_links = read_links(host)
        namespaces = read_namespaces(host)
    for bridge in plan.bridges:
        _ensure_bridge(b, bridge, host_links)
    for node in plan.nodes:
        _ensure_namespace(b, node, namespaces)
        for link in node.links:
            _ensure_link(b, link, host_links)
            _apply_link_shaping(b, link, features, shaper)
        _apply_loss(b, node, features)
    traced = _start_replay(b, plan, shaper)
    delayed = _start_delay(b, plan, features)
    uses = (
        *feature_uses(inventory, features, shaper, loss_mode, delayed),
        traced,
        _limit_cpu(b),
    )
    servers = None
    if ssh and inventory.management is not None:
        with b.step("starting sshd in the nodes"):
            servers = ssh_up(inventory, node_namespaces(inventory), host)
    return ClusterState(plan, features, uses, shaper, servers)


def _limit_cpu(b: _Builder) -> FeatureUse:
    """Give every node its cgroups (testbed/emulation/cgroups.py); a machine
    without a CPU controller, or one that refuses, gets the reason instead."""
    version = cgroups.detect_version()
    if os.environ.get(cgroups.SWITCH_ENV, "1") == "0":
        if version is not None:  # groups of an earlier `up` go (unless busy)
            nodes = [h.name for h in b.inventory.clients]
            for argv in cgroups.remove_argvs(version, b.inventory.name, nodes):
                b.host.run(argv, check=False)
        return FeatureUse(
            "cpu",
            False,
            False,
            f"turned off ({cgroups.SWITCH_ENV}=0 at cluster up): nodes share the cores",
        )
    if version is None:
        return FeatureUse(
            "cpu", True, False, "no cgroup CPU controller here: nodes share the cores"
        )
    cores = os.cpu_count() or 1
    limits = cgroups.plan_limits(b.inventory, cores)
    for limit in limits:
        for argv in cgroups.setup_argvs(version, b.inventory.name, limit):
            done = b.host.run(argv, check=False)
            if done.returncode != 0:
                return FeatureUse(
                    "cpu",
                    True,
                    False,
                    f"cgroup {version} refused `{' '.join(argv)}`: "
                    f"{done.stderr.strip()[-300:]}; nodes share the cores",
                )
    return FeatureUse(
        "cpu", True, True, cgroups.describe_limits(version, limits, cores)
    )


# --- tearing down -------------------------------------------------------------------


@dataclass(frozen=True)
class TeardownReport:
    """What ``cluster down`` removed, and processes that outlived their namespace."""

    removed: tuple[str, ...]
    lingering_pids: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __str__(self) -> str:
        text = f"{len(self.removed)} piece(s)"
        if self.removed:
            text += ": " + ", ".join(self.removed)
        for namespace, pids in self.lingering_pids.items():
            why = (
                "it stays until they end; stop them yourself"
                if namespace.startswith("cgroup ")
                else "it is detached from its devices; stop them yourself"
            )
            text += (
                f"; processes {' '.join(map(str, pids))} were still running in "
                f"{namespace} ({why})"
            )
        return text


def _planned_names(inventory: Inventory) -> tuple[list[str], list[str], list[str]]:
    """Namespaces, host-side veths and bridges, without validating addresses."""
    networks = [*inventory.network_names, *management_names(inventory)]
    namespaces, veths = [], []
    for host in inventory.clients:
        namespaces.append(node_namespace(inventory, host.name))
        on = [
            i.network for i in host.interfaces if i.network in inventory.network_names
        ]
        on += management_names(inventory)
        veths += [host_side_veth(inventory, host.name, net) for net in on]
    bridges = [bridge_name(inventory, net) for net in networks]
    return namespaces, veths, bridges


def _run_ignoring_absence(host: Executor, argv: list[str]) -> bool:
    """Run a delete; return False if the thing was already gone."""
    result = host.run(argv, check=False)
    if result.returncode == 0:
        return True
    gone = ("Cannot find device", "No such file", "does not exist", "Cannot open")
    if any(text in result.stderr for text in gone):
        return False
    raise CommandError(argv, host.where, result.returncode, result.stderr)


def cluster_down(
    inventory: Inventory, executor: Executor | None = None
) -> TeardownReport:
    """Remove ``inventory``'s namespaces, host-side veths (and qdiscs) and bridges.

    Only names derived from the inventory are touched; missing pieces are fine.
    Host-side veths go first (which removes their node ends at once, even while a
    process keeps a namespace alive), then namespaces, then bridges.
    """
    host = executor if executor is not None else LocalExecutor()
    if isinstance(host, LocalExecutor):
        require_root("flowerbed cluster down")
    try:
        return _teardown(inventory, host)
    except CommandError as exc:
        raise EmulationError(
            f"cluster down of {inventory.name} failed: {exc}\nFix the cause and run "
            f"`flowerbed cluster down {inventory.path}` again; what is already gone "
            "is skipped."
        ) from exc


def _teardown(inventory: Inventory, host: Executor) -> TeardownReport:
    namespaces, veths, bridges = _planned_names(inventory)
    host_links = read_links(host)
    removed: list[str] = [
        f"sshd@{name}" for name in ssh_down(inventory, node_namespaces(inventory))
    ]
    present = sorted(set(namespaces) & read_namespaces(host))
    removed += delay.remove_rules(host, inventory.name, tuple(bridges), tuple(present))
    stopped = delay.stop(inventory.name)
    if stopped is not None:
        removed.append(f"delay-line pid {stopped}")
    replayed = replay.stop(inventory.name)
    if replayed is not None:
        removed.append(f"trace-replay pid {replayed}")
    replay.forget(inventory.name)
    delay.forget(inventory.name)
    for veth in veths:
        if veth in host_links and _run_ignoring_absence(host, netcmd.link_del(veth)):
            removed.append(veth)
    existing = read_namespaces(host)
    lingering: dict[str, tuple[int, ...]] = {}
    for namespace in namespaces:
        if namespace not in existing:
            continue
        pids = host.run(netcmd.netns_pids(namespace), check=False).stdout.split()
        if pids:
            lingering[namespace] = tuple(int(p) for p in pids if p.isdigit())
        if _run_ignoring_absence(host, netcmd.netns_del(namespace)):
            removed.append(namespace)
    for bridge in bridges:
        if bridge in host_links and _run_ignoring_absence(
            host, netcmd.link_del(bridge)
        ):
            removed.append(bridge)
    removed += _remove_cgroups(inventory, host, lingering)
    return TeardownReport(tuple(removed), lingering)


def _remove_cgroups(
    inventory: Inventory, host: Executor, lingering: dict[str, tuple[int, ...]]
) -> list[str]:
    """rmdir the cluster's cgroups; a group still holding processes stays, and its
    processes are reported (in ``lingering``) rather than killed."""
    version = cgroups.detect_version()
    if version is None:
        return []
    removed = []
    nodes = [h.name for h in inventory.clients]
    for argv in cgroups.remove_argvs(version, inventory.name, nodes):
        done = host.run(argv, check=False)
        if done.returncode == 0:
            removed.append(f"cgroup {argv[-1]}")
        elif "Device or resource busy" in done.stderr:
            procs = host.run(["cat", f"{argv[-1]}/cgroup.procs"], check=False)
            pids = tuple(int(p) for p in procs.stdout.split() if p.isdigit())
            if pids:
                lingering[f"cgroup {argv[-1]}"] = pids
    return removed
