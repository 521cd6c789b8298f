"""The ClientApp's work: train and evaluate the strategy's model variant on this
node's data (imported by the handlers of client_app.py, so that a message that
needs no torch, such as a wake message, starts no torch)."""

from __future__ import annotations

import os
from logging import INFO

import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.common.logger import log
from torch import nn

from flowerbed_digits.settings import DigitsSettings
from strategies.client_side import (
    ClientSide,
    LocalTraining,
    ModelShape,
    OptimizerSettings,
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
# Node config naming a node's FLAIR users ("u1,u2"); without it, users are dealt.
FLAIR_USERS_KEY = "flair-users"


def model_shape(settings: DigitsSettings) -> ModelShape:
    """The model shape the dataset needs (multi-domain images have 3 channels).

    FLAIR's networks have one output per label of the file's label index.
    """
    if settings.dataset == "flair":
        from workloads import flair

        labels = flair.label_names(settings.flair_path, settings.flair_labels)
        return ModelShape(
            flair.CHANNELS, len(labels), settings.model_width, settings.model
        )
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
    if settings.dataset == "flair":
        from workloads import flair

        node = flair.node_data(
            settings.flair_path,
            partition_id,
            num_partitions,
            settings.flair_labels,
            flair.parse_users(str(context.node_config.get(FLAIR_USERS_KEY, ""))),
            settings.samples_per_node,
        )
        log(
            INFO,
            "FLAIR: partition %s trains on users %s (%s images), evaluates on %s",
            partition_id,
            ",".join(node.train.users),
            len(node.train.x),
            ",".join(node.test.users),
        )
        return node.train.x, node.train.y, node.test.x, node.test.y
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


def _train_multilabel(
    model: nn.Module,
    side: ClientSide,
    settings: DigitsSettings,
    optimizer: OptimizerSettings,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    seed: int,
) -> dict[str, float | int]:
    """FLAIR's local training: BCE on multi-hot targets (no accuracy to report)."""
    if side.local_train is not None:
        raise ValueError(
            f"strategy {settings.strategy} trains with its own single-label loop;"
            " dataset flair needs a strategy on the plain training loop"
        )
    from workloads.multilabel import train_multilabel

    result = train_multilabel(
        model,
        side.build_optimizer(model, optimizer),
        x_train,
        y_train,
        epochs=settings.local_epochs,
        batch_size=settings.batch_size,
        seed=seed,
    )
    return {"train-loss": result.loss, "num-examples": result.num_examples}


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
    if settings.dataset == "flair":
        values = _train_multilabel(
            model, side, settings, optimizer, x_train, y_train, seed
        )
    else:
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
        values = {
            "train-loss": result.loss,
            "train-accuracy": result.accuracy,
            "num-examples": result.num_examples,
            **extra,
        }
    side.keep_local(model, context.state)
    metrics = _metrics(
        values,
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
    values: dict[str, float | int]
    if settings.dataset == "flair":
        from workloads.multilabel import evaluate_multilabel

        scored = evaluate_multilabel(model, x_val, y_val, batch_size=256)
        values = {
            "eval-loss": scored.loss,
            "eval-macro-ap": scored.macro_ap,
            "eval-micro-ap": scored.micro_ap,
            "num-examples": scored.num_examples,
        }
    else:
        result = evaluate_model(model, x_val, y_val, batch_size=256)
        values = {
            "eval-loss": result.loss,
            "eval-accuracy": result.accuracy,
            "num-examples": result.num_examples,
        }
    metrics = _metrics(
        values,
        bool(side.local_keys(model)),
        restored,
    )
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
