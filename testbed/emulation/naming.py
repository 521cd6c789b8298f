"""Names of the emulated cluster's pieces: namespaces, bridges, veths (hashed)."""

from __future__ import annotations

import hashlib

from inventory.models import Inventory

NAMESPACE_PREFIX = "fb-"
BRIDGE_PREFIX = "fbb"
VETH_PREFIX = "fbv"
MGMT_IFNAME = "mgmt0"
_HASH_CHARS = 10  # fbb/fbv + 10 hex = 13 chars, under Linux's 15-byte limit
RESERVED_IFNAMES = frozenset({"lo", MGMT_IFNAME})


# --- names ------------------------------------------------------------------


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:_HASH_CHARS]


def _network_key(inventory: Inventory, network: str) -> str:
    if network in inventory.network_names:
        return f"net:{network}"
    if inventory.management is not None and network == inventory.management.name:
        return f"mgmt:{network}"
    known = ", ".join([*inventory.network_names, *management_names(inventory)])
    raise KeyError(
        f"unknown network {network!r}; inventory {inventory.name} has: {known}"
    )


def management_names(inventory: Inventory) -> list[str]:
    """The management network's name, if the inventory has one."""
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


def bridge_mac(name: str) -> str:
    """A fixed, locally administered MAC for bridge ``name`` (stable across ups)."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    return "02:fb:" + ":".join(digest[i : i + 2] for i in range(0, 8, 2))


def node_namespaces(inventory: Inventory) -> dict[str, str]:
    """Client name -> the namespace emulating it, for every client."""
    return {h.name: node_namespace(inventory, h.name) for h in inventory.clients}
