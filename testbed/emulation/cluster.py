"""The emulated cluster: an inventory built here from namespaces, veths, bridges, tc.

``plan_cluster`` turns an inventory into data (names, addresses, shaping, loss
rules) without touching the machine; ``cluster_up`` converges the machine to the
plan, ``cluster_down`` removes exactly the plan's pieces, ``cluster_status`` reads
back what is really installed. See docs/emulation.md.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from inventory.models import Host, Inventory, Network, is_valid_ifname, is_valid_name
from testbed.commands import netcmd
from testbed.commands import shaping
from testbed.emulation.sshd import ClusterSSH, plan_ssh, ssh_down, ssh_up, sshd_state
from testbed.transport.executor import (
    CommandError,
    Executor,
    LocalExecutor,
    NetnsExecutor,
)
from testbed.emulation.features import EmulationFeatures, detect_features
from testbed.commands.shaping import Direction, LossMode, LossRule, Shaper

NAMESPACE_PREFIX = "fb-"
BRIDGE_PREFIX = "fbb"
VETH_PREFIX = "fbv"
MGMT_IFNAME = "mgmt0"
_HASH_CHARS = 10  # fbb/fbv + 10 hex = 13 chars, under Linux's 15-byte limit
_RESERVED_IFNAMES = frozenset({"lo", MGMT_IFNAME})


class EmulationError(RuntimeError):
    """Base of this module's errors; the message says what, where and what to do."""


class PlanError(EmulationError, ValueError):
    """The inventory cannot be built as an emulated cluster; the message says why."""


class RootRequiredError(EmulationError, PermissionError):
    """An action needs root; the message says what and how to run it."""


class ClusterUpError(EmulationError):
    """``cluster up`` failed; the message names step, node, network and the cleanup."""

    def __init__(
        self, message: str, node: str | None = None, network: str | None = None
    ) -> None:
        super().__init__(message)
        self.node = node
        self.network = network


# --- names ------------------------------------------------------------------


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:_HASH_CHARS]


def _network_key(inventory: Inventory, network: str) -> str:
    if network in inventory.network_names:
        return f"net:{network}"
    if inventory.management is not None and network == inventory.management.name:
        return f"mgmt:{network}"
    known = ", ".join([*inventory.network_names, *_management_names(inventory)])
    raise KeyError(
        f"unknown network {network!r}; inventory {inventory.name} has: {known}"
    )


def _management_names(inventory: Inventory) -> list[str]:
    return [inventory.management.name] if inventory.management is not None else []


def node_namespace(inventory: Inventory, host_name: str) -> str:
    """Return the namespace emulating client ``host_name``: ``fb-<cluster>-<host>``."""
    inventory.client(host_name)  # KeyError for an unknown client
    return f"{NAMESPACE_PREFIX}{inventory.name}-{host_name}"


def bridge_name(inventory: Inventory, network: str) -> str:
    """Return the host-namespace bridge emulating ``network`` (``fbb`` + hash)."""
    return BRIDGE_PREFIX + _short_hash(inventory.name, _network_key(inventory, network))


def host_side_veth(inventory: Inventory, host_name: str, network: str) -> str:
    """Return the server-side (host namespace) veth of ``host_name`` on ``network``.

    This is where downlink shaping sits and where a capture sees the node's traffic.
    """
    inventory.client(host_name)
    key = _network_key(inventory, network)
    return VETH_PREFIX + _short_hash(inventory.name, host_name, key)


def _bridge_mac(name: str) -> str:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return "02:fb:" + ":".join(digest[i : i + 2] for i in range(0, 8, 2))


# --- the plan -----------------------------------------------------------------


@dataclass(frozen=True)
class BridgePlan:
    """A host-namespace bridge standing for one network, with the server's address."""

    name: str
    network: str
    address: ipaddress.IPv4Interface
    mac: str
    management: bool = False


@dataclass(frozen=True)
class ShapePlan:
    """Egress shaping of one veth end in one direction (``namespace`` None = host)."""

    device: str
    namespace: str | None
    direction: Direction
    rate_mbit: float
    delay_ms: float = 0.0
    jitter_ms: float = 0.0

    @property
    def wants_delay(self) -> bool:
        """Whether this direction asks for netem delay or jitter."""
        return self.delay_ms > 0 or self.jitter_ms > 0


