"""Do the device classes slow training here as much as their quotas say?

Trains the demo's model (the same training as bench/cpu_share.py: digit CNN at
width 0.25, batch 16, one thread) for ``--epochs`` local epochs in a fresh
process, once unthrottled and once per device class inside a cgroup with the
class's CPU quota and memory (inventory/device_classes.py, made with the argv
``cluster up`` uses, under ``flowerbed/bench-<pid>``, removed after). Prints per
class: its quota, the measured slowdown against unthrottled, the slowdown the
quota should give one thread (1 / min(quota, 1)) and the slowdown the board's
published single-core figure implies for one thread (what a real board running
one thread would show).

    sudo nice flock /tmp/e2e.lock .venv/bin/python -m bench.device_classes \\
        [--classes pi3 pi4 pi5 jetson-nano] [--epochs 20] [--runs 3]
        [--host-core-speed 1.0]

Needs root and a cgroup CPU controller (v1 or v2).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from bench.cpu_share import run, train_seconds
from inventory.device_classes import DEVICE_CLASSES, REFERENCE_GB6_SINGLE
from testbed.emulation import cgroups

DEFAULT_CLASSES = ("pi3", "jetson-nano", "pi4", "pi5")


def main() -> int:
    """Time training per class against unthrottled."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", nargs="+", default=list(DEFAULT_CLASSES))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--host-core-speed", type=float, default=1.0)
    args = parser.parse_args()
    unknown = [c for c in args.classes if c not in DEVICE_CLASSES]
    if unknown:
        known = ", ".join(DEVICE_CLASSES)
        print(
            f"unknown class(es) {', '.join(unknown)}; known: {known}", file=sys.stderr
        )
        return 2
    version = cgroups.detect_version()
    if version is None or os.geteuid() != 0:
        print("needs root and a cgroup CPU controller (v1 or v2)", file=sys.stderr)
        return 2
    speed = args.host_core_speed
    cluster = f"bench-{os.getpid()}"
    free = statistics.median(train_seconds(args.epochs, ()) for _ in range(args.runs))
    print(
        f"cgroup {version}, {args.epochs} epoch(s) of the demo model, one thread,"
        f" median of {args.runs}; reference core = Geekbench 6 single"
        f" {REFERENCE_GB6_SINGLE:g}, host_core_speed {speed:g}"
    )
    print(
        "| class | board CPU | cpu_quota | memory_mb | training (s) | slowdown"
        " | expected from the quota | one board core (published) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(f"| none | this machine | – | – | {free:.2f} | 1.00x | 1.00x | 1.00x |")
    try:
        for name in args.classes:
            board = DEVICE_CLASSES[name]
            quota = board.cpu_quota(speed)
            node = name.replace("+", "p").replace(".", "_")
            limits = cgroups.NodeLimits(node, quota, board.memory_mb, "bench")
            run(cgroups.setup_argvs(version, cluster, limits))
            procs = cgroups.procs_files(version, cluster, node)
            seconds = statistics.median(
                train_seconds(args.epochs, procs) for _ in range(args.runs)
            )
            print(
                f"| {name} | {board.cpu} | {quota:g} | {board.memory_mb} |"
                f" {seconds:.2f} | {seconds / free:.2f}x | {1 / min(quota, 1.0):.2f}x"
                f" | {board.slowdown(speed):.2f}x |"
            )
    finally:
        nodes = [n.replace("+", "p").replace(".", "_") for n in args.classes]
        for cmd in cgroups.remove_argvs(version, cluster, nodes):
            run_quietly(cmd)
    leftovers = [
        str(d) for d in cgroups.cluster_dirs(version, cluster) if Path(str(d)).exists()
    ]
    if leftovers:
        print(f"left behind: {', '.join(leftovers)}", file=sys.stderr)
        return 1
    return 0


def run_quietly(cmd: list[str]) -> None:
    """Run a clean-up command; a failure shows as a leftover afterwards."""
    import subprocess

    subprocess.run(cmd, check=False, capture_output=True)


if __name__ == "__main__":
    raise SystemExit(main())
