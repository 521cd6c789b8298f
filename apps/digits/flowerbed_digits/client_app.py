"""ClientApp: trains and evaluates the CNN on this node's digits partition."""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flowerbed_digits.settings import DigitsSettings
from workloads.digits import partition
from workloads.squeezenet import SqueezeNetConfig, build_model
from workloads.training import evaluate as evaluate_model
from workloads.training import train as train_model

# flowerbed measures this app like any other: its mod is injected at launch
# (testbed/app_bundle.py), the app itself carries no instrumentation.
app = ClientApp()


def _load(msg: Message, context: Context) -> tuple[torch.nn.Module, DigitsSettings]:
    settings = DigitsSettings.from_run_config(context.run_config)
    torch.set_num_threads(1)
    model = build_model(SqueezeNetConfig(width=settings.model_width))
    arrays = next(iter(msg.content.array_records.values()))
    model.load_state_dict(arrays.to_torch_state_dict())
    return model, settings


def _my_partition(context: Context, settings: DigitsSettings):  # type: ignore[no-untyped-def]
    return partition(
        int(context.node_config["partition-id"]),
        int(context.node_config["num-partitions"]),
        samples_per_node=settings.samples_per_node,
        seed=settings.seed,
    )


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model locally; reply with weights and metrics."""
    model, settings = _load(msg, context)
    data = _my_partition(context, settings)
    result = train_model(
        model,
        data.x_train,
        data.y_train,
        epochs=settings.local_epochs,
        batch_size=settings.batch_size,
        lr=settings.learning_rate,
        seed=settings.seed + int(context.node_config["partition-id"]),
    )
    metrics = MetricRecord(
        {
            "train-loss": result.loss,
            "train-accuracy": result.accuracy,
            "num-examples": result.num_examples,
        }
    )
    content = RecordDict(
        {"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received model on the local validation split."""
    model, settings = _load(msg, context)
    data = _my_partition(context, settings)
    result = evaluate_model(model, data.x_val, data.y_val, batch_size=256)
    metrics = MetricRecord(
        {
            "eval-loss": result.loss,
            "eval-accuracy": result.accuracy,
            "num-examples": result.num_examples,
        }
    )
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
