"""The campaign's grid of runs, what each run's outcome records, and each node's
Flower node config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from instrumentation.client_mod import CLOCK_OFFSET_KEY
from inventory.models import Host, Inventory
from testbed.campaign.model import Campaign
from testbed.commands import flower

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RunPlan:
    """One cell of the campaign grid."""

    index: int
    total: int
    network: str
    repetition: int

    @property
    def run_id(self) -> str:
        """Folder name and event-log id of the run, e.g. ``5g-r1``."""
        return f"{self.network}-r{self.repetition}"


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one run."""

    run_id: str
    network: str
    repetition: int
    status: str  # ok | failed | timeout | interrupted
    reason: str
    duration_s: float
    flower_run_id: str
    rounds_completed: int
    # Flower's own measure of the run (flwr ls "elapsed"), the same with or
    # without flowerbed's instrumentation: the overhead benchmark compares it.
    flower_elapsed_s: float | None = None
    # The warm launcher's record (campaign/warm.py), None when the lever is off.
    warm_launcher: dict[str, Any] | None = None


def plan_runs(campaign: Campaign) -> list[RunPlan]:
    """Networks x repetitions, network-major (all repetitions of a network together)."""
    cells = [
        (n, r) for n in campaign.networks for r in range(1, campaign.repetitions + 1)
    ]
    return [RunPlan(i + 1, len(cells), n, r) for i, (n, r) in enumerate(cells)]


def node_config_for(
    inventory: Inventory, host: Host, clock_offset_ns: int = 0
) -> dict[str, flower.ConfigValue]:
    """Node config of a client: partition, inventory name, the inventory's extras."""
    index = inventory.clients.index(host)
    config: dict[str, flower.ConfigValue] = {
        "partition-id": index,
        "num-partitions": len(inventory.clients),
        "flowerbed-node": host.name,
    }
    config.update(host.node_config_dict)
    if clock_offset_ns:
        config[CLOCK_OFFSET_KEY] = clock_offset_ns
    return config
