"""FedWon vs FedBN vs FedAvg on Digits-5-lite, and at batch size 1: accuracy study.

Runs each method in-process: five clients (one domain each), plain torch loops
over the very pieces the Flower app uses (the registry's ``ClientSide``:
model variant, optimiser, kept keys in a per-client ``RecordDict`` standing in
for ``context.state``) and the server aggregation functions the strategies
call (Flower's ``aggregate_arrayrecords`` for FedAvg/FedWon,
``strategies.fedbn.average_shared`` for FedBN). Prints a table of mean
per-domain test accuracy (mean and spread over seeds) and writes figures and a
JSON of the numbers to docs/figures/. Two worker processes, one thread each.

    .venv/bin/python -m bench.methods_fedwon [--quick]
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
from strategies.fedbn import average_shared, batchnorm_keys
from strategies.registry import client_side
from workloads.digits5 import CHANNELS, DOMAINS, node_data
from workloads.local_update import train_with
from workloads.training import evaluate

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"


@dataclass(frozen=True)
class Method:
    """A method as the study runs it: a client side, how the server averages, lr."""

    label: str
    strategy: str
    lr: float
    batchnorm_everything_shared: bool = False  # FedAvg over the BatchNorm model


METHODS: tuple[Method, ...] = (
    Method("FedAvg", "fedavg", 0.01),
    Method("FedAvg+BN", "fedbn", 0.05, batchnorm_everything_shared=True),
    Method("FedBN", "fedbn", 0.05),
    Method("FedWon", "fedwon", 0.05),
)


@dataclass(frozen=True)
class Study:
    """One cell of the study: rounds, local epochs, batch size, samples, width."""

    rounds: int
    local_epochs: int
    batch_size: int
    samples_per_client: int | None
    width: float = 0.25
    clip_lambda: float = 0.01


@dataclass(frozen=True)
class Job:
    """One federated run: a method, a study cell and a seed."""

    method: Method
    study: Study
    seed: int
    lr_scale: float = 1.0


def _side(method: Method) -> ClientSide:
    side = client_side(method.strategy)
    if method.batchnorm_everything_shared:
        return replace(side, model_variant="batchnorm-shared", local_keys=_nothing)
    return side


def _nothing(model: torch.nn.Module) -> frozenset[str]:
    return frozenset()


def run(job: Job) -> dict[str, object]:
    """Run one federated training; return mean per-domain accuracy per round."""
    torch.set_num_threads(1)
    side, study = _side(job.method), job.study
    shape = ModelShape(CHANNELS, 10, study.width)
    torch.manual_seed(job.seed)
    server_model = side.build_model(shape)
    local = frozenset(batchnorm_keys(server_model)) if job.method.strategy == "fedbn" else frozenset()
    if job.method.batchnorm_everything_shared:
        local = frozenset()
    global_arrays = ArrayRecord(side.shared_state(server_model))
    clients = [node_data(p, len(DOMAINS), study.samples_per_client, job.seed) for p in range(len(DOMAINS))]
    states = [RecordDict() for _ in clients]
    settings = OptimizerSettings(lr=job.method.lr * job.lr_scale, clip_lambda=study.clip_lambda)
    curve: list[list[float]] = []
    started = time.monotonic()
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
            replies.append(RecordDict({"arrays": ArrayRecord(shared), "metrics": MetricRecord({"num-examples": result.num_examples})}))
            updates.append(({k: v.numpy() for k, v in shared.items()}, float(result.num_examples)))
        if local:
            averaged = average_shared(updates, local)
            global_arrays = ArrayRecord({k: torch.from_numpy(v) for k, v in averaged.items()})
        else:
            global_arrays = aggregate_arrayrecords(replies, "num-examples")
        accuracies = []
        for data, state in zip(clients, states, strict=True):
            model = side.build_model(shape)
            side.load_global(model, global_arrays)
            side.restore_local(model, state)
            accuracies.append(evaluate(model, data.x_test, data.y_test).accuracy)
        curve.append(accuracies)
    return {
        "method": job.method.label,
        "study": asdict(study),
        "seed": job.seed,
        "lr": settings.lr,
        "curve": curve,
        "seconds": time.monotonic() - started,
    }
