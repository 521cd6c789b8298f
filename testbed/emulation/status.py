"""What is really installed for the emulated cluster: read back, compared with the
plan, and described for people (``cluster status``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inventory.models import Inventory
from testbed.commands import shaping
from testbed.commands.shaping import Direction, LossRule
from testbed.emulation import cgroups, delay, replay
from testbed.emulation.errors import EmulationError, require_root
from testbed.emulation.features import EmulationFeatures, detect_features
from testbed.emulation.naming import node_namespaces
from testbed.emulation.plan import (
    ClusterPlan,
    ClusterState,
    FeatureUse,
    LinkPlan,
    ShapePlan,
    emulation_manifest,
    plan_cluster,
)
from testbed.emulation.readback import (
    read_addresses,
    read_links,
    read_namespaces,
    read_qdiscs,
    veths_paired,
)
from testbed.emulation.sshd import plan_ssh, sshd_state
from testbed.transport.executor import (
    CommandError,
    Executor,
    LocalExecutor,
    NetnsExecutor,
)

# --- status -------------------------------------------------------------------------


@dataclass(frozen=True)
class EgressStatus:
    """Shaping found on one veth end's egress, against what the plan asks."""

    device: str
    direction: Direction
    expected_rate_bit: int | None
    installed_rate_bit: int | None
    qdiscs: tuple[str, ...]
    delay_installed: bool
    traced: bool = False

    @property
    def rate_ok(self) -> bool:
        """Whether the installed rate equals the planned one (or none is planned);
        a traced direction's rate moves, so any installed rate will do."""
        if self.traced:
            return self.installed_rate_bit is not None
        return self.expected_rate_bit == self.installed_rate_bit


@dataclass(frozen=True)
class LinkStatus:
    """One node's interface on one network, as found on the machine."""

    network: str
    node_ifname: str
    host_side: str
    present: bool
    up: bool
    addresses: tuple[str, ...]
    expected_address: str
    downlink: EgressStatus | None
    uplink: EgressStatus | None
    loss_rules: tuple[LossRule, ...]
    expected_loss_rules: tuple[LossRule, ...]

    @property
    def ok(self) -> bool:
        """Present, up, addressed, shaped and lossy as planned."""
        shaped = all(e.rate_ok for e in (self.downlink, self.uplink) if e is not None)
        return (
            self.present
            and self.up
            and self.expected_address in self.addresses
            and shaped
            and self.loss_ok
        )

    @property
    def loss_ok(self) -> bool:
        """Whether every planned loss rule is installed, in either loss mode."""
        return all(
            any(_same_loss(rule, found) for found in self.loss_rules)
            for rule in self.expected_loss_rules
        )


def _same_loss(planned: LossRule, found: LossRule) -> bool:
    # status plans in random mode; an ``up --loss-mode nth`` rule is the same loss
    as_found = shaping.loss_rule(
        planned.direction, planned.ifname, planned.loss_share * 100, found.mode
    )
    return as_found is not None and as_found.matches(found)


@dataclass(frozen=True)
class NodeStatus:
    """One client's namespace and links."""

    host: str
    namespace: str
    exists: bool
    links: tuple[LinkStatus, ...]
    # The node's sshd (clusters with a management network): "listening on
    # ADDR:PORT (pid N)", "not running", ...; "" where there is none to run.
    sshd: str = ""


@dataclass(frozen=True)
class BridgeStatus:
    """One network's bridge in the host namespace."""

    name: str
    network: str
    exists: bool
    up: bool
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class ClusterStatus:
    """The emulated cluster as found on the machine, with what is really emulated."""

    cluster: str
    bridges: tuple[BridgeStatus, ...]
    nodes: tuple[NodeStatus, ...]
    emulation: tuple[FeatureUse, ...]

    @property
    def is_up(self) -> bool:
        """Whether every bridge, namespace and link is present and as planned."""
        return (
            all(b.exists and b.up for b in self.bridges)
            and all(n.exists for n in self.nodes)
            and all(link.ok for n in self.nodes for link in n.links)
        )

    @property
    def is_down(self) -> bool:
        """Whether none of the cluster's bridges, namespaces or links exist."""
        return not any(b.exists for b in self.bridges) and not any(
            n.exists or any(link.present for link in n.links) for n in self.nodes
        )


