"""Issue 20, method 1: MAS (merge and split) against all-in-one and independent tasks.

In-process federated training on scikit-learn's digits (pooled to 8x8) with
the pieces of ``strategies/mas.py``: ``--clients`` clients split the training
pool (IID); five tasks share them (class, parity, >= 5, round shape,
reconstruction). Three ways to train them for ``--rounds`` rounds, same split
and initialisation per seed:

* ``merged`` (all-in-one): one encoder, five heads, every round;
* ``independent``: one encoder per task from round 1 (five FL tasks);
* ``mas``: merged for ``--merge-rounds`` rounds; in the last of them every
  client measures look-ahead affinities after training, the server averages
  them and splits the tasks into ``--groups`` groups (``best_partition``);
  each group goes on from the merged weights.

Measured per run: every task's test loss and their sum (total loss), the
class task's test accuracy, client compute-seconds (process CPU time of the
clients' local work, affinities included) and bytes on the wire (float32
bytes of the parameters exchanged, both directions, summed over clients and
rounds). The claim: MAS's total loss within ``--tolerance`` of the best of
merged and independent, at about half the cost of independent.

    .venv/bin/python -m bench.methods_mas [--seeds 0 1 2 3 4] [--rounds 30]
        [--merge-rounds 5] [--groups 2] [--clients 6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812

from strategies.mas import (
    TASKS,
    MultiTaskNet,
    affinities,
    average,
    best_partition,
    multitask_train,
    shared_keys,
    split_state,
    task_targets,
    task_test_losses,
)
from workloads.digits import partition, test_set

MODES = ("merged", "independent", "mas")


@dataclass(frozen=True)
class Run:
    """One training run's outcome."""

    losses: tuple[float, ...]
    accuracy: float
    compute_s: float
    megabytes: float
    groups: str


def _bytes(state: dict[str, torch.Tensor]) -> int:
    return sum(v.numel() * v.element_size() for k, v in state.items())


def run(
    mode: str,
    seed: int,
    *,
    clients: int,
    rounds: int,
    merge_rounds: int,
    groups: int,
    lr: float,
    hidden: int,
) -> Run:
    """Train the five tasks one way; return test losses and costs."""
    x_test, y_test = test_set()
    x_test = F.avg_pool2d(x_test, 4)
    data = []
    for client in range(clients):
        share = partition(client, clients, seed=seed, validation_fraction=0.0)
        data.append((F.avg_pool2d(share.x_train, 4), share.y_train))
    torch.manual_seed(seed)
    model = MultiTaskNet(1, hidden)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    split: tuple[tuple[int, ...], ...] | None = None
    if mode == "independent":
        split = tuple((t,) for t in range(len(TASKS)))
        state = split_state(state, split)
    compute, wire = 0.0, 0
    for server_round in range(1, rounds + 1):
        measure = mode == "mas" and split is None and server_round >= merge_rounds
        sent = {k: state[k] for k in shared_keys(state)}
        updates, measured = [], []
        for client, (x, y) in enumerate(data):
            local = MultiTaskNet(1, hidden)
            local.load_state_dict(state)
            local.load_state_dict(sent, strict=False)
            wire += _bytes(sent)
            start = time.process_time()
            client_seed = seed * 100_000 + server_round * 100 + client
            multitask_train(local, x, y, lr=lr, batch_size=32, seed=client_seed)
            if measure:
                z = affinities(
                    local,
                    x,
                    task_targets(x, y),
                    lr=lr,
                    batches=4,
                    batch_size=32,
                    seed=client_seed,
                )
                measured.append((z, len(y)))
            compute += time.process_time() - start
            reply = {k: v for k, v in local.state_dict().items() if k in sent}
            wire += _bytes(reply)
            updates.append((reply, len(y)))
        state.update(average(updates))
        if measured:
            total = sum(n for _, n in measured)
            mean = sum(z * (n / total) for z, n in measured)
            assert isinstance(mean, torch.Tensor)
            split = best_partition(mean, groups)
            state = split_state(state, split)
    model.load_state_dict(state)
    losses = task_test_losses(model, x_test, y_test)
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(1) == y_test).float().mean())
    names = (
        "all"
        if split is None
        else "|".join("+".join(TASKS[t] for t in g) for g in split)
    )
    return Run(tuple(losses), accuracy, compute, wire / 1e6, names)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every mode over every seed and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--merge-rounds", type=int, default=5)
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--tolerance", type=float, default=0.05)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.monotonic()
    print(
        f"{args.clients} clients (IID), tasks {', '.join(TASKS)}, rounds"
        f" {args.rounds}, merge rounds {args.merge_rounds}, groups {args.groups},"
        f" lr {args.lr}, hidden {args.hidden}, seeds {args.seeds}"
    )
    header = " ".join(f"{t:>7}" for t in TASKS)
    print(
        f"{'mode':<12} {header} {'total':>7} {'acc':>6} {'cpu s':>7} {'MB':>7}"
        "  groups (per seed)"
    )
    # warm-up (first-call costs would land on the first mode's CPU seconds)
    run("mas", 0, clients=2, rounds=2, merge_rounds=1, groups=2, lr=0.05, hidden=8)
    results: dict[str, list[Run]] = {}
    for mode in MODES:
        runs = [
            run(
                mode,
                seed,
                clients=args.clients,
                rounds=args.rounds,
                merge_rounds=args.merge_rounds,
                groups=args.groups,
                lr=args.lr,
                hidden=args.hidden,
            )
            for seed in args.seeds
        ]
        results[mode] = runs
        per_task = " ".join(
            f"{statistics.mean(r.losses[t] for r in runs):7.4f}"
            for t in range(len(TASKS))
        )
        print(
            f"{mode:<12} {per_task} {statistics.mean(sum(r.losses) for r in runs):7.4f}"
            f" {statistics.mean(r.accuracy for r in runs):6.3f}"
            f" {statistics.mean(r.compute_s for r in runs):7.2f}"
            f" {statistics.mean(r.megabytes for r in runs):7.2f}  "
            + "; ".join(r.groups for r in runs),
            flush=True,
        )
    holds = 0
    for i, seed in enumerate(args.seeds):
        totals = {m: sum(results[m][i].losses) for m in MODES}
        best = min(totals["merged"], totals["independent"])
        ratio = totals["mas"] / best
        cpu = results["mas"][i].compute_s / results["independent"][i].compute_s
        wire = results["mas"][i].megabytes / results["independent"][i].megabytes
        ok = ratio <= 1 + args.tolerance
        holds += ok
        print(
            f"seed {seed}: mas total / best(merged, independent) = {ratio:.3f}"
            f" ({'within' if ok else 'outside'} {args.tolerance:.0%});"
            f" mas / independent cost: cpu {cpu:.2f}, bytes {wire:.2f}"
        )
    print(f"loss claim within {args.tolerance:.0%}: {holds} of {len(args.seeds)} seeds")
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
