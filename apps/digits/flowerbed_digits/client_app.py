"""ClientApp: trains and evaluates the strategy's model variant on this node's data.

The handlers import torch and the model code (client_task.py) only when called:
a fresh ``flwr-clientapp`` process that answers a message needing no training
(a wake message of the low-latency launch, docs/launch.md) stays cheap.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

# flowerbed measures this app like any other: its mod is injected at launch
# (testbed/campaign/app_bundle.py), the app itself carries no instrumentation.
app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model locally; reply with the shared weights and metrics."""
    from flowerbed_digits import client_task

    return client_task.train(msg, context)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received model (with what this node kept) on local data."""
    from flowerbed_digits import client_task

    return client_task.evaluate(msg, context)


@app.query("capacity")
def capacity(msg: Message, context: Context) -> Message:
    """Answer a HeteroFL server's capacity query from this node's node config."""
    from strategies.heterofl import capacity_reply

    return Message(capacity_reply(context.node_config), reply_to=msg)


@app.query("realfm")
def realfm_costs(msg: Message, context: Context) -> Message:
    """Answer a RealFM server's query with the cost and payoff this node declares."""
    from strategies.realfm import cost_reply

    return Message(cost_reply(context.node_config), reply_to=msg)