def _is_up(link: Mapping[str, Any] | None) -> bool:
    return link is not None and "UP" in link.get("flags", [])


def _egress_status(executor: Executor, shape: ShapePlan | None) -> EgressStatus | None:
    if shape is None:
        return None
    qdiscs = read_qdiscs(executor, shape.device)
    classes = shaping.parse_class_show(
        executor.run(shaping.class_show(shape.device)).stdout
    )
    root = next((q for q in qdiscs if q.parent == "root"), None)
    rate: int | None = None
    if root is not None and root.kind == "tbf":
        rate = root.rate_bit
    elif root is not None and root.kind == "htb":
        cls = next((c for c in classes if c.classid == shaping.CLASS_ID), None)
        rate = cls.rate_bit if cls is not None else None
    return EgressStatus(
        device=shape.device,
        direction=shape.direction,
        expected_rate_bit=shaping.rate_bits(shape.rate_mbit),
        installed_rate_bit=rate,
        qdiscs=tuple(f"{q.kind} {q.handle} {q.parent}" for q in qdiscs),
        delay_installed=any(q.kind == "netem" for q in qdiscs),
        traced=shape.traced,
    )


def _link_status(
    host: Executor,
    ns: Executor | None,
    link: LinkPlan,
    host_links: Mapping[str, Any],
    loss_rules: list[LossRule],
) -> LinkStatus:
    node_links = read_links(ns) if ns is not None else {}
    node_link = node_links.get(link.node_ifname)
    present = ns is not None and veths_paired(host_links.get(link.host_side), node_link)
    addresses: tuple[str, ...] = ()
    downlink = uplink = None
    if present and ns is not None:
        addresses = tuple(
            a.with_prefixlen for a in read_addresses(ns, link.node_ifname)
        )
        downlink = _egress_status(host, link.downlink)
        uplink = _egress_status(ns, link.uplink)
    return LinkStatus(
        network=link.network,
        node_ifname=link.node_ifname,
        host_side=link.host_side,
        present=present,
        up=present and _is_up(node_link) and _is_up(host_links.get(link.host_side)),
        addresses=addresses,
        expected_address=link.address.with_prefixlen,
        downlink=downlink,
        uplink=uplink,
        loss_rules=tuple(r for r in loss_rules if r.ifname == link.node_ifname),
        expected_loss_rules=link.loss,
    )


def _status_uses(
    inventory: Inventory, nodes: list[NodeStatus], features: EmulationFeatures | None
) -> tuple[FeatureUse, ...]:
    links = [link for node in nodes for link in node.links]
    egress = [
        e for link in links for e in (link.downlink, link.uplink) if e is not None
    ]
    lossy = tuple(n.name for n in inventory.networks if n.profile.loss_pct > 0)
    delayed = tuple(n.name for n in inventory.networks if n.profile.needs_delay)
    rate_ok = bool(egress) and all(e.rate_ok for e in egress)
    loss_ok = bool(lossy) and all(link.loss_ok for link in links)
    delay_links = [link for link in links if link.network in delayed]
    delay_ok = bool(delay_links) and all(
        e.delay_installed
        for link in delay_links
        for e in (link.downlink, link.uplink)
        if e is not None
    )
    found = "as found installed" if rate_ok else "planned rates not all installed"
    why_loss = "iptables statistic DROP rules in the node namespaces"
    if not lossy:
        why_loss = "no profile asks for loss"
    elif not loss_ok:
        why_loss = "planned iptables loss rules are missing"
    why_delay = "tc netem leaves installed"
    if not delayed:
        why_delay = "no profile asks for delay or jitter"
    elif not delay_ok:
        why_delay = "no netem leaf installed"
        if features is not None and not features.delay:
            why_delay += f": {features.details.get('delay', 'tc netem unavailable')}"
    return (
        FeatureUse(
            "rate",
            True,
            rate_ok,
            f"tc egress shaping, {found}",
            inventory.network_names,
        ),
        FeatureUse(
            "loss",
            bool(lossy),
            loss_ok,
            why_loss,
            lossy,
        ),
        FeatureUse("delay", bool(delayed), delay_ok, why_delay, delayed),
    )


