"""A throwaway emulated cluster for benchmarks: own name and subnets, always removed."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from inventory.loader import load_inventory
from inventory.models import Inventory
from testbed.emulation.apply import cluster_down, cluster_up
from testbed.emulation.sshd import forget_state


def inventory_yaml(
    name: str,
    networks: dict[str, tuple[float, float]],
    clients: int = 2,
    base: int = 240,
) -> str:
    """An inventory of ``networks`` (name -> (down, up) Mbit/s) on 10.<base>.x."""
    nets: list[str] = []
    ifaces: dict[int, list[str]] = {i: [] for i in range(1, clients + 1)}
    for k, (net, (down, up)) in enumerate(networks.items(), start=1):
        nets.append(
            f"      {net}:\n        subnet: 10.{base}.{k}.0/24\n"
            f"        server_address: 10.{base}.{k}.1\n"
            f"        profile: {{downlink_mbit: {down}, uplink_mbit: {up}, "
            f'source: "benchmark"}}\n'
        )
        for i in ifaces:
            ifaces[i].append(
                f"            {net}: {{ifname: if{k}, ip: 10.{base}.{k}.{10 + i}}}\n"
            )
    hosts = "".join(
        f"        node{i}:\n          ansible_host: 10.{base}.0.{10 + i}\n"
        f"          interfaces:\n{''.join(lines)}"
        for i, lines in ifaces.items()
    )
    return (
        f"all:\n  vars:\n    cluster_name: {name}\n"
        f"    management: {{subnet: 10.{base}.0.0/24, server_address: 10.{base}.0.1}}\n"
        f"    networks:\n{''.join(nets)}"
        "  children:\n    server:\n      hosts:\n"
        f"        server: {{ansible_host: 10.{base}.0.1}}\n"
        f"    clients:\n      hosts:\n{hosts}"
    )


@contextmanager
def bench_cluster(
    folder: Path,
    networks: dict[str, tuple[float, float]],
    clients: int = 2,
    base: int = 240,
) -> Iterator[Inventory]:
    """Build a cluster for the benchmark on 10.<base>.x; remove it afterwards
    whatever happens (benchmarks that may run together use different bases)."""
    path = folder / "inventory.yaml"
    path.write_text(
        inventory_yaml("fbb" + secrets.token_hex(2), networks, clients, base)
    )
    inventory = load_inventory(path)
    try:
        cluster_up(inventory)
        yield inventory
    finally:
        cluster_down(inventory)
        forget_state(inventory)


def campaign_yaml(
    folder: Path, networks: list[str], rounds: int, **extra: object
) -> Path:
    """A campaign file for the default app with small, fast settings."""
    lines = [
        "name: bench",
        f"networks: [{', '.join(networks)}]",
        "strategy: fedavg",
        f"rounds: {rounds}",
        "run_deadline_s: 400",
        "round_timeout_s: 200",
        "workload: {samples-per-node: 64, local-epochs: 1, batch-size: 16}",
    ]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    path = folder / f"campaign-{secrets.token_hex(2)}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path
