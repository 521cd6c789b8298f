"""RealFM: b_fed > b_local for every device, utilities above the linear mechanism.

Two parts, over several seeds (each seed draws 8 devices' marginal costs,
uniform in [0.5, 1.5] x the mean, payoff scale 1):

1. **Mechanism** (``strategies/realfm.py:equilibrium``), at the mean costs
   given (default 1e-4 and 1e-3 per data point, the paper's range). Printed per
   mechanism (RealFM's non-linear payoff, and the linear payoff of the
   mechanisms RealFM is compared with): total b_local and b_fed, how many
   devices contribute more under the mechanism, mean device utility, server
   utility, and the RealFM / linear ratios in orders of magnitude (log10).
2. **Training on the contributions the mechanism set** (mean cost
   ``--train-cost``, where contributions are thousands of points): each device
   holds a pool of generated samples (``make_classification``, nothing
   downloaded) and trains a small MLP with FedAvg on exactly its
   contribution (``strategies.realfm.contribution``), once with the local
   optima b_local (devices whose b_local is 0 sit out) and once with RealFM's
   b_fed, once with the linear mechanism's b_fed. Printed: test accuracy
   per seed and the paired differences.

    .venv/bin/python -m bench.methods_realfm [--seeds 0 1 2 3 4] [--costs 1e-4 1e-3]
        [--train-cost 5e-3] [--rounds 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from strategies.realfm import (
    CONTRIBUTION_KEY,
    Device,
    Equilibrium,
    contribution,
    equilibrium,
)

NUM_DEVICES = 8


def draw_devices(seed: int, mean_cost: float) -> list[Device]:
    """``NUM_DEVICES`` devices, costs uniform in [0.5, 1.5] x ``mean_cost``."""
    rng = np.random.default_rng(seed)
    costs = rng.uniform(0.5 * mean_cost, 1.5 * mean_cost, NUM_DEVICES)
    return [Device(float(c)) for c in costs]


def mechanism_row(outcome: Equilibrium) -> dict[str, float]:
    """The figures one mechanism's outcome is judged by."""
    devices = outcome.devices
    return {
        "total_local": outcome.total_local,
        "total_fed": outcome.total_fed,
        "devices_above_local": sum(d.b_fed > d.b_local for d in devices),
        "device_utility_local": statistics.fmean(d.utility_local for d in devices),
        "device_utility_fed": statistics.fmean(d.utility_fed for d in devices),
        "min_device_gain": min(d.utility_fed - d.utility_local for d in devices),
        "server_utility": outcome.server_utility_fed,
        "a_fed": outcome.a_fed,
    }


def _log_ratio(a: float, b: float) -> float:
    return math.log10(a / b) if a > 0 and b > 0 else float("nan")


def mechanism_study(seeds: Sequence[int], costs: Sequence[float]) -> list[dict]:
    """Part 1: both mechanisms per seed and mean cost."""
    rows = []
    for mean_cost in costs:
        for seed in seeds:
            devices = draw_devices(seed, mean_cost)
            real = mechanism_row(equilibrium(devices, kind="nonlinear"))
            linear = mechanism_row(equilibrium(devices, kind="linear"))
            rows.append(
                {
                    "mean_cost": mean_cost,
                    "seed": seed,
                    "realfm": real,
                    "linear": linear,
                    "log10_device_utility": _log_ratio(
                        real["device_utility_fed"], linear["device_utility_fed"]
                    ),
                    "log10_server_utility": _log_ratio(
                        real["server_utility"], linear["server_utility"]
                    ),
                    "log10_data": _log_ratio(real["total_fed"], linear["total_fed"]),
                }
            )
    return rows


# --- part 2: training on the contributions ------------------------------------


def _data(
    seed: int, pool: int
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=NUM_DEVICES * pool + 4000,
        n_features=30,
        n_informative=15,
        n_redundant=5,
        n_classes=10,
        n_clusters_per_class=2,
        class_sep=1.0,
        flip_y=0.02,
        random_state=seed,
    )
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.int64)
    pools = [
        (xt[i * pool : (i + 1) * pool], yt[i * pool : (i + 1) * pool])
        for i in range(NUM_DEVICES)
    ]
    test = (xt[NUM_DEVICES * pool :], yt[NUM_DEVICES * pool :])
    return pools, test


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 10))


def fedavg_on(
    counts: Sequence[int],
    pools: Sequence[tuple[torch.Tensor, torch.Tensor]],
    test: tuple[torch.Tensor, torch.Tensor],
    seed: int,
    rounds: int,
) -> float:
    """FedAvg where device i trains on ``counts[i]`` of its samples (0: sits out)."""
    model = _mlp(seed)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(rounds):
        states, weights = [], []
        for count, (x, y) in zip(counts, pools, strict=True):
            if count <= 0:
                continue
            # The node's side: the contribution arrives in the train config.
            n = contribution({CONTRIBUTION_KEY: count}, len(x))
            local = _mlp(seed)
            local.load_state_dict(model.state_dict())
            opt = torch.optim.SGD(local.parameters(), lr=0.05, momentum=0.9)
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, 64):
                idx = order[start : start + 64]
                opt.zero_grad()
                F.cross_entropy(local(x[idx]), y[idx]).backward()
                opt.step()
            states.append(local.state_dict())
            weights.append(float(n))
        total = sum(weights)
        model.load_state_dict(
            {
                k: sum(w * s[k] for w, s in zip(weights, states, strict=True)) / total
                for k in states[0]
            }
        )
    with torch.no_grad():
        return float((model(test[0]).argmax(1) == test[1]).float().mean())


