"""Issue 19, method 1: FedLabel > FedAvg with global pseudo-labels > labels only.

In-process federated training on scikit-learn's digits with the client round
of ``strategies/fedlabel.py`` (``train_round``, ``split_labelled``): 10
clients with a non-IID (Dirichlet) split of the training pool, each keeping
the labels of only ``--label-fractions`` of its samples; the server is plain
FedAvg (example-weighted mean of the returned models). Three teachers, same
steps per round:

* ``none``: FedAvg on the labelled samples only;
* ``global``: FedAvg + FixMatch with the received global model as teacher;
* ``fedlabel``: the more confident of the client's kept local model and the
  global model pseudo-labels, both are trained, consistency where they agree.

Printed per label fraction and teacher: the global model's test accuracy
after ``--rounds`` (and at ``--checkpoints``), mean, standard deviation and
per seed; then the paired differences per seed (same split, same
initialisation, same labelled samples), their mean and how many seeds are
positive. The digits are pooled back to their native 8x8.

    .venv/bin/python -m bench.methods_fedlabel [--seeds 0 1 2 3] [--rounds 40]
        [--label-fractions 0.05 0.1 0.2] [--alpha 0.5] [--threshold 0.9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from strategies.fedlabel import split_labelled, train_round
from strategies.settings import TEACHERS, FedLabelConfig, Teacher
from workloads.digits import partition, test_set
from workloads.training import evaluate

NUM_CLIENTS = 10


def small_cnn(seed: int) -> nn.Sequential:
    """Two 3x3 convolutions (16, 32 channels) with pooling and a linear head (8x8)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, 10),
    )


def fedavg(states: Sequence[tuple[dict[str, torch.Tensor], int]]) -> dict:
    """Example-weighted mean of the clients' state dicts."""
    total = sum(n for _, n in states)
    return {
        key: sum(state[key] * (n / total) for state, n in states)
        for key in states[0][0]
    }


def run(
    teacher: Teacher,
    label_fraction: float,
    seed: int,
    *,
    rounds: int,
    checkpoints: Sequence[int],
    alpha: float,
    threshold: float,
    lr: float,
) -> dict[int, float]:
    """Global test accuracy after each checkpoint round (and the last)."""
    config = FedLabelConfig(
        teacher=teacher, label_fraction=label_fraction, threshold=threshold
    )
    x_test, y_test = test_set()
    x_test = F.avg_pool2d(x_test, 4)
    clients = []
    for client in range(NUM_CLIENTS):
        share = partition(
            client,
            NUM_CLIENTS,
            seed=seed,
            dirichlet_alpha=alpha,
            validation_fraction=0.0,
        )
        clients.append(
            split_labelled(
                F.avg_pool2d(share.x_train, 4), share.y_train, label_fraction
            )
        )
    model = small_cnn(seed)
    global_state = {k: v.clone() for k, v in model.state_dict().items()}
    locals_: list[dict[str, torch.Tensor]] = [dict(global_state)] * NUM_CLIENTS
    accuracy: dict[int, float] = {}
    for server_round in range(1, rounds + 1):
        returned = []
        for client, (labelled, unlabelled) in enumerate(clients):
            shared = small_cnn(seed)
            shared.load_state_dict(global_state)
            local = small_cnn(seed)
            local.load_state_dict(locals_[client])
            train_round(
                shared,
                local,
                labelled,
                unlabelled,
                config,
                lr=lr,
                batch_size=32,
                seed=seed * 100_000 + server_round * 100 + client,
            )
            if teacher == "fedlabel":
                locals_[client] = local.state_dict()
            returned.append((shared.state_dict(), len(labelled[1]) + len(unlabelled)))
        global_state = fedavg(returned)
        if server_round in checkpoints or server_round == rounds:
            model.load_state_dict(global_state)
            accuracy[server_round] = evaluate(model, x_test, y_test).accuracy
    return accuracy


def main(argv: Sequence[str] | None = None) -> int:
    """Run every teacher over every label fraction and seed; print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--checkpoints", type=int, nargs="*", default=[20])
    parser.add_argument(
        "--label-fractions", type=float, nargs="+", default=[0.05, 0.1, 0.2]
    )
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--teachers", nargs="+", default=list(TEACHERS[::-1]))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.monotonic()
    print(
        f"{NUM_CLIENTS} clients, Dirichlet alpha {args.alpha}, rounds {args.rounds},"
        f" threshold {args.threshold}, lr {args.lr}, seeds {args.seeds}"
    )
    marks = sorted({*args.checkpoints, args.rounds})
    for fraction in args.label_fractions:
        results: dict[str, list[dict[int, float]]] = {}
        for teacher in args.teachers:
            results[teacher] = [
                run(
                    teacher,
                    fraction,
                    seed,
                    rounds=args.rounds,
                    checkpoints=args.checkpoints,
                    alpha=args.alpha,
                    threshold=args.threshold,
                    lr=args.lr,
                )
                for seed in args.seeds
            ]
        print(f"\nlabels {fraction:.0%}  (elapsed {time.monotonic() - started:.0f} s)")
        for mark in marks:
            print(f"  round {mark}: teacher  mean    sd    per seed")
            for teacher, runs in results.items():
                accs = [r[mark] for r in runs]
                spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
                print(
                    f"    {teacher:<9} {statistics.mean(accs):.3f} {spread:.3f}  "
                    + " ".join(f"{a:.3f}" for a in accs)
                )
            for better, worse in (("fedlabel", "global"), ("global", "none")):
                if better not in results or worse not in results:
                    continue
                diffs = [
                    b[mark] - w[mark]
                    for b, w in zip(results[better], results[worse], strict=True)
                ]
                spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
                print(
                    f"    {better} - {worse}: mean {statistics.mean(diffs):+.3f}"
                    f" sd {spread:.3f}, {sum(d > 0 for d in diffs)} of"
                    f" {len(diffs)} seeds > 0: " + " ".join(f"{d:+.3f}" for d in diffs),
                    flush=True,
                )
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