def cluster_status(
    inventory: Inventory,
    executor: Executor | None = None,
    features: EmulationFeatures | None = None,
) -> ClusterStatus:
    """Read back what of ``inventory``'s cluster exists and what it really emulates."""
    host = executor if executor is not None else LocalExecutor()
    if isinstance(host, LocalExecutor):
        require_root("flowerbed cluster status")
    plan = plan_cluster(inventory)
    try:
        return _status(inventory, plan, host, features)
    except CommandError as exc:
        raise EmulationError(
            f"cluster status of {inventory.name} could not read the machine: {exc}"
        ) from exc


def _status(
    inventory: Inventory,
    plan: ClusterPlan,
    host: Executor,
    features: EmulationFeatures | None,
) -> ClusterStatus:
    host_links = read_links(host)
    namespaces = read_namespaces(host)
    bridges = tuple(
        BridgeStatus(
            name=bridge.name,
            network=bridge.network,
            exists=bridge.name in host_links,
            up=_is_up(host_links.get(bridge.name)),
            addresses=tuple(a.with_prefixlen for a in read_addresses(host, bridge.name))
            if bridge.name in host_links
            else (),
        )
        for bridge in plan.bridges
    )
    sshd: dict[str, str] = {}
    if inventory.management is not None:
        ssh_plan = plan_ssh(inventory, node_namespaces(inventory))
        sshd = {
            n.host: sshd_state(n, host) if n.namespace in namespaces else "not running"
            for n in ssh_plan.nodes
        }
    nodes = []
    for node in plan.nodes:
        exists = node.namespace in namespaces
        ns = NetnsExecutor(node.namespace, host) if exists else None
        loss_rules: list[LossRule] = []
        if ns is not None and any(link.loss for link in node.links):
            listing = ns.run(shaping.iptables_rules(), check=False).stdout
            loss_rules = shaping.parse_loss_rules(listing)
        links = tuple(
            _link_status(host, ns, link, host_links, loss_rules) for link in node.links
        )
        nodes.append(
            NodeStatus(
                node.host, node.namespace, exists, links, sshd.get(node.host, "")
            )
        )
    delayed = any(n.profile.needs_delay for n in inventory.networks)
    if features is None and delayed and any(node.exists for node in nodes):
        features = detect_features(host)  # to say *why* no netem leaf is there
    uses = _status_uses(inventory, nodes, features)
    if features is not None and delay.delay_mechanism(features) == "delay-line":
        uses = (*uses[:2], _delay_line_use(inventory, plan, host, features))
    if inventory_traced := replay.requested_networks(inventory):
        replays = replay.plan_replay(inventory, plan)
        pid = replay.running_pid(plan.cluster)
        uses = (*uses, replay.replay_use(replays, pid, inventory_traced))
    if any(node.exists for node in nodes):
        uses = (*uses, cpu_use(inventory))
    return ClusterStatus(inventory.name, bridges, tuple(nodes), uses)


def _delay_line_use(
    inventory: Inventory,
    plan: ClusterPlan,
    host: Executor,
    features: EmulationFeatures,
) -> FeatureUse:
    line = delay.plan_in_use(inventory, plan)
    pid = delay.running_pid(plan.cluster)
    found, wanted = delay.installed_rule_count(host, line)
    if pid is None:
        how = f"process NOT running, {found}/{wanted} NFQUEUE rules and jumps"
    else:
        how = f"one process, pid {pid}, {delay.scheduling(plan.cluster)}, "
        how += f"{found}/{wanted} NFQUEUE rules and jumps"
    serving = pid is not None and found == wanted
    return delay.delay_use(inventory, features, line, serving, how)


def is_up(status: ClusterStatus) -> bool:
    """Whether every bridge, namespace and link of the cluster is present as planned."""
    return status.is_up


def manifest_features(
    found: ClusterStatus | ClusterState,
) -> dict[str, dict[str, Any]]:
    """Return ``{rate|loss|delay: {requested, active, detail, networks}}``."""
    return emulation_manifest(found.emulation)


def _mbit(bits: int | None) -> str:
    return "none" if bits is None else f"{bits / 1e6:g} Mbit/s"


def _describe_uses(uses: tuple[FeatureUse, ...]) -> list[str]:
    lines = []
    for use in uses:
        state = "active" if use.active else "NOT emulated"
        if not use.requested:
            state = "not requested"
        lines.append(f"  {use.feature}: {state} ({use.detail})")
    return lines


