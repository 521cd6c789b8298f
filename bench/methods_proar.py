"""Issue 20, method 3: PROAR-PFed over a SIMULATED over-the-air uplink with RIS.

A channel simulation, not real radio: ``strategies.proar.ota_aggregate``
passes the clients' updates through Rayleigh fading, per-user RIS phase
alignment, truncated channel inversion and receiver noise at ``snr_db``.

In-process federated training on scikit-learn's digits pooled to 8x8:
``--clients`` clients with a non-IID (Dirichlet ``--alpha``) split; each keeps
the last 20 % of its share as its own test set. The model is a small MLP
(64-64-32, then a 10-way classifier). PROAR-PFed keeps the classifier on the
client (``personal_keys``) and sends the rest over the air; OTA-FedAvg sends
everything over the air and has no RIS (N = 0). Measured: the mean over
clients of the accuracy on their own test set after ``--rounds`` rounds (the
model each client would use: global body + its own head for PROAR-PFed, the
global model for OTA-FedAvg), mean and per seed, and the mean share of
clients truncated per round. Three sweeps, same split and initialisation per
seed:

* SNR (``--snrs``) at N = ``--ris``, PROAR-PFed and OTA-FedAvg;
* RIS elements (``--elements``) at SNR ``--sweep-snr``, PROAR-PFed.

    .venv/bin/python -m bench.methods_proar [--seeds 0 1 2] [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from strategies.proar import flatten, ota_aggregate, personal_keys, unflatten
from strategies.settings_iii import OTAConfig
from workloads.digits import partition


def mlp(seed: int) -> nn.Sequential:
    """64-64-32 ReLU body and a 10-way classifier head."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def _train(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, seed: int
) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    for start in range(0, len(x), 16):
        batch = order[start : start + 16]
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[batch]), y[batch]).backward()  # type: ignore[no-untyped-call]
        optimizer.step()


def run(
    config: OTAConfig,
    personal: bool,
    seed: int,
    *,
    clients: int,
    rounds: int,
    alpha: float,
    lr: float,
) -> tuple[float, float]:
    """Mean personal test accuracy after ``rounds``; mean truncated share."""
    data = []
    for client in range(clients):
        share = partition(client, clients, seed=seed, dirichlet_alpha=alpha)
        data.append(
            (
                F.avg_pool2d(share.x_train, 4),
                share.y_train,
                F.avg_pool2d(share.x_val, 4),
                share.y_val,
            )
        )
    model = mlp(seed)
    local = personal_keys(model) if personal else frozenset()
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    keys = sorted(k for k in state if k not in local)
    heads = [{k: state[k].copy() for k in local} for _ in range(clients)]
    rng = np.random.default_rng(seed)
    truncated = 0.0
    for server_round in range(1, rounds + 1):
        start = flatten(state, keys)
        updates, weights = [], []
        for client, (x, y, _, _) in enumerate(data):
            net = mlp(seed)
            net.load_state_dict(
                {
                    k: torch.from_numpy(v.copy())
                    for k, v in {**state, **heads[client]}.items()
                }
            )
            _train(net, x, y, lr, seed * 100_000 + server_round * 100 + client)
            trained = {
                k: v.detach().numpy().copy() for k, v in net.state_dict().items()
            }
            heads[client] = {k: trained[k] for k in local}
            updates.append(flatten(trained, keys) - start)
            weights.append(float(len(y)))
        result = ota_aggregate(updates, weights, config, rng)
        truncated += result.truncated / clients
        if result.estimate is not None:
            state.update(unflatten(start + result.estimate, state, keys))
    accuracies = []
    for client, (_, _, xv, yv) in enumerate(data):
        if len(yv) == 0:
            continue
        net = mlp(seed)
        net.load_state_dict(
            {
                k: torch.from_numpy(v.copy())
                for k, v in {**state, **heads[client]}.items()
            }
        )
        with torch.no_grad():
            accuracies.append(float((net(xv).argmax(1) == yv).float().mean()))
    return statistics.mean(accuracies), truncated / rounds


def _row(label: str, runs: list[tuple[float, float]]) -> list[float]:
    accs = [a for a, _ in runs]
    spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
    print(
        f"{label:<34} {statistics.mean(accs):6.3f} {spread:6.3f}"
        f" {statistics.mean(t for _, t in runs):9.3f}  "
        + " ".join(f"{a:.3f}" for a in accs),
        flush=True,
    )
    return accs


def main(argv: Sequence[str] | None = None) -> int:
    """Run the SNR and RIS sweeps and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--alpha", type=float, default=0.3)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument(
        "--snrs", type=float, nargs="+", default=[-45, -40, -35, -30, -20, -10, 0]
    )
    parser.add_argument("--ris", type=int, default=16)
    parser.add_argument("--elements", type=int, nargs="+", default=[0, 4, 16, 64])
    parser.add_argument("--sweep-snr", type=float, default=-35)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.monotonic()
    print(
        f"SIMULATED channel. {args.clients} clients, Dirichlet alpha {args.alpha},"
        f" rounds {args.rounds}, lr {args.lr}, seeds {args.seeds}; defaults"
        f" {OTAConfig()}"
    )
    print(f"{'run':<34} {'mean':>6} {'sd':>6} {'truncated':>9}  per seed")
    common = {
        "clients": args.clients,
        "rounds": args.rounds,
        "alpha": args.alpha,
        "lr": args.lr,
    }
    proar, fedavg = {}, {}
    for snr in args.snrs:
        cfg = OTAConfig(snr_db=snr, ris_elements=args.ris)
        proar[snr] = _row(
            f"proar-pfed SNR {snr:g} dB, N {args.ris}",
            [run(cfg, True, s, **common) for s in args.seeds],  # type: ignore[arg-type]
        )
        base = replace(cfg, ris_elements=0)
        fedavg[snr] = _row(
            f"ota-fedavg SNR {snr:g} dB, N 0",
            [run(base, False, s, **common) for s in args.seeds],  # type: ignore[arg-type]
        )
    by_n = {}
    for n in args.elements:
        cfg = OTAConfig(snr_db=args.sweep_snr, ris_elements=n)
        by_n[n] = _row(
            f"proar-pfed SNR {args.sweep_snr:g} dB, N {n}",
            [run(cfg, True, s, **common) for s in args.seeds],  # type: ignore[arg-type]
        )
    for snr in args.snrs:
        diffs = [p - f for p, f in zip(proar[snr], fedavg[snr], strict=True)]
        print(
            f"SNR {snr:g} dB: proar-pfed - ota-fedavg mean"
            f" {statistics.mean(diffs):+.3f}, {sum(d > 0 for d in diffs)} of"
            f" {len(diffs)} seeds > 0"
        )
    means = [statistics.mean(proar[s]) for s in args.snrs]
    print(
        "accuracy rises with SNR (means, non-decreasing):",
        all(b >= a for a, b in zip(means, means[1:], strict=False)),
    )
    means = [statistics.mean(by_n[n]) for n in args.elements]
    print(
        "accuracy rises with N (means, non-decreasing):",
        all(b >= a for a, b in zip(means, means[1:], strict=False)),
    )
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
