"""FedWon vs FedBN vs FedAvg on Digits-5-lite, and at batch size 1: accuracy study.

Runs each method in-process: five clients (one domain each), plain torch loops
over the very pieces the Flower app uses (the registry's ``ClientSide``:
model variant, optimiser, kept keys in a per-client ``RecordDict`` standing in
for ``context.state``) and the server aggregation functions the strategies
call (Flower's ``aggregate_arrayrecords`` for FedAvg/FedWon,
``strategies.fedbn.average_shared`` for FedBN). Prints a table of mean
per-domain test accuracy (mean and spread over seeds) and writes figures and a
JSON of the numbers to docs/figures/. Two worker processes, one thread each.

    .venv/bin/python -m bench.methods_fedwon [--seeds 0 1] [--model squeezenet]
    .venv/bin/python -m bench.methods_fedwon --methods FedWon FedBN --seeds 5 6
    .venv/bin/python -m bench.methods_fedwon --batch-sizes 16 4 1 --seeds 0 1 2
    .venv/bin/python -m bench.methods_fedwon --sweep 0.03,1.28 FedBN:0.1,1,25,3
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from strategies.client_side import ClientSide, ModelShape, OptimizerSettings
from strategies.fedbn import average_shared
from strategies.registry import client_side
from workloads.digits5 import CHANNELS, DOMAINS, node_data
from workloads.training import evaluate, train_with

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"


@dataclass(frozen=True)
class Method:
    """A method as the study runs it: a client side, how the server averages, lr."""

    label: str
    strategy: str
    lr: float
    batchnorm_everything_shared: bool = False  # FedAvg over the BatchNorm model


@dataclass(frozen=True)
class Study:
    """One cell of the study: rounds, local epochs, batch size, samples, network."""

    rounds: int
    local_epochs: int
    batch_size: int
    samples_per_client: int | None
    width: float = 0.25
    clip_lambda: float = 1.28  # FedWon's AGC threshold (from the sweep)
    model: str = "cnn"  # strategies.client_side.ARCHITECTURES


@dataclass(frozen=True)
class Setup:
    """Per network: each method's learning rate and FedWon's AGC threshold."""

    methods: tuple[Method, ...]
    clip_lambda: float


# Learning rates and AGC thresholds: from sweeps at seed 0 (docs/methods.md).
SETUPS: dict[str, Setup] = {
    # The FedBN/FedWon papers' digit CNN (workloads/digitcnn.py): the study.
    "cnn": Setup(
        (
            Method("FedAvg", "fedavg", 0.02),
            Method("FedAvg+BN", "fedbn", 0.05, batchnorm_everything_shared=True),
            Method("FedBN", "fedbn", 0.05),
            Method("FedWon", "fedwon", 0.03),
        ),
        clip_lambda=1.28,
    ),
    # The measurement study's thin SqueezeNet: the first study, kept to compare.
    "squeezenet": Setup(
        (
            Method("FedAvg", "fedavg", 0.005),  # the plain SqueezeNet diverges at 0.01
            Method("FedAvg+BN", "fedbn", 0.05, batchnorm_everything_shared=True),
            Method("FedBN", "fedbn", 0.05),
            Method("FedWon", "fedwon", 0.02),
        ),
        clip_lambda=0.1,
    ),
}
LABELS = tuple(m.label for m in SETUPS["cnn"].methods)
NETWORK_NAMES = {"cnn": "digit CNN", "squeezenet": "SqueezeNet"}
# "Rounds to target": the first round whose mean per-domain accuracy reaches it.
TARGET_ACCURACY = 0.9


@dataclass(frozen=True)
class RunResult:
    """One run's accuracy per round and client (domain), and what it cost."""

    method: str
    batch_size: int
    seed: int
    lr: float
    curve: list[list[float]]
    seconds: float
    cpu_seconds: float

    @property
    def mean_curve(self) -> list[float]:
        """Mean per-domain accuracy after each round."""
        return [float(np.mean(accuracies)) for accuracies in self.curve]


@dataclass(frozen=True)
class Job:
    """One federated run: a method, a study cell and a seed."""

    method: Method
    study: Study
    seed: int
    lr_scale: float = 1.0

    @property
    def lr(self) -> float:
        """The client learning rate of this run."""
        return self.method.lr * self.lr_scale


