"""The app's run config, read once into a typed, validated dataclass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DigitsSettings:
    """Workload and strategy settings a campaign passes as Flower run config."""

    num_server_rounds: int = 2
    strategy: str = "fedavg"
    fraction_evaluate: float = 1.0
    local_epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 0.002
    samples_per_node: int = 200
    model_width: float = 1.17  # ~1.0M parameters (workloads.squeezenet.DEFAULT_WIDTH)
    seed: int = 0
    round_timeout_s: float = 600.0
    min_nodes: int = 2

    def __post_init__(self) -> None:
        if self.num_server_rounds < 1:
            raise ValueError("num-server-rounds must be >= 1")
        if self.local_epochs < 1 or self.batch_size < 1 or self.samples_per_node < 1:
            raise ValueError(
                "local-epochs, batch-size and samples-per-node must be >= 1"
            )
        if not 0.0 <= self.fraction_evaluate <= 1.0:
            raise ValueError("fraction-evaluate must be in [0, 1]")
        if self.model_width <= 0:
            raise ValueError("model-width must be > 0")

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> DigitsSettings:
        """Build from Flower's ``context.run_config`` (kebab-case keys)."""
        kwargs: dict[str, Any] = {}
        for name, field in cls.__dataclass_fields__.items():
            key = name.replace("_", "-")
            if key in run_config:
                kwargs[name] = type(field.default)(run_config[key])
        return cls(**kwargs)