@dataclass(frozen=True)
class LinkPlan:
    """One veth pair: client ``node`` attached to ``network``'s bridge."""

    node: str
    network: str
    namespace: str
    host_side: str
    node_ifname: str
    bridge: str
    address: ipaddress.IPv4Interface
    management: bool = False
    downlink: ShapePlan | None = None
    uplink: ShapePlan | None = None
    loss: tuple[LossRule, ...] = ()


@dataclass(frozen=True)
class NodePlan:
    """One client emulated by a network namespace and its links."""

    host: str
    namespace: str
    links: tuple[LinkPlan, ...]


@dataclass(frozen=True)
class ClusterPlan:
    """Everything ``cluster up`` builds, as data with deterministic names."""

    cluster: str
    bridges: tuple[BridgePlan, ...]
    nodes: tuple[NodePlan, ...]
    loss_mode: LossMode = "random"

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The node namespaces, in client order."""
        return tuple(node.namespace for node in self.nodes)

    @property
    def links(self) -> tuple[LinkPlan, ...]:
        """Every veth pair of every node."""
        return tuple(link for node in self.nodes for link in node.links)

    @property
    def host_side_veths(self) -> tuple[str, ...]:
        """The host-namespace ends of every veth pair."""
        return tuple(link.host_side for link in self.links)

    @property
    def bridge_names(self) -> tuple[str, ...]:
        """The bridges, networks under test first, management last."""
        return tuple(bridge.name for bridge in self.bridges)

    @property
    def shaping(self) -> tuple[ShapePlan, ...]:
        """Every egress shaping, downlink and uplink."""
        shapes = []
        for link in self.links:
            shapes += [s for s in (link.downlink, link.uplink) if s is not None]
        return tuple(shapes)

    @property
    def loss_rules(self) -> tuple[tuple[str, LossRule], ...]:
        """Every loss rule with the namespace it lives in."""
        return tuple(
            (link.namespace, rule) for link in self.links for rule in link.loss
        )

    def names(self) -> dict[str, str]:
        """Map each generated name to what it stands for (for logs and ``status``)."""
        mapping = {b.name: f"bridge of network {b.network}" for b in self.bridges}
        for node in self.nodes:
            mapping[node.namespace] = f"namespace of node {node.host}"
            for link in node.links:
                mapping[link.host_side] = (
                    f"server-side veth of {link.node} on {link.network}"
                    f" (node side {link.node_ifname})"
                )
        return mapping

    def link(self, host: str, network: str) -> LinkPlan:
        """Return the link of ``host`` on ``network``."""
        for link in self.links:
            if link.node == host and link.network == network:
                return link
        raise KeyError(f"node {host!r} has no link on network {network!r}")


def _prefixed(
    network: Network, address: ipaddress.IPv4Address
) -> ipaddress.IPv4Interface:
    return ipaddress.IPv4Interface(f"{address}/{network.subnet.prefixlen}")


def _check_address(
    inventory: Inventory, network: Network, address: ipaddress.IPv4Address, who: str
) -> None:
    where = f"inventory {inventory.path}, network {network.name}"
    if address not in network.subnet:
        raise PlanError(
            f"{where}: {who}'s address {address} is outside {network.subnet}"
        )
    if network.subnet.prefixlen < 31 and address in (
        network.subnet.network_address,
        network.subnet.broadcast_address,
    ):
        raise PlanError(f"{where}: {who}'s address {address} is not a host address")


def _check_subnets(inventory: Inventory) -> list[Network]:
    networks = [*inventory.networks]
    if inventory.management is not None:
        if inventory.management.name in inventory.network_names:
            raise PlanError(
                f"inventory {inventory.path}: management network "
                f"{inventory.management.name!r} has the name of a network under test"
            )
        networks.append(inventory.management)
    for i, first in enumerate(networks):
        for second in networks[i + 1 :]:
            if first.subnet.overlaps(second.subnet):
                raise PlanError(
                    f"inventory {inventory.path}: networks {first.name} "
                    f"({first.subnet}) and {second.name} ({second.subnet}) overlap; "
                    "each emulated network needs its own subnet"
                )
    for network in networks:
        _check_address(inventory, network, network.server_address, "the server")
    return networks


def _shape(
    device: str, namespace: str | None, direction: Direction, network: Network
) -> ShapePlan:
    profile = network.profile
    rate = profile.downlink_mbit if direction == "downlink" else profile.uplink_mbit
    return ShapePlan(
        device, namespace, direction, rate, profile.delay_ms, profile.jitter_ms
    )


def _client_links(
    inventory: Inventory, host: Host, namespace: str, loss_mode: LossMode
) -> list[LinkPlan]:
    links = []
    for iface in host.interfaces:
        where = f"inventory {inventory.path}, host {host.name}"
        try:
            network = inventory.network(iface.network)
        except KeyError as exc:
            raise PlanError(f"{where}: {exc.args[0]}") from exc
        if not is_valid_ifname(iface.ifname) or iface.ifname in _RESERVED_IFNAMES:
            raise PlanError(
                f"{where}: interface name {iface.ifname!r} is not usable (at most 15 "
                f"characters, no spaces or '/', not {sorted(_RESERVED_IFNAMES)})"
            )
        _check_address(inventory, network, iface.address, host.name)
        if iface.address == network.server_address:
            raise PlanError(f"{where}: {iface.address} is the server's address")
        host_side = host_side_veth(inventory, host.name, network.name)
        loss = tuple(
            rule
            for direction in ("uplink", "downlink")
            if (
                rule := shaping.loss_rule(
                    direction,
                    iface.ifname,
                    network.profile.loss_pct,
                    loss_mode,
                )
            )
            is not None
        )
        links.append(
            LinkPlan(
                node=host.name,
                network=network.name,
                namespace=namespace,
                host_side=host_side,
                node_ifname=iface.ifname,
                bridge=bridge_name(inventory, network.name),
                address=_prefixed(network, iface.address),
                downlink=_shape(host_side, None, "downlink", network),
                uplink=_shape(iface.ifname, namespace, "uplink", network),
                loss=loss,
            )
        )
    return links


def _management_link(inventory: Inventory, host: Host, namespace: str) -> LinkPlan:
    management = inventory.management
    assert management is not None
    where = f"inventory {inventory.path}, host {host.name}"
    try:
        address = ipaddress.IPv4Address(host.ansible_host)
    except ValueError as exc:
        raise PlanError(
            f"{where}: ansible_host {host.ansible_host!r} must be an IPv4 address on "
            f"the management network {management.name} ({management.subnet}) for an "
            "emulated cluster"
        ) from exc
    _check_address(inventory, management, address, host.name)
    return LinkPlan(
        node=host.name,
        network=management.name,
        namespace=namespace,
        host_side=host_side_veth(inventory, host.name, management.name),
        node_ifname=MGMT_IFNAME,
        bridge=bridge_name(inventory, management.name),
        address=_prefixed(management, address),
        management=True,
    )


def _check_unique(plan: ClusterPlan, inventory: Inventory) -> None:
    seen: dict[tuple[str, str], str] = {}
    for bridge in plan.bridges:
        seen[("host", bridge.name)] = f"bridge of {bridge.network}"
    for link in plan.links:
        for key, what in (
            (("host", link.host_side), f"veth of {link.node} on {link.network}"),
            ((link.namespace, link.node_ifname), f"{link.node_ifname} of {link.node}"),
            ((link.network, str(link.address.ip)), f"address of {link.node}"),
        ):
            if key in seen:
                raise PlanError(
                    f"inventory {inventory.path}: {what} clashes with {seen[key]} "
                    f"({key[1]}); give each its own name/address"
                )
            seen[key] = what


def plan_cluster(inventory: Inventory, loss_mode: LossMode = "random") -> ClusterPlan:
    """Return what ``cluster up`` would build for ``inventory``; touches nothing.

    Raises ``PlanError`` naming the inventory file and host for anything that
    cannot be built (unknown network, address outside its subnet, clashes).
    """
    if not is_valid_name(inventory.name):
        raise PlanError(
            f"inventory {inventory.path}: invalid cluster name {inventory.name!r}"
        )
    networks = _check_subnets(inventory)
    bridges = tuple(
        BridgePlan(
            name=(name := bridge_name(inventory, network.name)),
            network=network.name,
            address=_prefixed(network, network.server_address),
            mac=_bridge_mac(name),
            management=network is inventory.management,
        )
        for network in networks
    )
    nodes = []
    for host in inventory.clients:
        namespace = node_namespace(inventory, host.name)
        links = _client_links(inventory, host, namespace, loss_mode)
        if inventory.management is not None:
            links.append(_management_link(inventory, host, namespace))
        nodes.append(NodePlan(host.name, namespace, tuple(links)))
    plan = ClusterPlan(inventory.name, bridges, tuple(nodes), loss_mode)
    _check_unique(plan, inventory)
    return plan


# --- what the emulation does and does not do -----------------------------------


@dataclass(frozen=True)
class FeatureUse:
    """Whether one emulation feature (rate, loss, delay) was asked for and is active.

    ``detail`` names the mechanism when active, or the reason when not.
    ``networks`` are the networks whose profile asks for the feature.
    """

    feature: str
    requested: bool
    active: bool
    detail: str
    networks: tuple[str, ...] = ()


def emulation_manifest(uses: tuple[FeatureUse, ...]) -> dict[str, dict[str, Any]]:
    """Return ``uses`` as a JSON-ready dict keyed by feature, for a run manifest."""
    return {
        use.feature: {
            "requested": use.requested,
            "active": use.active,
            "detail": use.detail,
            "networks": list(use.networks),
        }
        for use in uses
    }


def _feature_uses(
    inventory: Inventory,
    features: EmulationFeatures,
    shaper: Shaper,
    loss_mode: LossMode,
) -> tuple[FeatureUse, ...]:
    networks = inventory.networks
    lossy = tuple(n.name for n in networks if n.profile.loss_pct > 0)
    delayed = tuple(n.name for n in networks if n.profile.needs_delay)
    rate = FeatureUse(
        "rate",
        True,
        True,
        f"tc {shaper} on egress: downlink on the server-side veth, uplink on the "
        "node-side veth",
        inventory.network_names,
    )
    if not lossy:
        loss = FeatureUse("loss", False, False, "no profile asks for loss")
    elif features.loss:
        how = f"iptables statistic --mode {loss_mode} DROP in the node namespaces"
        loss = FeatureUse("loss", True, True, how, lossy)
    else:
        why = features.details.get("loss", "iptables statistic match unavailable")
        loss = FeatureUse("loss", True, False, why, lossy)
    if not delayed:
        delay = FeatureUse("delay", False, False, "no profile asks for delay or jitter")
    elif features.delay:
        delay = FeatureUse(
            "delay", True, True, "tc netem leaf under the HTB class", delayed
        )
    else:
        why = features.details.get("delay", "tc netem unavailable")
        delay = FeatureUse("delay", True, False, why, delayed)
    return (rate, loss, delay)


@dataclass(frozen=True)
class ClusterState:
    """What ``cluster up`` built: the plan, the kernel's features, what got emulated."""

    plan: ClusterPlan
    features: EmulationFeatures
    emulation: tuple[FeatureUse, ...]
    shaper: Shaper = "htb"
    ssh: ClusterSSH | None = None

    def manifest(self) -> dict[str, object]:
        """Return a JSON-ready description for a run manifest."""
        return {
            "cluster": self.plan.cluster,
            "shaper": self.shaper,
            "loss_mode": self.plan.loss_mode,
            "emulation": emulation_manifest(self.emulation),
            "features": self.features.as_dict(),
            "names": self.plan.names(),
        }