def _side(method: Method) -> ClientSide:
    side = client_side(method.strategy)
    if method.batchnorm_everything_shared:
        return replace(side, model_variant="batchnorm-shared", local_keys=_nothing)
    return side


def _nothing(model: torch.nn.Module) -> frozenset[str]:
    return frozenset()


def run(job: Job) -> RunResult:
    """Run one federated training; return mean per-domain accuracy per round."""
    torch.set_num_threads(1)
    side, study = _side(job.method), job.study
    shape = ModelShape(CHANNELS, 10, study.width, study.model)
    torch.manual_seed(job.seed)
    server_model = side.build_model(shape)
    local = side.local_keys(server_model)
    global_arrays = ArrayRecord(side.shared_state(server_model))
    clients = [
        node_data(p, len(DOMAINS), study.samples_per_client, job.seed)
        for p in range(len(DOMAINS))
    ]
    states = [RecordDict() for _ in clients]
    settings = OptimizerSettings(lr=job.lr, clip_lambda=study.clip_lambda)
    curve: list[list[float]] = []
    started, cpu_started = time.monotonic(), time.process_time()
    for rnd in range(1, study.rounds + 1):
        replies, updates = [], []
        for index, (data, state) in enumerate(zip(clients, states, strict=True)):
            model = side.build_model(shape)
            side.load_global(model, global_arrays)
            side.restore_local(model, state)
            result = train_with(
                model,
                side.build_optimizer(model, settings),
                data.x_train,
                data.y_train,
                epochs=study.local_epochs,
                batch_size=study.batch_size,
                seed=job.seed * 1000 + rnd * 10 + index,
            )
            side.keep_local(model, state)
            shared = side.shared_state(model)
            replies.append(
                RecordDict(
                    {
                        "arrays": ArrayRecord(shared),
                        "metrics": MetricRecord({"num-examples": result.num_examples}),
                    }
                )
            )
            updates.append(
                ({k: v.numpy() for k, v in shared.items()}, float(result.num_examples))
            )
        if local:
            averaged = average_shared(updates, local)
            global_arrays = ArrayRecord(
                {k: torch.from_numpy(v) for k, v in averaged.items()}
            )
        else:
            global_arrays = aggregate_arrayrecords(replies, "num-examples")
        accuracies = []
        for data, state in zip(clients, states, strict=True):
            model = side.build_model(shape)
            side.load_global(model, global_arrays)
            side.restore_local(model, state)
            accuracies.append(evaluate(model, data.x_test, data.y_test).accuracy)
        curve.append(accuracies)
    return RunResult(
        method=job.method.label,
        batch_size=study.batch_size,
        seed=job.seed,
        lr=settings.lr,
        curve=curve,
        seconds=time.monotonic() - started,
        cpu_seconds=time.process_time() - cpu_started,
    )


# The main cell: the usual batch size; the second: batch size 1, where batch
# statistics are those of one image. Both well under 10 minutes on 2 cores.
MAIN = Study(rounds=25, local_epochs=1, batch_size=16, samples_per_client=None)
BATCH1 = Study(rounds=10, local_epochs=1, batch_size=1, samples_per_client=128)
# At batch size 1 every method takes 10x smaller steps (one image per step).
BATCH1_LR_SCALE = 0.1
SEEDS = (0, 1, 2, 3, 4)


def cells(model: str) -> tuple[Study, Study]:
    """The two cells (batch 16, batch 1) on ``model`` with its AGC threshold."""
    clip = SETUPS[model].clip_lambda
    return (
        replace(MAIN, model=model, clip_lambda=clip),
        replace(BATCH1, model=model, clip_lambda=clip),
    )


def jobs(
    seeds: Sequence[int], model: str = "cnn", only: Sequence[str] = ()
) -> list[Job]:
    """Every run: all methods at batch size 16, all but plain FedAvg at batch size 1.

    ``only`` keeps the methods with these labels (all when empty).
    """
    main, batch1 = cells(model)
    methods = [m for m in SETUPS[model].methods if not only or m.label in only]
    out = [Job(m, main, s) for s in seeds for m in methods]
    out += [
        Job(m, batch1, s, BATCH1_LR_SCALE)
        for s in seeds
        for m in methods
        if m.label != "FedAvg"
    ]
    return out


