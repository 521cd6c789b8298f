"""Does a node's CPU quota slow its training as much as the quota says?

Trains the demo's model (campaigns/demo.yaml: digit CNN at width 0.25, 160
samples, batch 16) for ``--epochs`` local epochs in a fresh Python process,
once unthrottled and once per ``--quotas`` value inside a cgroup with that CPU
quota, made the way ``cluster up`` makes a node's (testbed/emulation/cgroups.py:
same argv, same join wrapper) under ``flowerbed/bench-<pid>``, and removed
after. One thread throughout (as an emulated node below one core gets). Prints
each setting's training seconds and its slowdown against unthrottled next to the
expected 1 / quota (quotas >= 1 core: 1x, one thread uses one core).

    sudo .venv/bin/python -m bench.cpu_share [--quotas 1 0.5 0.25] [--epochs 3]
        [--runs 1]

Needs root and a cgroup CPU controller (v1 or v2).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from testbed.commands.cgroupcmd import join_argv
from testbed.emulation import cgroups

TRAIN = """
import time, torch
from strategies.client_side import ModelShape
from strategies.registry import client_side, optimizer_settings
from workloads import digits
from workloads.training import train_with
torch.set_num_threads(1)
side = client_side("fedavg")
model = side.build_model(ModelShape(1, digits.NUM_CLASSES, 0.25, "cnn"))
part = digits.partition(0, 3, samples_per_node=200, seed=0)
opt = side.build_optimizer(model, optimizer_settings("fedavg", {}, lr=0.01))
start = time.perf_counter()
train_with(model, opt, part.x_train, part.y_train, epochs=EPOCHS, batch_size=16, seed=0)
print(time.perf_counter() - start)
"""


def train_seconds(epochs: int, procs: tuple[str, ...]) -> float:
    """Seconds of local training in a fresh process (in ``procs``' groups)."""
    code = TRAIN.replace("EPOCHS", str(epochs))
    argv = join_argv(procs, [sys.executable, "-c", code])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
    return float(done.stdout.strip().splitlines()[-1])


def run(argvs: list[list[str]]) -> None:
    """Run each command to completion (raise on failure)."""
    for cmd in argvs:
        subprocess.run(cmd, check=True, capture_output=True, text=True)


def main() -> int:
    """Time training per quota against unthrottled."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quotas", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    version = cgroups.detect_version()
    if version is None or os.geteuid() != 0:
        print("needs root and a cgroup CPU controller (v1 or v2)", file=sys.stderr)
        return 2
    cluster = f"bench-{os.getpid()}"
    free = statistics.median(train_seconds(args.epochs, ()) for _ in range(args.runs))
    print(f"cgroup {version}, {args.epochs} epoch(s) of the demo model, one thread")
    print("| CPU quota | training (s) | slowdown | expected |")
    print("|---|---|---|---|")
    print(f"| none | {free:.2f} | 1.00x | 1.00x |")
    try:
        for i, quota in enumerate(args.quotas):
            node = f"q{i}"
            limits = cgroups.NodeLimits(node, quota, None, "bench")
            run(cgroups.setup_argvs(version, cluster, limits))
            procs = cgroups.procs_files(version, cluster, node)
            seconds = statistics.median(
                train_seconds(args.epochs, procs) for _ in range(args.runs)
            )
            expected = 1 / min(quota, 1.0)
            print(
                f"| {quota:g} core | {seconds:.2f} | {seconds / free:.2f}x |"
                f" {expected:.2f}x |"
            )
    finally:
        nodes = [f"q{i}" for i in range(len(args.quotas))]
        for cmd in cgroups.remove_argvs(version, cluster, nodes):
            subprocess.run(cmd, check=False, capture_output=True)
    leftovers = [
        str(d) for d in cgroups.cluster_dirs(version, cluster) if Path(str(d)).exists()
    ]
    if leftovers:
        print(f"left behind: {', '.join(leftovers)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