# --- reading the machine ----------------------------------------------------------


def _json(text: str) -> list[dict[str, Any]]:
    text = text.strip()
    return list(json.loads(text)) if text else []


def _namespaces(host: Executor) -> set[str]:
    result = host.run(netcmd.netns_list())
    return {str(entry["name"]) for entry in _json(result.stdout)}


def _links(executor: Executor) -> dict[str, dict[str, Any]]:
    result = executor.run(netcmd.link_show())
    return {str(link["ifname"]): link for link in _json(result.stdout)}


def _addresses(executor: Executor, dev: str) -> list[ipaddress.IPv4Interface]:
    result = executor.run(netcmd.addr_show(dev))
    found = []
    for link in _json(result.stdout):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                found.append(
                    ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}")
                )
    return found


# --- root and host checks -----------------------------------------------------------


def require_root(action: str) -> None:
    """Raise ``RootRequiredError`` unless root, saying what ``action`` needs it for."""
    if os.geteuid() == 0:
        return
    raise RootRequiredError(
        f"{action} needs root: it creates and removes network namespaces, bridges, "
        "veth pairs, tc qdiscs and iptables rules. Run it as root, e.g. "
        "`sudo .venv/bin/flowerbed cluster up INVENTORY`."
    )


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
    for route in _json(host.run(netcmd.route_show()).stdout):
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
    for present in _addresses(executor, dev):
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


