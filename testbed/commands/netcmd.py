"""Pure builders of ``ip``/``sysctl`` argv lists: namespaces, veths, bridges, addresses.

Nothing here runs a command: each function returns the argv an ``Executor`` runs.
Commands meant for a node's namespace are built plain and run through a
``NetnsExecutor``, so the same builders serve a real Pi over SSH.
"""

from __future__ import annotations

import ipaddress


def netns_add(namespace: str) -> list[str]:
    """Create network namespace ``namespace``."""
    return ["ip", "netns", "add", namespace]


def netns_del(namespace: str) -> list[str]:
    """Delete network namespace ``namespace`` (its devices go with it)."""
    return ["ip", "netns", "del", namespace]


def netns_list() -> list[str]:
    """List network namespaces as JSON (empty output when there are none)."""
    return ["ip", "-j", "netns", "list"]


def netns_pids(namespace: str) -> list[str]:
    """List the pids of processes running inside ``namespace``."""
    return ["ip", "netns", "pids", namespace]


def link_show(dev: str | None = None) -> list[str]:
    """Show one link (or all links) as JSON."""
    argv = ["ip", "-j", "link", "show"]
    return [*argv, "dev", dev] if dev is not None else argv


def addr_show(dev: str) -> list[str]:
    """Show the IPv4 addresses of ``dev`` as JSON."""
    return ["ip", "-j", "-4", "addr", "show", "dev", dev]


def route_show() -> list[str]:
    """Show the IPv4 routes of the main table as JSON."""
    return ["ip", "-j", "-4", "route", "show"]


def bridge_add(name: str, mac: str | None = None) -> list[str]:
    """Create Linux bridge ``name``; no STP and no forward delay, optional fixed MAC.

    A fixed MAC keeps the bridge from adopting its lowest port's MAC, which would
    change (and stale the nodes' ARP caches) whenever a port is added.
    """
    argv = ["ip", "link", "add", "name", name]
    if mac is not None:
        argv += ["address", mac]
    return [*argv, "type", "bridge", "forward_delay", "0", "stp_state", "0"]


def veth_add(host_side: str, peer: str, peer_namespace: str | None = None) -> list[str]:
    """Create veth pair ``host_side``/``peer``; the peer directly in ``peer_namespace``.

    Creating the peer straight inside the namespace is atomic: no half-moved end is
    ever left in the host namespace, and its name (``eth0``) never clashes with the
    host's own interfaces.
    """
    argv = [
        "ip",
        "link",
        "add",
        "name",
        host_side,
        "type",
        "veth",
        "peer",
        "name",
        peer,
    ]
    if peer_namespace is not None:
        argv += ["netns", peer_namespace]
    return argv


def link_move(dev: str, namespace: str, new_name: str | None = None) -> list[str]:
    """Move ``dev`` into ``namespace``, renaming it to ``new_name`` on the way."""
    argv = ["ip", "link", "set", "dev", dev, "netns", namespace]
    return [*argv, "name", new_name] if new_name is not None else argv


def link_set_master(dev: str, bridge: str) -> list[str]:
    """Enslave ``dev`` to ``bridge``."""
    return ["ip", "link", "set", "dev", dev, "master", bridge]


def link_up(dev: str) -> list[str]:
    """Bring ``dev`` up."""
    return ["ip", "link", "set", "dev", dev, "up"]


def lo_up() -> list[str]:
    """Bring the loopback device up (a fresh namespace has it down)."""
    return link_up("lo")


def link_del(dev: str) -> list[str]:
    """Delete ``dev`` (for a veth, both ends go)."""
    return ["ip", "link", "del", "dev", dev]


def link_alias(dev: str, alias: str) -> list[str]:
    """Set ``dev``'s alias, a free-text label shown by ``ip link``."""
    return ["ip", "link", "set", "dev", dev, "alias", alias]


def addr_replace(dev: str, address: ipaddress.IPv4Interface) -> list[str]:
    """Set ``address`` (with prefix) on ``dev``; succeeds if it is already there."""
    return ["ip", "addr", "replace", address.with_prefixlen, "dev", dev]


def addr_add(dev: str, address: ipaddress.IPv4Interface) -> list[str]:
    """Add ``address`` (with prefix) to ``dev``; fails if it is already there."""
    return ["ip", "addr", "add", address.with_prefixlen, "dev", dev]


def addr_del(dev: str, address: ipaddress.IPv4Interface) -> list[str]:
    """Remove ``address`` from ``dev``."""
    return ["ip", "addr", "del", address.with_prefixlen, "dev", dev]


def sysctl_set(key: str, value: str | int) -> list[str]:
    """Set kernel parameter ``key`` (dotted form) to ``value``."""
    return ["sysctl", "-q", "-w", f"{key}={value}"]


def sysctl_get(key: str) -> list[str]:
    """Read kernel parameter ``key``'s value."""
    return ["sysctl", "-n", key]


def _sysctl_dev(dev: str) -> str:
    # sysctl separates keys with dots, so a dot inside a device name is written '/'.
    return dev.replace(".", "/")


def disable_ipv6(dev: str) -> list[str]:
    """Turn IPv6 off on ``dev`` (no router solicitations or DAD noise in captures)."""
    return sysctl_set(f"net.ipv6.conf.{_sysctl_dev(dev)}.disable_ipv6", 1)


def disable_ipv6_namespace() -> list[str]:
    """Turn IPv6 off for every current and future device of the namespace it runs in."""
    return [
        "sysctl",
        "-q",
        "-w",
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ]


def rp_filter_off_namespace() -> list[str]:
    """Turn reverse-path filtering off in the namespace it runs in (multi-homed)."""
    return [
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
    ]
