"""The emulated cluster as data: bridges, links, shaping and loss, built from an
inventory without touching the machine; what the emulation does and does not do."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from inventory.models import Host, Inventory, Network, is_valid_ifname, is_valid_name
from testbed.commands import shaping
from testbed.commands.shaping import Direction, LossMode, LossRule, Shaper
from testbed.emulation.errors import PlanError
from testbed.emulation.features import EmulationFeatures
from testbed.emulation.naming import (
    MGMT_IFNAME,
    RESERVED_IFNAMES,
    bridge_mac,
    bridge_name,
    host_side_veth,
    node_namespace,
)
from testbed.emulation.sshd import ClusterSSH

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
    # The rate follows a bandwidth trace (testbed/emulation/replay.py); rate_mbit
    # is then the trace's mean, installed until the replay starts.
    traced: bool = False

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
        device,
        namespace,
        direction,
        rate,
        profile.delay_ms,
        profile.jitter_ms,
        profile.trace(direction) is not None,
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
        if not is_valid_ifname(iface.ifname) or iface.ifname in RESERVED_IFNAMES:
            raise PlanError(
                f"{where}: interface name {iface.ifname!r} is not usable (at most 15 "
                f"characters, no spaces or '/', not {sorted(RESERVED_IFNAMES)})"
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
            mac=bridge_mac(name),
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
    ``networks`` are the networks whose profile asks for the feature;
    ``mechanism`` names what emulates it (``netem``, ``delay-line``, ``none``) and
    ``rate_only`` the requested networks it leaves out (they get their rate only).
    """

    feature: str
    requested: bool
    active: bool
    detail: str
    networks: tuple[str, ...] = ()
    mechanism: str = ""
    rate_only: tuple[str, ...] = ()


def emulation_manifest(uses: tuple[FeatureUse, ...]) -> dict[str, dict[str, Any]]:
    """Return ``uses`` as a JSON-ready dict keyed by feature, for a run manifest."""
    return {
        use.feature: {
            "requested": use.requested,
            "active": use.active,
            "detail": use.detail,
            "networks": list(use.networks),
            **({"mechanism": use.mechanism} if use.mechanism else {}),
            **({"rate_only_networks": list(use.rate_only)} if use.rate_only else {}),
        }
        for use in uses
    }


def feature_uses(
    inventory: Inventory,
    features: EmulationFeatures,
    shaper: Shaper,
    loss_mode: LossMode,
    delay: FeatureUse | None = None,
) -> tuple[FeatureUse, ...]:
    """Which of rate, loss and delay the profiles ask for and this kernel gives.

    ``delay``, when given, is what the delay mechanism reported
    (``testbed/emulation/delay.py``); otherwise netem or nothing is assumed.
    """
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
    if delay is not None:
        pass
    elif not delayed:
        delay = FeatureUse("delay", False, False, "no profile asks for delay or jitter")
    elif features.delay:
        delay = FeatureUse(
            "delay", True, True, "tc netem leaf under the HTB class", delayed, "netem"
        )
    else:
        why = features.details.get("delay", "tc netem unavailable")
        delay = FeatureUse("delay", True, False, why, delayed, "none")
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
