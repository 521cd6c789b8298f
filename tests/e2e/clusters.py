"""One emulated cluster per test module: inventory written, cluster up, then down."""

from __future__ import annotations

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
