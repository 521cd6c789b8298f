"""How long loading an inventory takes as it grows (issue 18: linear in hosts).

Writes inventories of N clients (two networks, a management network, clients
spread over racks of 50, each rack a child group of ``clients`` with its own
vars), and times ``load_inventory`` on each, in this process, best of
``--runs``. Prints seconds, microseconds per host and the ratio to the
smallest size per host: a loader linear in hosts keeps that ratio near 1. Also
times ``flowerbed inventory validate --format json`` in a fresh interpreter on
the largest file (start-up, loading and the JSON dump).

Targets (issue 18): 5,000 hosts under 2 s, 50,000 under 20 s.

Run from the repository root::

    nice -n 10 python -m bench.inventory_scale [--hosts 500,5000,50000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from inventory.loader import load_inventory

TARGETS_S = {5_000: 2.0, 50_000: 20.0}
RACK = 50

HEAD = """\
all:
  vars:
    cluster_name: scale
    ansible_user: pi
    management: {subnet: 10.0.0.0/16, server_address: 10.0.0.1}
    networks:
      ethernet: {subnet: 10.1.0.0/16, server_address: 10.1.0.1, profile: ethernet}
      wifi: {subnet: 10.2.0.0/16, server_address: 10.2.0.1, profile: wifi}
  children:
    server:
      hosts:
        server: {ansible_host: 10.0.0.1}
    clients:
      children:
"""


def _address(index: int) -> str:
    # .0.1 is the server; clients from .0.2 on, 250 per /24.
    third, fourth = divmod(index + 2, 250)
    return f"{third}.{fourth + 1 if third else fourth}"


def inventory_text(hosts: int) -> str:
    """An inventory of ``hosts`` clients in racks of ``RACK``."""
    lines = [HEAD]
    for index in range(hosts):
        if index % RACK == 0:
            lines.append(
                f"        rack{index // RACK}:\n"
                f"          vars: {{flowerbed_dir: /srv/rack{index // RACK}}}\n"
                "          hosts:\n"
            )
        tail = _address(index)
        lines.append(
            f"            pi{index}:\n"
            f"              ansible_host: 10.0.{tail}\n"
            "              interfaces:\n"
            f"                ethernet: {{ifname: eth0, ip: 10.1.{tail}}}\n"
            f"                wifi: {{ifname: wlan0, ip: 10.2.{tail}}}\n"
            f"              node_config: {{partition-id: {index}}}\n"
        )
    return "".join(lines)


def time_load(path: Path, runs: int) -> float:
    """Best wall-clock seconds of ``runs`` loads of ``path``."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        inventory = load_inventory(path, ["ethernet", "wifi"])
        best = min(best, time.perf_counter() - started)
    if len(inventory.clients) == 0:
        raise SystemExit(f"{path}: no clients loaded")
    return best


def time_cli(path: Path) -> float:
    """Seconds of ``flowerbed inventory validate --format json`` on ``path``."""
    argv = [sys.executable, "-m", "testbed.cli", "inventory", "validate"]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    started = time.perf_counter()
    done = subprocess.run(
        [*argv, "--format", "json", str(path)],
        capture_output=True,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"validate failed:\n{done.stderr.decode()[-2000:]}")
    return elapsed


def main() -> None:
    """Time the loads and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="500,5000,50000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(n) for n in args.hosts.split(",")]
    print("| hosts | file (MB) | load (s) | µs per host | × smallest per host |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        base_per_host = None
        path = Path(folder)
        for hosts in sizes:
            path = Path(folder) / f"inventory-{hosts}.yaml"
            path.write_text(inventory_text(hosts))
            seconds = time_load(path, args.runs)
            per_host = seconds / hosts
            base_per_host = base_per_host or per_host
            size_mb = path.stat().st_size / 1e6
            print(
                f"| {hosts:,} | {size_mb:.1f} | {seconds:.2f} | {per_host * 1e6:.0f} "
                f"| {per_host / base_per_host:.2f} |"
            )
            target = TARGETS_S.get(hosts)
            if target is not None:
                verdict = "within" if seconds < target else "OVER"
                print(f"<!-- {hosts:,} hosts: {verdict} the {target:g} s target -->")
        cli = time_cli(path)
        print(
            f"\n`inventory validate --format json` on {sizes[-1]:,} hosts "
            f"(fresh interpreter): {cli:.2f} s"
        )


if __name__ == "__main__":
    main()