@dataclass(frozen=True)
class CellSummary:
    """Final mean per-domain accuracy of one (method, batch size) over seeds."""

    method: str
    batch_size: int
    seeds: int
    mean: float
    std: float
    low: float
    high: float
    per_domain: list[float]
    cpu_seconds: float
    # Per seed, the first round at TARGET_ACCURACY or above (None: never).
    rounds_to_target: list[int | None]


def rounds_to(curve: Sequence[float], target: float) -> int | None:
    """The first round (1-based) whose accuracy is at least ``target``."""
    return next((i + 1 for i, a in enumerate(curve) if a >= target), None)


def summarise(results: Sequence[RunResult]) -> list[CellSummary]:
    """Mean, sample standard deviation and range over seeds, per cell."""
    cells: dict[tuple[str, int], list[RunResult]] = {}
    for r in results:
        cells.setdefault((r.method, r.batch_size), []).append(r)
    rows = []
    for (method, batch), runs in cells.items():
        final = np.array([r.mean_curve[-1] for r in runs])
        per_domain = np.array([r.curve[-1] for r in runs]).mean(axis=0)
        rows.append(
            CellSummary(
                method=method,
                batch_size=batch,
                seeds=len(runs),
                mean=float(final.mean()),
                std=float(final.std(ddof=1)) if len(final) > 1 else 0.0,
                low=float(final.min()),
                high=float(final.max()),
                per_domain=[float(a) for a in per_domain],
                cpu_seconds=float(np.mean([r.cpu_seconds for r in runs])),
                rounds_to_target=[
                    rounds_to(r.mean_curve, TARGET_ACCURACY) for r in runs
                ],
            )
        )
    return rows


def plot(
    results: Sequence[RunResult], rows: Sequence[CellSummary], stem: str, model: str
) -> None:
    """Accuracy curves (mean and min-max band over seeds) and per-domain bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    colours = {label: f"C{i}" for i, label in enumerate(LABELS)}
    for ax, batch in zip(axes, (MAIN.batch_size, BATCH1.batch_size), strict=True):
        for label in LABELS:
            curves = [
                r.mean_curve
                for r in results
                if r.method == label and r.batch_size == batch
            ]
            if not curves:
                continue
            stack = np.array(curves)
            x = np.arange(1, stack.shape[1] + 1)
            colour = colours[label]
            ax.plot(x, stack.mean(axis=0), label=label, color=colour)
            ax.fill_between(
                x, stack.min(axis=0), stack.max(axis=0), alpha=0.2, color=colour
            )
        ax.set_title(f"Digits-5-lite, {NETWORK_NAMES[model]}, batch size {batch}")
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("mean per-domain test accuracy")
    fig.tight_layout()
    fig.savefig(FIGURES / f"{stem}-curves.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    main_rows = [r for r in rows if r.batch_size == MAIN.batch_size]
    width = 0.8 / max(1, len(main_rows))
    for i, row in enumerate(main_rows):
        x = np.arange(len(DOMAINS)) + i * width
        ax.bar(x, row.per_domain, width, label=row.method, color=colours[row.method])
    ax.set_xticks(np.arange(len(DOMAINS)) + 0.4 - width / 2, DOMAINS)
    ax.set_ylabel("test accuracy (mean over seeds)")
    ax.set_title(
        f"Per-domain accuracy after {MAIN.rounds} rounds, {NETWORK_NAMES[model]},"
        " batch size 16"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(FIGURES / f"{stem}-domains.png", dpi=110)
    plt.close(fig)


def plot_domains() -> None:
    """Two test images of every Digits-5-lite domain, as the models see them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from workloads.digits5 import domain_data

    fig, axes = plt.subplots(2, len(DOMAINS), figsize=(2 * len(DOMAINS), 4.2))
    for d, name in enumerate(DOMAINS):
        data = domain_data(d)
        for row in range(2):
            image = (data.x_test[row * 7].permute(1, 2, 0) * 0.5 + 0.5).clamp(0, 1)
            axes[row, d].imshow(image.numpy())
            axes[row, d].set_axis_off()
        axes[0, d].set_title(name)
    fig.tight_layout()
    fig.savefig(FIGURES / "digits5-domains.png", dpi=90)
    plt.close(fig)


