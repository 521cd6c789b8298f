"""ServerApp: runs the campaign's strategy and records stamps and metrics."""

from __future__ import annotations

import time

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from torch import nn

from flowerbed_digits.client_task import model_shape
from flowerbed_digits.settings import DigitsSettings
from instrumentation.inject_server import current_sink
from instrumentation.schema import EventKind
from strategies.registry import build_strategy, client_side, strategy_spec
from workloads import digits, digits5, domain_files, textcls
from workloads.training import evaluate

app = ServerApp()


def _server_test_set(settings: DigitsSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """The server's test set: digits' held-out 20 %, every domain's test images,
    or FLAIR's test users (multi-hot targets)."""
    dataset = settings.dataset
    if dataset == "flair":
        from workloads import flair

        test = flair.server_test_set(
            settings.flair_path, settings.flair_labels, settings.flair_eval_images
        )
        return test.x, test.y
    if dataset == "text":
        return textcls.test_set()
    if dataset == "domain-files":
        return domain_files.pooled_test_set(settings.data_dir)
    if dataset == "digits5":
        domains = [digits5.domain_data(d) for d in range(len(digits5.DOMAINS))]
        return (
            torch.cat([d.x_test for d in domains]),
            torch.cat([d.y_test for d in domains]),
        )
    return digits.test_set()


def _evaluate(
    settings: DigitsSettings, model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> dict[str, float | int | list[int] | list[float]]:
    """Accuracy and loss, or for FLAIR's labels BCE loss and macro/micro AP."""
    if settings.dataset == "flair":
        from workloads.multilabel import evaluate_multilabel

        scored = evaluate_multilabel(model, x, y, batch_size=256)
        return {
            "macro-ap": scored.macro_ap,
            "micro-ap": scored.micro_ap,
            "loss": scored.loss,
        }
    result = evaluate(model, x, y, batch_size=256)
    return {"accuracy": result.accuracy, "loss": result.loss}


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run ``num-server-rounds`` rounds of the configured strategy.

    Every registered strategy has ``start``; for FedBuff it is its own
    asynchronous push/pull loop and rounds are server model versions.
    """
    settings = DigitsSettings.from_run_config(context.run_config)
    torch.manual_seed(settings.seed)
    torch.set_num_threads(1)
    side = client_side(settings.strategy)
    model = side.build_model(model_shape(settings))
    x_test, y_test = _server_test_set(settings)

    def evaluate_global(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict(arrays.to_torch_state_dict())
        start_ns = time.time_ns()
        values = _evaluate(settings, model, x_test, y_test)
        sink = current_sink()  # set when flowerbed launched the run (injection)
        if sink is not None:
            sink.append(
                EventKind.METRICS,
                round=server_round,
                scope="server",
                values=values,
                start_ns=start_ns,
                end_ns=time.time_ns(),
            )
        return MetricRecord(values)

    defaults = {
        "fraction_train": 1.0,
        "fraction_evaluate": settings.fraction_evaluate,
        "min_available_nodes": settings.min_nodes,
        "min_train_nodes": settings.min_nodes,
        "min_evaluate_nodes": min(settings.min_nodes, 2),
    }
    taken = strategy_spec(settings.strategy).parameters
    parameters: dict[str, object] = {k: v for k, v in defaults.items() if k in taken}
    parameters.update(settings.parameters)
    strategy = build_strategy(
        settings.strategy, parameters, model=model, sink=current_sink()
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
