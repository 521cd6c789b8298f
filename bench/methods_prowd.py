"""Issue 19, method 2: ProWD >= grouped > naive averaging on full-precision accuracy.

In-process federated training on scikit-learn's digits with the pieces of
``strategies/prowd.py``: 12 clients (by default 4 each at 32, 4 and 2 bits,
so most are low-bit) split the training pool (IID, or Dirichlet with
``--alpha``); every round each client receives the global model re-quantised
to its bitwidth (``BitwidthServer.model_for``), trains it quantised with the
straight-through estimator (``quantised_train``) and sends back its quantised
weights; the server merges them (``BitwidthServer.aggregate``) by one of:

* ``naive``: mean of every update as received;
* ``grouped``: one model per bitwidth; the full-precision group's is measured;
* ``prowd``: progressive dequantiser + selective (compatible-only) averaging.

Measured: the full-precision model's test accuracy after ``--rounds`` (the
model a 32-bit client receives), mean, standard deviation and per seed, and
the paired differences per seed (same split and initialisation). The digits
are pooled back to their native 8x8.

    .venv/bin/python -m bench.methods_prowd [--seeds 0 1 2 3 4] [--rounds 30]
        [--bitwidths 32 4 2] [--clients 12] [--alpha A]
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

from strategies.prowd import (
    BitwidthServer,
    BitwidthUpdate,
    assign_bitwidths,
    quantised_train,
)
from strategies.settings import (
    BITWIDTH_AGGREGATIONS,
    FULL_PRECISION,
    BitwidthAggregation,
    ProWDConfig,
)
from workloads.digits import partition, test_set
from workloads.training import evaluate


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


def run(
    aggregation: BitwidthAggregation,
    seed: int,
    *,
    bitwidths: Sequence[int],
    clients: int,
    rounds: int,
    alpha: float | None,
    lr: float,
    compatibility: float,
) -> tuple[float, float]:
    """Full-precision test accuracy after ``rounds``; share of rejected updates."""
    x_test, y_test = test_set()
    x_test = F.avg_pool2d(x_test, 4)
    data = []
    for client in range(clients):
        share = partition(
            client, clients, seed=seed, dirichlet_alpha=alpha, validation_fraction=0.0
        )
        data.append((F.avg_pool2d(share.x_train, 4), share.y_train))
    bits_of = assign_bitwidths(range(clients), bitwidths)
    model = small_cnn(seed)
    server = BitwidthServer(
        ProWDConfig(
            bitwidths=tuple(bitwidths),
            aggregation=aggregation,
            compatibility=compatibility,
            seed=seed,
        ),
        {k: v.clone() for k, v in model.state_dict().items()},
    )
    rejected, considered = 0, 0
    for server_round in range(1, rounds + 1):
        updates = []
        for client, (x, y) in enumerate(data):
            bits = bits_of[client]
            local = small_cnn(seed)
            local.load_state_dict(server.model_for(bits))
            quantised_train(
                local,
                x,
                y,
                bits,
                lr=lr,
                batch_size=32,
                seed=seed * 100_000 + server_round * 100 + client,
            )
            updates.append(BitwidthUpdate(local.state_dict(), bits, len(y)))
        server.aggregate(updates)
        rejected += len(server.last_rejected)
        considered += sum(v.ndim >= 2 for v in server.global_state.values()) * (
            len(set(bitwidths)) - 1
        )
    model.load_state_dict(server.model_for(FULL_PRECISION))
    return evaluate(model, x_test, y_test).accuracy, rejected / max(1, considered)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every aggregation over every seed and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--bitwidths", type=int, nargs="+", default=[32, 4, 2])
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--alpha", type=float, default=None)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--compatibility", type=float, default=0.0)
    parser.add_argument(
        "--aggregations", nargs="+", default=list(BITWIDTH_AGGREGATIONS[::-1])
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.monotonic()
    split = "IID" if args.alpha is None else f"Dirichlet alpha {args.alpha}"
    print(
        f"{args.clients} clients at bitwidths {args.bitwidths} (cyclic), {split},"
        f" rounds {args.rounds}, lr {args.lr}, compatibility {args.compatibility},"
        f" seeds {args.seeds}"
    )
    results: dict[str, list[float]] = {}
    print(f"{'aggregation':<11} {'mean':>6} {'sd':>6} {'rejected':>8}  per seed")
    for aggregation in args.aggregations:
        runs = [
            run(
                aggregation,
                seed,
                bitwidths=args.bitwidths,
                clients=args.clients,
                rounds=args.rounds,
                alpha=args.alpha,
                lr=args.lr,
                compatibility=args.compatibility,
            )
            for seed in args.seeds
        ]
        accs = [a for a, _ in runs]
        results[aggregation] = accs
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(
            f"{aggregation:<11} {statistics.mean(accs):6.3f} {spread:6.3f}"
            f" {statistics.mean(r for _, r in runs):8.3f}  "
            + " ".join(f"{a:.3f}" for a in accs),
            flush=True,
        )
    for better, worse in (("prowd", "grouped"), ("grouped", "naive")):
        if better not in results or worse not in results:
            continue
        diffs = [b - w for b, w in zip(results[better], results[worse], strict=True)]
        spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        print(
            f"{better} - {worse}: mean {statistics.mean(diffs):+.3f} sd {spread:.3f},"
            f" {sum(d > 0 for d in diffs)} of {len(diffs)} seeds > 0,"
            f" {sum(d >= 0 for d in diffs)} >= 0: "
            + " ".join(f"{d:+.3f}" for d in diffs)
        )
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