def training_study(seeds: Sequence[int], mean_cost: float, rounds: int) -> list[dict]:
    """Part 2: accuracy of FedAvg on b_local, RealFM's b_fed and linear's b_fed."""
    rows = []
    for seed in seeds:
        devices = draw_devices(seed, mean_cost)
        real = equilibrium(devices, kind="nonlinear")
        linear = equilibrium(devices, kind="linear")
        plans = {
            "b_local": [d.b_local for d in real.devices],
            "realfm": [d.b_fed for d in real.devices],
            "linear": [d.b_fed for d in linear.devices],
        }
        pool = max(max(p) for p in plans.values())
        pools, test = _data(seed, pool)
        row: dict = {"seed": seed, "samples": {k: sum(v) for k, v in plans.items()}}
        for name, counts in plans.items():
            # None: no device contributes anything, so there is no model.
            row[name] = (
                fedavg_on(counts, pools, test, seed, rounds) if sum(counts) else None
            )
        rows.append(row)
    return rows


def _summary(values: Sequence[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4g} ± {sd:.2g}"


def print_mechanism(rows: Sequence[dict]) -> None:
    """Part 1's tables."""
    print("\n## Mechanism: RealFM (non-linear payoff) vs the linear-payoff mechanism")
    print(
        "| mean cost | mechanism | seeds | total b_local | total b_fed"
        " | devices b_fed > b_local (worst seed) | min device gain"
        " | device utility | server utility | a_fed |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cost in sorted({r["mean_cost"] for r in rows}):
        mine = [r for r in rows if r["mean_cost"] == cost]
        for kind in ("realfm", "linear"):
            col = [r[kind] for r in mine]
            print(
                f"| {cost:g} | {kind} | {len(col)} "
                f"| {_summary([c['total_local'] for c in col])} "
                f"| {_summary([c['total_fed'] for c in col])} "
                f"| {min(c['devices_above_local'] for c in col)} of {NUM_DEVICES} "
                f"| {min(c['min_device_gain'] for c in col):.3g} "
                f"| {_summary([c['device_utility_fed'] for c in col])} "
                f"| {_summary([c['server_utility'] for c in col])} "
                f"| {_summary([c['a_fed'] for c in col])} |"
            )
    print("\nRealFM / linear, log10 (orders of magnitude), per seed:")
    print("| mean cost | device utility | server utility | data contributed |")
    print("|---|---|---|---|")
    for cost in sorted({r["mean_cost"] for r in rows}):
        mine = [r for r in rows if r["mean_cost"] == cost]
        cells = [
            " ".join(f"{r[key]:.2f}" for r in mine)
            for key in ("log10_device_utility", "log10_server_utility", "log10_data")
        ]
        print(f"| {cost:g} | " + " | ".join(cells) + " |")


def _acc(value: float | None) -> str:
    return "- (nobody contributes)" if value is None else f"{value:.4f}"


def print_training(rows: Sequence[dict]) -> None:
    """Part 2's tables with paired differences."""
    print("\n## Training on the contributions the mechanism set (FedAvg, MLP)")
    print(
        "| seed | samples b_local / realfm / linear"
        " | acc b_local | acc realfm | acc linear |"
    )
    print("|---:|---|---:|---:|---:|")
    for r in rows:
        s = r["samples"]
        print(
            f"| {r['seed']} | {s['b_local']} / {s['realfm']} / {s['linear']} "
            f"| {_acc(r['b_local'])} | {_acc(r['realfm'])} | {_acc(r['linear'])} |"
        )
    print("\n| paired difference | per seed | mean | sd | seeds > 0 |")
    print("|---|---|---:|---:|---:|")
    for a, b in (("realfm", "b_local"), ("realfm", "linear")):
        diffs = [r[a] - r[b] for r in rows if r[a] is not None and r[b] is not None]
        if not diffs:
            print(f"| {a} - {b} | no seed where both trained | | | |")
            continue
        sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        print(
            f"| {a} - {b} | {' '.join(f'{d:+.4f}' for d in diffs)} "
            f"| {statistics.fmean(diffs):+.4f} | {sd:.4f} "
            f"| {sum(d > 0 for d in diffs)} of {len(diffs)} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run both parts and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--costs", type=float, nargs="+", default=[1e-4, 1e-3])
    parser.add_argument("--train-cost", type=float, default=5e-3)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", default=None, help="Also write the rows here.")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.monotonic()
    mechanism = mechanism_study(args.seeds, args.costs)
    print_mechanism(mechanism)
    training = training_study(args.seeds, args.train_cost, args.rounds)
    print_training(training)
    print(f"\nwall time {time.monotonic() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"mechanism": mechanism, "training": training}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
