"""How `inventory check` and `cluster provision` scale: 1, 4 and 16 emulated nodes.

For each size N it builds an emulated cluster of N nodes (one network under test
plus management, an sshd per node), then times over SSH only, as the CLI does:
`inventory check`, a first `cluster provision` into fresh node folders (one
wheelhouse push and one cold uv cache per cluster, since the nodes share this
machine's disk), and a second provision that finds nothing to do. The wheelhouse
itself is built once beforehand and reported apart. Prints seconds and the ratio
to one node. Needs root.

    sudo .venv/bin/python -m bench.provision_scale [SIZES...]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from inventory.loader import load_inventory
from inventory.models import Inventory
from testbed.emulation.apply import cluster_down, cluster_up
from testbed.emulation.sshd import forget_state
from testbed.lab.access import server_dir, ssh_connectors
from testbed.lab.check import check_inventory
from testbed.lab.check_report import CheckOptions
from testbed.lab.provision import ProvisionOptions, provision
from testbed.lab.tls import ensure_tls
from testbed.lab.wheelhouse import build_wheelhouse
from testbed.transport.executor import LocalExecutor

APP = Path(__file__).resolve().parents[1] / "apps" / "digits"


def inventory_yaml(size: int, folder: Path) -> str:
    """An emulated lab of ``size`` nodes on 10.236.x (one network + management)."""
    hosts = "".join(
        f"""        n{i}:
          ansible_host: 10.236.0.{10 + i}
          interfaces: {{ethernet: {{ifname: eth0, ip: 10.236.1.{10 + i}}}}}
"""
        for i in range(1, size + 1)
    )
    return f"""all:
  vars:
    cluster_name: fbscale{size}
    ansible_user: root
    flowerbed_dir: {folder}/nodes/{{host}}
    flowerbed_wheelhouse: {folder}/wheelhouse
    flowerbed_server_dir: {folder}/server
    management: {{subnet: 10.236.0.0/24, server_address: 10.236.0.1}}
    networks:
      ethernet: {{subnet: 10.236.1.0/24, server_address: 10.236.1.1, profile: ethernet}}
  children:
    server: {{hosts: {{server: {{ansible_host: 10.236.0.1}}}}}}
    clients:
      hosts:
{hosts}"""


def measure(size: int, folder: Path) -> tuple[float, float, float]:
    """(check, first provision, second provision) seconds for ``size`` nodes."""
    path = folder / "inventory.yaml"
    path.write_text(inventory_yaml(size, folder))
    inventory: Inventory = load_inventory(path)
    cluster_up(inventory)
    try:
        executors: dict[str, object] = {inventory.server.name: LocalExecutor}
        executors.update(ssh_connectors(inventory))
        started = time.monotonic()
        report = check_inventory(inventory, executors, CheckOptions())  # type: ignore[arg-type]
        check_s = time.monotonic() - started
        if not report.ok:
            raise SystemExit(f"inventory check failed for {size} nodes: {report}")
        tls, _ = ensure_tls(inventory, server_dir(inventory) / "tls")
        options = ProvisionOptions(
            wheelhouse=build_wheelhouse(),
            server_dir=server_dir(inventory),
            tls=tls,
            app=APP,
        )
        times = []
        for _ in range(2):
            started = time.monotonic()
            result = provision(inventory, ssh_connectors(inventory), options)
            times.append(time.monotonic() - started)
            if not result.ok:
                raise SystemExit(f"provision failed for {size} nodes: {result}")
        return check_s, times[0], times[1]
    finally:
        cluster_down(inventory)
        forget_state(inventory)


def main() -> int:
    """Measure each size and print the table."""
    sizes = [int(a) for a in sys.argv[1:]] or [1, 4, 16]
    started = time.monotonic()
    wheelhouse = build_wheelhouse()
    print(
        f"wheelhouse: {len(wheelhouse.files)} wheels, "
        f"{wheelhouse.size_bytes / 1e6:.0f} MB, ready in "
        f"{time.monotonic() - started:.1f} s ({wheelhouse.path})"
    )
    rows = {}
    for size in sizes:
        folder = Path(tempfile.mkdtemp(prefix=f"fbscale{size}-"))
        try:
            rows[size] = measure(size, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        check_s, first_s, second_s = rows[size]
        print(
            f"{size:>3} node(s): check {check_s:6.1f} s, provision {first_s:6.1f} s, "
            f"again {second_s:5.1f} s",
            flush=True,
        )
    base = rows[min(rows)]
    print(f"\n{'nodes':>5} {'check s':>8} {'x1':>5} {'provision s':>12} {'x1':>5} "
          f"{'again s':>8} {'x1':>5}")  # fmt: skip
    for size, (check_s, first_s, second_s) in rows.items():
        print(
            f"{size:>5} {check_s:>8.1f} {check_s / base[0]:>5.2f} {first_s:>12.1f} "
            f"{first_s / base[1]:>5.2f} {second_s:>8.1f} {second_s / base[2]:>5.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
