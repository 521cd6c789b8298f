"""ClientApp: fits the linear model on this node's random data."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from plainapp.task import build_model, fit, mse, node_data

app = ClientApp()


@app.lifespan()
def lifespan(context: Context) -> Iterator[None]:
    """Keep torch to one thread for each message the node handles."""
    torch.set_num_threads(1)
    yield


def _model_and_data(
    msg: Message, context: Context
) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    model = build_model()
    model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    x, y = node_data(
        int(context.node_config.get("partition-id", 0)),
        int(context.run_config["samples-per-node"]),
    )
    return model, x, y


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Fit locally and reply with the new weights and the training loss."""
    model, x, y = _model_and_data(msg, context)
    config = msg.content.config_records["config"]
    loss = fit(
        model,
        x,
        y,
        epochs=int(context.run_config["local-epochs"]),
        lr=float(config.get("lr", context.run_config["learning-rate"])),  # type: ignore[arg-type]
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord({"train-loss": loss, "num-examples": len(x)}),
        }
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Reply with the received model's error on this node's data."""
    model, x, y = _model_and_data(msg, context)
    metrics = MetricRecord({"eval-loss": mse(model, x, y), "num-examples": len(x)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
