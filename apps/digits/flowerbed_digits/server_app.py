"""ServerApp: runs the campaign's strategy and records stamps and metrics."""

from __future__ import annotations

import time

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from flowerbed_digits.settings import DigitsSettings
from instrumentation.inject_server import current_sink
from strategies.registry import build_strategy
from workloads.digits import test_set
from workloads.squeezenet import SqueezeNetConfig, build_model
from workloads.training import evaluate

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run ``num-server-rounds`` rounds of the configured strategy."""
    settings = DigitsSettings.from_run_config(context.run_config)
    torch.manual_seed(settings.seed)
    torch.set_num_threads(1)
    model = build_model(SqueezeNetConfig(width=settings.model_width))
    x_test, y_test = test_set()

    def evaluate_global(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict(arrays.to_torch_state_dict())
        start_ns = time.time_ns()
        result = evaluate(model, x_test, y_test, batch_size=256)
        values = {"accuracy": result.accuracy, "loss": result.loss}
        sink = current_sink()  # set when flowerbed launched the run (injection)
        if sink is not None:
            sink.append(
                "metrics",
                round=server_round,
                scope="server",
                values=values,
                start_ns=start_ns,
                end_ns=time.time_ns(),
            )
        return MetricRecord(values)

    strategy = build_strategy(
        settings.strategy,
        {
            "fraction_train": 1.0,
            "fraction_evaluate": settings.fraction_evaluate,
            "min_available_nodes": settings.min_nodes,
            "min_train_nodes": settings.min_nodes,
            "min_evaluate_nodes": min(settings.min_nodes, 2),
        },
    )
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(model.state_dict()),
        num_rounds=settings.num_server_rounds,
        timeout=settings.round_timeout_s,
        train_config=ConfigRecord(
            {
                "local-epochs": settings.local_epochs,
                "learning-rate": settings.learning_rate,
            }
        ),
        evaluate_fn=evaluate_global,
    )