def table(rows: Sequence[CellSummary]) -> str:
    """The summary as a Markdown table."""
    lines = [
        "| method | batch | seeds | mean | std | min | max | per domain"
        f" | rounds to {TARGET_ACCURACY:g} | CPU s/run |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for r in rows:
        domains = " ".join(f"{a:.2f}" for a in r.per_domain)
        reached = " ".join("-" if n is None else str(n) for n in r.rounds_to_target)
        lines.append(
            f"| {r.method} | {r.batch_size} | {r.seeds} | {r.mean:.3f} | {r.std:.3f}"
            f" | {r.low:.3f} | {r.high:.3f} | {domains} | {reached}"
            f" | {r.cpu_seconds:.0f} |"
        )
    return "\n".join(lines)


def paired(results: Sequence[RunResult], a: str, b: str, batch: int) -> str:
    """Per seed, method ``a``'s final accuracy minus ``b``'s, and their mean."""
    final = {
        (r.method, r.seed): r.mean_curve[-1] for r in results if r.batch_size == batch
    }
    seeds = sorted(s for m, s in final if m == a and (b, s) in final)
    if not seeds:
        return f"{a} - {b}, batch {batch}: no common seeds"
    diffs = [final[(a, s)] - final[(b, s)] for s in seeds]
    spread = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else 0.0
    return (
        f"{a} - {b}, batch {batch}, per seed: "
        + " ".join(f"{d:+.3f}" for d in diffs)
        + f"; mean {np.mean(diffs):+.3f}, std {spread:.3f},"
        f" {sum(d >= 0 for d in diffs)} of {len(diffs)} seeds >= 0"
    )


def sweep_job(spec: str, model: str = "cnn") -> Job:
    """A run at batch size 16 from ``[METHOD:]LR[,LAMBDA[,ROUNDS[,SEED]]]``.

    METHOD is a study label (default FedWon). LAMBDA only matters to FedWon;
    empty or missing, it is the network's study value.
    """
    label, _, numbers = spec.rpartition(":")
    methods = {m.label: m for m in SETUPS[model].methods}
    if (label or "FedWon") not in methods:
        raise ValueError(f"sweep: unknown method {label!r}; known: {', '.join(LABELS)}")
    lr, *rest = numbers.split(",")
    lam = float(rest[0]) if rest and rest[0] else SETUPS[model].clip_lambda
    rounds = int(rest[1]) if len(rest) > 1 else MAIN.rounds
    seed = int(rest[2]) if len(rest) > 2 else 0
    study = replace(MAIN, clip_lambda=lam, rounds=rounds, model=model)
    return Job(replace(methods[label or "FedWon"], lr=float(lr)), study, seed)


def sweep(specs: Sequence[str], workers: int, model: str) -> None:
    """Print each setting's final mean and per-domain accuracy."""
    todo = [sweep_job(spec, model) for spec in specs]
    print("method     lr     lambda  rounds seed  mean   per domain")
    with ProcessPoolExecutor(workers) as pool:
        for job, result in zip(todo, pool.map(run, todo), strict=True):
            domains = " ".join(f"{a:.2f}" for a in result.curve[-1])
            print(
                f"{job.method.label:<10} {job.lr:<6g} {job.study.clip_lambda:<7g}"
                f" {job.study.rounds:<6d} {job.seed:<5d} {result.mean_curve[-1]:.3f}"
                f"  {domains}",
                flush=True,
            )


def batch_size_jobs(
    batch_sizes: Sequence[int], seeds: Sequence[int], model: str = "cnn"
) -> list[Job]:
    """The batch-size-1 cell (128 images, 10 rounds) at other batch sizes.

    The BatchNorm methods and FedWon only; learning rates scale by
    ``max(0.1, b / 16)``, which gives the study's own rates at 1 and 16.
    """
    _, small = cells(model)
    return [
        Job(m, replace(small, batch_size=b), s, max(BATCH1_LR_SCALE, b / 16))
        for b in batch_sizes
        for s in seeds
        for m in SETUPS[model].methods
        if m.label != "FedAvg"
    ]


def batch_size_table(results: Sequence[RunResult]) -> str:
    """Final accuracy per batch size (rows) and method (columns): mean +- std."""
    labels = [label for label in LABELS if any(r.method == label for r in results)]
    lines = [
        "| batch | " + " | ".join(labels) + " |",
        "|---:|" + "---:|" * len(labels),
    ]
    for b in sorted({r.batch_size for r in results}, reverse=True):
        entries = []
        for label in labels:
            final = [
                r.mean_curve[-1]
                for r in results
                if r.batch_size == b and r.method == label
            ]
            spread = float(np.std(final, ddof=1)) if len(final) > 1 else 0.0
            entries.append(f"{np.mean(final):.3f} +- {spread:.3f}")
        lines.append(f"| {b} | " + " | ".join(entries) + " |")
    return "\n".join(lines)


def plot_batch_sizes(results: Sequence[RunResult], model: str, stem: str) -> None:
    """Final accuracy against batch size: mean and min-max over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    sizes = sorted({r.batch_size for r in results})
    for i, label in enumerate(LABELS):
        rows = [
            [
                r.mean_curve[-1]
                for r in results
                if r.method == label and r.batch_size == b
            ]
            for b in sizes
        ]
        if not all(rows):
            continue
        mean = [float(np.mean(v)) for v in rows]
        ax.plot(sizes, mean, marker="o", label=label, color=f"C{i}")
        ax.fill_between(
            sizes,
            [min(v) for v in rows],
            [max(v) for v in rows],
            alpha=0.2,
            color=f"C{i}",
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.set_xlabel("batch size (images per local step)")
    ax.set_ylabel("mean per-domain test accuracy")
    ax.set_title(
        f"Digits-5-lite, {NETWORK_NAMES[model]}: 128 images per client, 10 rounds"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(FIGURES / f"{stem}.png", dpi=110)
    plt.close(fig)


def main() -> int:
    """Run the study, print the table, write figures and JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--workers", type=int, default=2)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--replot", action="store_true", help="redraw from the saved JSON, no training"
    )
    mode.add_argument(
        "--sweep",
        nargs="+",
        metavar="[METHOD:]LR[,LAMBDA[,ROUNDS[,SEED]]]",
        help="only sweep learning rates (and FedWon's AGC threshold) at batch 16",
    )
    parser.add_argument(
        "--model",
        choices=tuple(SETUPS),
        default="cnn",
        help="the network: the papers' digit CNN (default) or the thin SqueezeNet",
    )
    mode.add_argument(
        "--methods",
        nargs="+",
        choices=LABELS,
        default=[],
        help="run only these methods; prints the table without saving anything",
    )
    mode.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        metavar="B",
        help="only run the small cell (128 images, 10 rounds) at these batch sizes;"
        " writes methods-fedwon[-squeezenet]-batch-sizes.png/.json",
    )
    args = parser.parse_args()
    started = time.monotonic()
    stem = "methods-fedwon" + ("" if args.model == "cnn" else f"-{args.model}")
    if args.batch_sizes:
        with ProcessPoolExecutor(args.workers) as pool:
            todo = batch_size_jobs(args.batch_sizes, args.seeds, args.model)
            results = list(pool.map(run, todo))
        (FIGURES / f"{stem}-batch-sizes.json").write_text(
            json.dumps({"runs": [asdict(r) for r in results]}, indent=1)
        )
        plot_batch_sizes(results, args.model, f"{stem}-batch-sizes")
        print(batch_size_table(results))
        print(f"wall time {time.monotonic() - started:.0f} s")
        return 0
    if args.methods:
        with ProcessPoolExecutor(args.workers) as pool:
            results = list(pool.map(run, jobs(args.seeds, args.model, args.methods)))
        print(table(summarise(results)))
        for batch in (MAIN.batch_size, BATCH1.batch_size):
            print(paired(results, "FedWon", "FedBN", batch))
        return 0
    if args.sweep:
        sweep(args.sweep, args.workers, args.model)
        return 0
    if args.replot:
        saved = json.loads((FIGURES / f"{stem}.json").read_text())
        results = [RunResult(**r) for r in saved["runs"]]
    else:
        with ProcessPoolExecutor(args.workers) as pool:
            results = list(pool.map(run, jobs(args.seeds, args.model)))
    rows = summarise(results)
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{stem}.json").write_text(
        json.dumps(
            {
                "summary": [asdict(r) for r in rows],
                "runs": [asdict(r) for r in results],
            },
            indent=1,
        )
    )
    plot(results, rows, stem, args.model)
    plot_domains()
    print(table(rows))
    for batch in (MAIN.batch_size, BATCH1.batch_size):
        print(paired(results, "FedWon", "FedBN", batch))
    print(paired(results, "FedBN", "FedAvg+BN", MAIN.batch_size))
    print(
        f"wall time {time.monotonic() - started:.0f} s (domains: {', '.join(DOMAINS)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