def _paired(
    host_link: Mapping[str, Any] | None, node_link: Mapping[str, Any] | None
) -> bool:
    if host_link is None or node_link is None:
        return False
    return bool(
        host_link.get("link_index") == node_link.get("ifindex")
        and node_link.get("link_index") == host_link.get("ifindex")
    )


def _ensure_link(b: _Builder, link: LinkPlan, host_links: Mapping[str, Any]) -> None:
    ns = b.netns(link.namespace)
    with b.step(
        f"creating veth {link.host_side}/{link.node_ifname}", link.node, link.network
    ):
        node_links = _links(ns)
        host_link = host_links.get(link.host_side)
        node_link = node_links.get(link.node_ifname)
        if not _paired(host_link, node_link):
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


def _installed(executor: Executor, dev: str) -> list[shaping.InstalledQdisc]:
    return shaping.parse_qdisc_show(executor.run(shaping.qdisc_show(dev)).stdout)


def _apply_shape(
    executor: Executor, shape: ShapePlan, features: EmulationFeatures, shaper: Shaper
) -> None:
    with_delay = shape.wants_delay and features.delay
    kind = "htb" if with_delay else shaper
    installed = _installed(executor, shape.device)
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
    management address (``testbed/emulated_ssh.py``).

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
        host_links = _links(host)
        namespaces = _namespaces(host)
    for bridge in plan.bridges:
        _ensure_bridge(b, bridge, host_links)
    for node in plan.nodes:
        _ensure_namespace(b, node, namespaces)
        for link in node.links:
            _ensure_link(b, link, host_links)
            _apply_link_shaping(b, link, features, shaper)
        _apply_loss(b, node, features)
    uses = _feature_uses(inventory, features, shaper, loss_mode)
    servers = None
    if ssh and inventory.management is not None:
        with b.step("starting sshd in the nodes"):
            servers = ssh_up(inventory, _node_namespaces(inventory), host)
    return ClusterState(plan, features, uses, shaper, servers)


