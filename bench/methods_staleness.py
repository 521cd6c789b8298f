"""Stale updates made fresh by inversion vs staleness weighting vs dropping.

In-process federated training on scikit-learn's digits (8x8 inputs
standardised, a 64-32-10 MLP, nothing downloaded). Intertwined
heterogeneity: four fast clients share the training images of digits 0-7;
one slow client alone holds every training image of digits 8 and 9. Rounds
are synchronous with a deadline: each round the fast clients' updates arrive
in time, while the slow client's update arrives ``--staleness`` rounds late,
computed on the model of that many rounds before (the server keeps a ring
buffer of past models). The server's step is the mean of the round's
updates, with the slow client's stale update

- **dropped** (it never makes the deadline),
- **weighted** by FedBuff's ``1 / (1 + tau) ** 0.5``,
- **stale**: used at full weight as it is, or
- **refreshed** by ``strategies.staleness.Refresher``: inverted into a
  synthetic set, a fresh update computed from it on the current model.

Printed per method over seeds: test accuracy on digits 8 and 9 (the slow
client's classes) and on all digits after the last round, paired differences,
and the server's seconds per inversion.

    .venv/bin/python -m bench.methods_staleness [--seeds 0 1 2 3 4] [--rounds 40]
        [--staleness 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from strategies.fedbuff import staleness_weight
from strategies.staleness import InversionConfig, Refresher

SLOW_CLASSES = (8, 9)
FAST_CLIENTS = 4
METHODS = ("dropped", "weighted", "stale", "refreshed")

State = dict[str, np.ndarray]


def _data(
    seed: int,
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]:
    """Four fast clients on digits 0-7, the slow client (last) on 8 and 9; test set."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    cut = int(0.7 * len(y))
    mean, std = x[:cut].mean(0), x[:cut].std(0) + 1e-6
    xt = torch.tensor((x - mean) / std, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.int64)
    train_x, train_y = xt[:cut], yt[:cut]
    slow = torch.isin(train_y, torch.tensor(SLOW_CLASSES))
    fast_idx = torch.nonzero(~slow).squeeze(1)
    clients = [
        (train_x[part], train_y[part])
        for part in torch.tensor_split(fast_idx, FAST_CLIENTS)
    ]
    clients.append((train_x[slow], train_y[slow]))
    return clients, (xt[cut:], yt[cut:])


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _state(model: nn.Module) -> State:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def local_delta(
    template: nn.Module, start: State, x: torch.Tensor, y: torch.Tensor, seed: int
) -> State:
    """One epoch of minibatch SGD (batch 16, lr 0.05) from ``start``; the delta."""
    template.load_state_dict({k: torch.tensor(v) for k, v in start.items()})
    opt = torch.optim.SGD(template.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=gen)
    for i in range(0, len(x), 16):
        idx = order[i : i + 16]
        opt.zero_grad()
        F.cross_entropy(template(x[idx]), y[idx]).backward()
        opt.step()
    return {k: _state(template)[k] - start[k] for k in start}


def _accuracy(
    model: nn.Module, state: State, test: tuple[torch.Tensor, torch.Tensor]
) -> tuple[float, float]:
    model.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    with torch.no_grad():
        right = model(test[0]).argmax(1) == test[1]
    slow = torch.isin(test[1], torch.tensor(SLOW_CLASSES))
    return float(right[slow].float().mean()), float(right.float().mean())


def run(method: str, seed: int, rounds: int, staleness: int) -> dict[str, float]:
    """One federated run; the slow client's update is ``staleness`` rounds old."""
    clients, test = _data(seed)
    model = _mlp(seed)
    template = _mlp(seed)
    refresher = Refresher(_mlp(seed), (64,), 10, InversionConfig(seed=seed))
    history = [_state(model)]
    for t in range(rounds):
        current = history[-1]
        deltas = [
            local_delta(template, current, x, y, seed * 1000 + t * 10 + i)
            for i, (x, y) in enumerate(clients[:FAST_CLIENTS])
        ]
        weights = [1.0] * len(deltas)
        if t >= staleness and method != "dropped":
            base = history[-1 - staleness]
            x, y = clients[-1]
            stale = local_delta(template, base, x, y, seed * 1000 + t * 10 + 9)
            if method in ("weighted", "stale"):
                deltas.append(stale)
                weights.append(
                    staleness_weight(staleness, 0.5) if method == "weighted" else 1.0
                )
            else:
                refreshed = refresher.refresh(base, stale, current, staleness)
                deltas.append({k: v for k, v in refreshed.delta.items()})
                weights.append(1.0)
        total = sum(weights)
        history.append(
            {
                k: current[k]
                + sum(w * d[k] for w, d in zip(weights, deltas, strict=True)) / total
                for k in current
            }
        )
        del history[: -staleness - 1]  # the ring buffer of past models
    slow_acc, all_acc = _accuracy(model, history[-1], test)
    seconds = refresher.seconds
    return {
        "slow_accuracy": slow_acc,
        "accuracy": all_acc,
        "inversions": len(seconds),
        "seconds_per_inversion": statistics.fmean(seconds) if seconds else 0.0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the three methods over the seeds and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--staleness", type=int, default=10)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.monotonic()
    results = {
        m: [run(m, s, args.rounds, args.staleness) for s in args.seeds] for m in METHODS
    }
    print(
        f"\n## {len(args.seeds)} seeds, {args.rounds} rounds, slow client"
        f" {args.staleness} rounds stale (digits 8 and 9 only on it)"
    )
    print("| method | acc on 8 and 9 | per seed | acc on all | s per inversion |")
    print("|---|---:|---|---:|---:|")
    for m in METHODS:
        rows = results[m]
        slow = [r["slow_accuracy"] for r in rows]
        every = [r["accuracy"] for r in rows]
        secs = [r["seconds_per_inversion"] for r in rows if r["inversions"]]
        sd = statistics.stdev(slow) if len(slow) > 1 else 0.0
        cost = f"{statistics.fmean(secs):.2f}" if secs else "-"
        print(
            f"| {m} | {statistics.fmean(slow):.3f} ± {sd:.3f}"
            f" | {' '.join(f'{v:.3f}' for v in slow)}"
            f" | {statistics.fmean(every):.3f} | {cost} |"
        )
    print("\n| paired difference (acc on 8 and 9) | per seed | mean | seeds > 0 |")
    print("|---|---|---:|---:|")
    for other in ("weighted", "stale", "dropped"):
        diffs = [
            a["slow_accuracy"] - b["slow_accuracy"]
            for a, b in zip(results["refreshed"], results[other], strict=True)
        ]
        print(
            f"| refreshed - {other} | {' '.join(f'{d:+.3f}' for d in diffs)}"
            f" | {statistics.fmean(diffs):+.3f} | {sum(d > 0 for d in diffs)} of"
            f" {len(diffs)} |"
        )
    print(f"\nwall time {time.monotonic() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
