"""One emulated cluster per test module: inventory written, cluster up, then down."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from inventory.loader import load_inventory
from inventory.models import Inventory
from testbed.emulation.apply import cluster_down, cluster_up
from testbed.emulation.plan import ClusterState
from testbed.emulation.sshd import forget_state


@contextmanager
def emulated_cluster(
    folder: Path, inventory_yaml: str, *, ssh: bool = True
) -> Iterator[tuple[Inventory, ClusterState]]:
    """The cluster ``inventory_yaml`` describes, up (sshd on every node unless
    ``ssh`` is False) until the block ends; its SSH state is forgotten after."""
    path = folder / "inventory.yaml"
    path.write_text(inventory_yaml)
    inventory = load_inventory(path)
    try:
        yield inventory, cluster_up(inventory, ssh=ssh)
    finally:
        cluster_down(inventory)
        forget_state(inventory)


def two_nodes_on_ethernet(name: str, subnet_prefix: str, node1_config: str = "") -> str:
    """The inventory of a server and two nodes on one ``ethernet`` network.

    ``subnet_prefix`` is two octets (``"10.221"``): management on ``.0.0/24``,
    ethernet on ``.1.0/24``. ``node1_config`` is node1's ``node_config`` as a
    YAML flow mapping (``"{capacity-ratio: 0.25}"``), or empty for none.
    """
    p = subnet_prefix
    config = f"\n          node_config: {node1_config}" if node1_config else ""
    return f"""all:
  vars:
    cluster_name: {name}
    superlink_port: 8000
    management: {{subnet: {p}.0.0/24, server_address: {p}.0.1}}
    networks:
      ethernet: {{subnet: {p}.1.0/24, server_address: {p}.1.1, profile: ethernet}}
  children:
    server:
      hosts:
        server: {{ansible_host: {p}.0.1}}
    clients:
      hosts:
        node1:
          ansible_host: {p}.0.11
          interfaces:
            ethernet: {{ifname: eth0, ip: {p}.1.11}}{config}
        node2:
          ansible_host: {p}.0.12
          interfaces:
            ethernet: {{ifname: eth0, ip: {p}.1.12}}
"""


@contextmanager
def two_node_cluster(
    folder: Path, stem: str, subnet_prefix: str, node1_config: str = ""
) -> Iterator[Inventory]:
    """:func:`two_nodes_on_ethernet` up, named ``stem`` plus 4 hex digits."""
    name = stem + secrets.token_hex(2)
    yaml = two_nodes_on_ethernet(name, subnet_prefix, node1_config)
    with emulated_cluster(folder, yaml) as (inventory, _):
        yield inventory