def _node_namespaces(inventory: Inventory) -> dict[str, str]:
    return {h.name: node_namespace(inventory, h.name) for h in inventory.clients}


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
            text += (
                f"; processes {' '.join(map(str, pids))} were still running in "
                f"{namespace} (it is detached from its devices; stop them yourself)"
            )
        return text


def _planned_names(inventory: Inventory) -> tuple[list[str], list[str], list[str]]:
    """Namespaces, host-side veths and bridges, without validating addresses."""
    networks = [*inventory.network_names, *_management_names(inventory)]
    namespaces, veths = [], []
    for host in inventory.clients:
        namespaces.append(node_namespace(inventory, host.name))
        on = [
            i.network for i in host.interfaces if i.network in inventory.network_names
        ]
        on += _management_names(inventory)
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
    host_links = _links(host)
    removed: list[str] = [
        f"sshd@{name}" for name in ssh_down(inventory, _node_namespaces(inventory))
    ]
    for veth in veths:
        if veth in host_links and _run_ignoring_absence(host, netcmd.link_del(veth)):
            removed.append(veth)
    existing = _namespaces(host)
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
    return TeardownReport(tuple(removed), lingering)


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

    @property
    def rate_ok(self) -> bool:
        """Whether the installed rate equals the planned one (or none is planned)."""
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
    qdiscs = _installed(executor, shape.device)
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
    )


def _link_status(
    host: Executor,
    ns: Executor | None,
    link: LinkPlan,
    host_links: Mapping[str, Any],
    loss_rules: list[LossRule],
) -> LinkStatus:
    node_links = _links(ns) if ns is not None else {}
    node_link = node_links.get(link.node_ifname)
    present = ns is not None and _paired(host_links.get(link.host_side), node_link)
    addresses: tuple[str, ...] = ()
    downlink = uplink = None
    if present and ns is not None:
        addresses = tuple(a.with_prefixlen for a in _addresses(ns, link.node_ifname))
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
    host_links = _links(host)
    namespaces = _namespaces(host)
    bridges = tuple(
        BridgeStatus(
            name=bridge.name,
            network=bridge.network,
            exists=bridge.name in host_links,
            up=_is_up(host_links.get(bridge.name)),
            addresses=tuple(a.with_prefixlen for a in _addresses(host, bridge.name))
            if bridge.name in host_links
            else (),
        )
        for bridge in plan.bridges
    )
    sshd: dict[str, str] = {}
    if inventory.management is not None:
        ssh_plan = plan_ssh(inventory, _node_namespaces(inventory))
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
    return ClusterStatus(inventory.name, bridges, tuple(nodes), uses)


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
                else f"down {link.downlink.rate_mbit:g} / "
                f"up {link.uplink.rate_mbit:g} Mbit/s"
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
                    parts.append(
                        f"{egress.direction} {_mbit(egress.installed_rate_bit)}{mark}"
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
