"""ServerApp: FedAvg over all nodes for ``num-server-rounds`` rounds."""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from plainapp.task import build_model

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run FedAvg with every node training and evaluating each round."""
    nodes = int(context.run_config["min-nodes"])
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=1.0,
        min_train_nodes=nodes,
        min_evaluate_nodes=nodes,
        min_available_nodes=nodes,
    )
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(build_model().state_dict()),
        num_rounds=int(context.run_config["num-server-rounds"]),
        timeout=float(context.run_config["round-timeout-s"]),
        train_config=ConfigRecord({"lr": float(context.run_config["learning-rate"])}),
    )