def describe_state(state: ClusterState) -> str:
    """Return a human summary of what ``cluster up`` built."""
    plan = state.plan
    lines = [
        f"cluster {plan.cluster}: {len(plan.nodes)} node(s), "
        f"{len(plan.bridges)} bridge(s), shaper {state.shaper}"
    ]
    for bridge in plan.bridges:
        lines.append(
            f"  bridge {bridge.name}: network {bridge.network}, server {bridge.address}"
        )
    for node in plan.nodes:
        lines.append(f"  node {node.host}: namespace {node.namespace}")
        for link in node.links:
            shaping_text = (
                "unshaped"
                if link.downlink is None or link.uplink is None
                else f"down {link.downlink.rate_mbit:g}"
                f"{' traced' if link.downlink.traced else ''} / "
                f"up {link.uplink.rate_mbit:g}"
                f"{' traced' if link.uplink.traced else ''} Mbit/s"
            )
            lines.append(
                f"    {link.network}: {link.node_ifname} {link.address} "
                f"<-> {link.host_side} ({shaping_text})"
            )
    if state.ssh is not None:
        lines.append(
            f"ssh: every node's sshd on its management address; user key "
            f"{state.ssh.user_key}, host keys in {state.ssh.known_hosts}"
        )
    lines.append("emulation:")
    lines += _describe_uses(state.emulation)
    return "\n".join(lines)


def describe_status(status: ClusterStatus) -> str:
    """Return a human summary of what is really installed."""
    verdict = "up" if status.is_up else ("down" if status.is_down else "INCOMPLETE")
    lines = [f"cluster {status.cluster}: {verdict}"]
    for bridge in status.bridges:
        state = "up" if bridge.up else ("down" if bridge.exists else "missing")
        lines.append(
            f"  bridge {bridge.name} ({bridge.network}): {state} "
            f"{' '.join(bridge.addresses)}"
        )
    for node in status.nodes:
        lines.append(
            f"  node {node.host}: namespace {node.namespace} "
            f"{'present' if node.exists else 'missing'}"
        )
        for link in node.links:
            if not link.present:
                lines.append(f"    {link.network}: {link.node_ifname} missing")
                continue
            parts = [
                f"{link.network}: {link.node_ifname} {'up' if link.up else 'DOWN'}",
                " ".join(link.addresses) or "no address",
            ]
            for egress in (link.downlink, link.uplink):
                if egress is not None:
                    mark = "" if egress.rate_ok else " (planned "
                    mark += (
                        "" if egress.rate_ok else f"{_mbit(egress.expected_rate_bit)})"
                    )
                    traced = " (traced, now)" if egress.traced else ""
                    parts.append(
                        f"{egress.direction} {_mbit(egress.installed_rate_bit)}"
                        f"{traced}{mark}"
                    )
            if link.loss_rules:
                shares = ", ".join(
                    f"{r.direction} {r.loss_share:.1%}" for r in link.loss_rules
                )
                parts.append(f"loss {shares}")
            lines.append("    " + ", ".join(parts))
        if node.sshd:
            lines.append(f"    sshd: {node.sshd}")
    lines.append("emulation:")
    lines += _describe_uses(status.emulation)
    return "\n".join(lines)


def cpu_use(inventory: Inventory, cores: int | None = None) -> FeatureUse:
    """The ``cpu`` feature as installed: every node's group and quota, read back."""
    cores = cores or os.cpu_count() or 1
    version = cgroups.detect_version()
    if version is None:
        return FeatureUse(
            "cpu", True, False, "no cgroup CPU controller here: nodes share the cores"
        )
    found = []
    for host in inventory.clients:
        quota = cgroups.read_quota(version, inventory.name, host.name)
        if quota is None:
            return FeatureUse(
                "cpu",
                True,
                False,
                f"{host.name} has no cgroup: turned off at `cluster up`"
                f" ({cgroups.SWITCH_ENV}=0) or refused by this machine; nodes share"
                " the cores",
            )
        source = cgroups.limits_source(host)
        found.append(cgroups.NodeLimits(host.name, quota, host.memory_mb, source))
    return FeatureUse(
        "cpu", True, True, cgroups.describe_limits(version, tuple(found), cores)
    )
