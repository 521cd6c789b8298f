"""The ClientApp's work: train and evaluate the strategy's model variant on this
node's data (imported by the handlers of client_app.py, so that a message that
needs no torch, such as a wake message, starts no torch)."""

from __future__ import annotations

import os

import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from torch import nn

from flowerbed_digits.settings import DigitsSettings
from strategies.client_side import (
    ClientSide,
    LocalTraining,
    ModelShape,
    receive_model,
)
from strategies.registry import client_side, optimizer_settings
from workloads import digits, digits5, domain_files, textcls
from workloads.training import evaluate as evaluate_model
from workloads.training import train_with

Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
# strategies.realfm.CONTRIBUTION_KEY: a RealFM server sets how many samples a
# node trains on (checked equal in tests; importing the strategy here would load
# Flower's server strategies into every ClientApp process).
REALFM_CONTRIBUTION_KEY = "realfm-contribution"


def model_shape(settings: DigitsSettings) -> ModelShape:
    """The model shape the dataset needs (multi-domain images have 3 channels)."""
    if settings.dataset == "text":  # token ids: FedSpine builds its own model
        return ModelShape(1, textcls.NUM_CLASSES, settings.model_width, settings.model)
    channels = 1 if settings.dataset == "digits" else digits5.CHANNELS
    return ModelShape(
        channels, digits.NUM_CLASSES, settings.model_width, settings.model
    )


def _threads() -> int:
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ValueError:
        return 1


def _load(
    msg: Message, context: Context
) -> tuple[nn.Module, ClientSide, DigitsSettings, bool]:
    """The strategy's model variant: global arrays, then what this node kept.

    A HeteroFL train message brings a sub-model (its mask in the config): the
    node then trains that reduced-width model. The flag says whether kept keys
    were restored from ``context.state``.
    """
    settings = DigitsSettings.from_run_config(context.run_config)
    # One thread unless the node's CPU share says more (the emulated cluster sets
    # OMP_NUM_THREADS from each node's cgroup quota; a lab may set it per Pi).
    torch.set_num_threads(_threads())
    side = client_side(settings.strategy)
    model = receive_model(side, model_shape(settings), msg.content)
    restored = side.restore_local(model, context.state)
    return model, side, settings, restored


def _metrics(
    values: dict[str, float | int], keeps_keys: bool, restored: bool
) -> MetricRecord:
    """A reply's metrics; methods that keep keys also say if they were restored."""
    if keeps_keys:
        values["local-state-restored"] = int(restored)
    return MetricRecord(dict(values))


def _my_data(context: Context, settings: DigitsSettings) -> Split:
    """(x_train, y_train, x_val, y_val) of this node."""
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    if settings.dataset == "digits5":
        mine = digits5.node_data(
            partition_id, num_partitions, settings.samples_per_node, settings.seed
        )
        return mine.x_train, mine.y_train, mine.x_test, mine.y_test
    if settings.dataset == "text":
        text = textcls.node_data(
            partition_id, num_partitions, settings.samples_per_node, settings.seed
        )
        return text.x_train, text.y_train, text.x_test, text.y_test
    if settings.dataset == "domain-files":
        mine = domain_files.node_data(
            settings.data_dir,
            partition_id,
            num_partitions,
            settings.samples_per_node,
            settings.seed,
        )
        return mine.x_train, mine.y_train, mine.x_test, mine.y_test
    part = digits.partition(
        partition_id,
        num_partitions,
        samples_per_node=settings.samples_per_node,
        seed=settings.seed,
    )
    return part.x_train, part.y_train, part.x_val, part.y_val


def train(msg: Message, context: Context) -> Message:
    """Train the received model locally; reply with the shared weights and metrics."""
    model, side, settings, restored = _load(msg, context)
    x_train, y_train, _, _ = _my_data(context, settings)
    for config in msg.content.config_records.values():
        if REALFM_CONTRIBUTION_KEY in config:
            from strategies.realfm import contribution

            used = contribution(config, len(x_train))
            x_train, y_train = x_train[:used], y_train[:used]
    optimizer = optimizer_settings(
        settings.strategy, settings.parameters, lr=settings.learning_rate
    )
    seed = settings.seed + int(context.node_config["partition-id"])
    extra: dict[str, float | int] = {}
    if side.local_train is not None:  # the method's own loop (FedLabel, ProWD)
        config = next(iter(msg.content.config_records.values()), ConfigRecord())
        task = LocalTraining(
            x_train,
            y_train,
            settings.local_epochs,
            settings.batch_size,
            seed,
            optimizer,
            settings.parameters,
            dict(config),
            context.state,
        )
        result, extra = side.local_train(model, task)
    else:
        result = train_with(
            model,
            side.build_optimizer(model, optimizer),
            x_train,
            y_train,
            epochs=settings.local_epochs,
            batch_size=settings.batch_size,
            seed=seed,
        )
    side.keep_local(model, context.state)
    metrics = _metrics(
        {
            "train-loss": result.loss,
            "train-accuracy": result.accuracy,
            "num-examples": result.num_examples,
            **extra,
        },
        bool(side.local_keys(model)),
        restored,
    )
    content = RecordDict(
        {"arrays": ArrayRecord(side.shared_state(model)), "metrics": metrics}
    )
    return Message(content=content, reply_to=msg)


def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received model (with what this node kept) on local data."""
    model, side, settings, restored = _load(msg, context)
    _, _, x_val, y_val = _my_data(context, settings)
    result = evaluate_model(model, x_val, y_val, batch_size=256)
    metrics = _metrics(
        {
            "eval-loss": result.loss,
            "eval-accuracy": result.accuracy,
            "num-examples": result.num_examples,
        },
        bool(side.local_keys(model)),
        restored,
    )
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
