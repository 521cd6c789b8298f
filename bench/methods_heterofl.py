"""Claim 2 of issue 5: with no full-capacity client, rolling and random beat static.

In-process federated training on scikit-learn's digits (IID split over the
clients, 8x8 inputs, plain torch loops), using exactly the extraction and
aggregation of ``strategies/heterofl.py``: every round the server cuts one
sub-model per client (``round_masks`` + ``extract_submodel``), each client
trains its reduced-width copy (``build_submodel``), and the server merges them
with ``aggregate_by_coverage``. After the last round the FULL model is
evaluated on the held-out test set. Printed per method: full-model test
accuracy (mean and sample standard deviation over seeds, and the per-seed
values), Gamma* (minimum over rounds and parameters of the number of clients
covering a parameter) and the share of parameters no client ever trained. A
run in which every client holds the full model (FedAvg) is the ceiling.

The CNN has BatchNorm layers that normalise with the statistics of the batch
at hand, in training and in evaluation (``track_running_stats=False``; the
test set is evaluated in batches of 256), standing in for HeteroFL's static
BN. Without normalisation (``--no-norm``) the full model's activations are
about ``1/r`` times larger per layer than any sub-model's, and only static,
whose extra channels stay near their small initial weights, survives; see
docs/methods-heterofl.md for those figures.

    .venv/bin/python -m bench.methods_heterofl [--seeds 0 1 2 3 4] [--rounds 40]
        [--ratios 0.5 0.5 0.25 0.25] [--no-norm] [--scaler] [--no-tile]
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
from torch import nn

from strategies.heterofl import (
    ClientResult,
    CoverageTracker,
    ExtractionMode,
    aggregate_by_coverage,
    attach_scaler,
    build_submodel,
    extract_submodel,
    plan_from_model,
    round_masks,
)
from workloads.digits import partition, test_set
from workloads.training import evaluate, train


def small_cnn(seed: int, width: int = 32, norm: bool = False) -> nn.Sequential:
    """Three 3x3 conv blocks (w, 2w, 4w channels), global pooling, a linear head.

    With ``norm`` each convolution is followed by a BatchNorm that always uses
    the statistics of the batch at hand (``track_running_stats=False``), as
    HeteroFL's static BN does while training: a sub-model and the full model
    then normalise their own activations, whatever their width.
    """
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    channels = [1, width, 2 * width, 4 * width]
    for index in range(3):
        layers.append(nn.Conv2d(channels[index], channels[index + 1], 3, padding=1))
        if norm:
            layers.append(
                nn.BatchNorm2d(channels[index + 1], track_running_stats=False)
            )
        layers.append(nn.ReLU())
        layers.append(nn.MaxPool2d(2) if index < 2 else nn.AdaptiveAvgPool2d(1))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * width, 10))


@dataclass(frozen=True)
class RunResult:
    """One method and seed: final full-model accuracy and coverage statistics."""

    accuracy: float
    # The largest client's sub-model of the last round, evaluated on its own.
    submodel_accuracy: float
    gamma_star: int
    never_covered: float
    seconds: float


def run(
    mode: ExtractionMode,
    ratios: Sequence[float],
    seed: int,
    *,
    rounds: int,
    lr: float,
    epochs: int,
    scaler: bool,
    tile: bool = True,
    norm: bool = False,
    rolling_step: int = 1,
) -> RunResult:
    """Federated training of the small CNN with sub-models cut by ``mode``."""
    start = time.monotonic()
    template = small_cnn(seed, norm=norm)
    plan = plan_from_model(template)
    state = {k: v.numpy().copy() for k, v in template.state_dict().items()}
    shares = [
        partition(i, len(ratios), seed=seed, validation_fraction=0.0)
        for i in range(len(ratios))
    ]
    # The digits are 8x8 scans: pooling the 32x32 upsampled images back to 8x8
    # loses nothing and makes a run about 16x cheaper.
    clients = {
        i: (F.avg_pool2d(share.x_train, 4), share.y_train)
        for i, share in enumerate(shares)
    }
    tracker = CoverageTracker()
    for server_round in range(1, rounds + 1):
        masks = round_masks(
            plan,
            dict(enumerate(ratios)),
            mode,
            server_round=server_round,
            seed=seed,
            rolling_tile=tile,
            rolling_step=rolling_step,
        )
        results = []
        for client, (x_train, y_train) in clients.items():
            sub = extract_submodel(plan, state, masks[client])
            model = build_submodel(
                template, {k: torch.from_numpy(v) for k, v in sub.items()}
            )
            if scaler:
                attach_scaler(model, ratios[client])
            outcome = train(
                model,
                x_train,
                y_train,
                epochs=epochs,
                batch_size=32,
                lr=lr,
                seed=seed * 1000 + server_round * 10 + client,
            )
            trained = {k: v.detach().numpy() for k, v in model.state_dict().items()}
            results.append(ClientResult(trained, masks[client], outcome.num_examples))
        merged = aggregate_by_coverage(plan, state, results)
        tracker.update(merged.coverage)
        state = merged.state
    x_test, y_test = test_set()
    x_test = F.avg_pool2d(x_test, 4)
    largest = max(range(len(ratios)), key=lambda c: ratios[c])
    sub_model = build_submodel(
        template,
        {
            k: torch.from_numpy(v)
            for k, v in extract_submodel(plan, state, masks[largest]).items()
        },
    )
    template.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    accuracy = evaluate(template, x_test, y_test).accuracy
    return RunResult(
        accuracy=accuracy,
        submodel_accuracy=evaluate(sub_model, x_test, y_test).accuracy,
        gamma_star=int(tracker.gamma_star or 0),
        never_covered=tracker.never_covered_fraction,
        seconds=time.monotonic() - start,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run every method over every seed and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument(
        "--ratios", type=float, nargs="+", default=[0.5, 0.5, 0.25, 0.25]
    )
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--scaler", action="store_true", help="HeteroFL's scaler (attach_scaler)"
    )
    parser.add_argument(
        "--no-norm", action="store_true", help="no BatchNorm (see the docstring)"
    )
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument(
        "--no-tile",
        action="store_true",
        help="rolling: every client's window starts at the same channel (FedRolex)",
    )
    parser.add_argument("--rolling-step", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=["static", "random", "rolling"])
    args = parser.parse_args(argv)
    # One thread: these convolutions are too small to gain from two, and one
    # core stays free on a shared 2-core machine.
    torch.set_num_threads(1)
    methods: list[tuple[str, ExtractionMode, list[float]]] = [
        (mode, mode, args.ratios) for mode in args.methods
    ]
    if not args.no_reference:
        methods.append(("full (ref.)", "static", [1.0] * len(args.ratios)))
    print(
        f"ratios {args.ratios}, rounds {args.rounds}, epochs {args.epochs},"
        f" lr {args.lr}, scaler {args.scaler}, tiled rolling"
        f" {not args.no_tile}, batch norm {not args.no_norm}, seeds {args.seeds}"
    )
    print(
        f"{'method':<12} {'acc mean':>8} {'acc sd':>7} {'sub acc':>7} {'Gamma*':>6}"
        f" {'never-cov':>9} {'s/run':>6}  per-seed accuracy"
    )
    for label, mode, ratios in methods:
        runs = [
            run(
                mode,
                ratios,
                seed,
                rounds=args.rounds,
                lr=args.lr,
                epochs=args.epochs,
                scaler=args.scaler,
                tile=not args.no_tile,
                norm=not args.no_norm,
                rolling_step=args.rolling_step,
            )
            for seed in args.seeds
        ]
        accs = [r.accuracy for r in runs]
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(
            f"{label:<12} {statistics.mean(accs):8.3f} {spread:7.3f}"
            f" {statistics.mean(r.submodel_accuracy for r in runs):7.3f}"
            f" {min(r.gamma_star for r in runs):6d}"
            f" {max(r.never_covered for r in runs):9.3f}"
            f" {statistics.mean(r.seconds for r in runs):6.1f}  "
            + " ".join(f"{a:.3f}" for a in accs),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
