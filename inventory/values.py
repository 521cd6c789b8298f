"""Typed values of an inventory: each check returns the value or raises BadValue."""

from __future__ import annotations

import ipaddress

from inventory.models import NodeConfigValue


class BadValue(Exception):
    """A value failed a check; carries the problem and the fix."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


def describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def ipv4(value: object) -> ipaddress.IPv4Address:
    if not isinstance(value, str):
        raise BadValue(
            f"expected an IPv4 address, got {describe(value)}",
            "write the address as text, like 10.77.1.11",
        )
    if "/" in value:
        raise BadValue(
            f"{value} has a prefix length",
            "give the bare address (like 10.77.1.11); the network's subnet gives "
            "the prefix",
        )
    try:
        return ipaddress.IPv4Address(value.strip())
    except ValueError:
        raise BadValue(
            f"{value!r} is not an IPv4 address",
            "write it like 10.77.1.11 (IPv6 is not supported)",
        ) from None


def ipv4_network(value: object) -> ipaddress.IPv4Network:
    if not isinstance(value, str) or "/" not in value:
        raise BadValue(
            f"expected an IPv4 subnet with a prefix length, got {describe(value)}",
            "write it like 10.77.1.0/24",
        )
    try:
        return ipaddress.IPv4Network(value.strip())
    except ValueError:
        pass
    try:
        loose = ipaddress.IPv4Network(value.strip(), strict=False)
    except ValueError:
        raise BadValue(
            f"{value!r} is not an IPv4 subnet", "write it like 10.77.1.0/24"
        ) from None
    raise BadValue(f"{value} has host bits set", f"write the subnet as {loose}")


def port_number(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadValue(
            f"a port must be an integer, got {describe(value)}",
            "write the port as a plain number without quotes, like 22",
        )
    if not 1 <= value <= 65535:
        raise BadValue(f"port {value} is outside 1-65535", "use a port in 1-65535")
    return value


MAX_CPU_QUOTA = 1024.0
MIN_MEMORY_MB = 64


def cpu_quota(value: object) -> float:
    """Cores a node may use (``cpu_quota``): a number > 0, fractions allowed."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadValue(
            f"cpu_quota must be a number of cores, got {describe(value)}",
            "write it as a plain number, like 0.5 for half a core or 4 for a Pi 4",
        )
    if not 0 < value <= MAX_CPU_QUOTA:
        raise BadValue(
            f"cpu_quota {value} is outside (0, {MAX_CPU_QUOTA:g}] cores",
            "give the cores the node may use, like 0.25 or 4",
        )
    return float(value)


def memory_mb(value: object) -> int:
    """Memory a node may use (``memory_mb``), in MiB: a whole number >= 64."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadValue(
            f"memory_mb must be a whole number of MiB, got {describe(value)}",
            "write it as a plain number, like 4096 for a 4 GB Pi 4",
        )
    if value < MIN_MEMORY_MB:
        raise BadValue(
            f"memory_mb {value} is below {MIN_MEMORY_MB} MiB: Python and Flower "
            "alone need more",
            f"give at least {MIN_MEMORY_MB}, like 4096",
        )
    return value


def nonempty_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadValue(
            f"expected non-empty text, got {describe(value)}",
            "write it as text, quoted if it looks like a number",
        )
    return value


def node_config_value(value: object) -> NodeConfigValue:
    if isinstance(value, bool | int | float | str):
        return value
    raise BadValue(
        f"node_config values must be text, numbers or booleans, got {describe(value)}",
        "give a single value (quote it to make it text)",
    )


# A node's share of the full model under heterogeneous model reduction (HeteroFL).
CAPACITY_RATIO_KEY = "capacity-ratio"


def capacity_ratio(value: object) -> float:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and 0 < value <= 1:  # type: ignore[operator]
        return float(value)  # type: ignore[arg-type]
    raise BadValue(
        f"capacity-ratio must be a number in (0, 1], the share of the full model's"
        f" channels this node trains; got {describe(value)}",
        "write e.g. 'node_config: {capacity-ratio: 0.5}' (1 = the full model)",
    )


def check_usable(
    address: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network, network: str
) -> None:
    if address not in subnet:
        raise BadValue(
            f"{address} is outside subnet {subnet} of network {network!r}",
            f"give an address inside {subnet}, or change the subnet of {network!r}",
        )
    if subnet.prefixlen < 31 and address in (
        subnet.network_address,
        subnet.broadcast_address,
    ):
        which = "network" if address == subnet.network_address else "broadcast"
        raise BadValue(
            f"{address} is the {which} address of {subnet} (network {network!r})",
            f"use a host address of {subnet}, like {subnet.network_address + 1}",
        )
