"""What each strategy parameter means: default, unit and one line of help.

Pure data (no Flower, no torch), read by ``flowerbed strategies list|show`` and
by the registry's error messages. A parameter is described once here by name;
a :class:`~strategies.registry.StrategySpec` may override an entry for itself
(``parameter_info``) when its default differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ParameterInfo:
    """One parameter: its default (``None``: none), unit and meaning."""

    default: Any
    unit: str
    help: str

    def as_dict(self) -> dict[str, Any]:
        """The entry as plain JSON-able data."""
        return {"default": self.default, "unit": self.unit, "help": self.help}


UNKNOWN = ParameterInfo(None, "", "(not described)")

PARAMETERS: dict[str, ParameterInfo] = {
    # Flower's FedAvg family (flwr.serverapp.strategy.FedAvg defaults).
    "fraction_train": ParameterInfo(
        1.0, "fraction", "share of nodes trained per round"
    ),
    "fraction_evaluate": ParameterInfo(
        1.0, "fraction", "share of nodes evaluated per round"
    ),
    "min_train_nodes": ParameterInfo(2, "nodes", "fewest nodes a round trains"),
    "min_evaluate_nodes": ParameterInfo(2, "nodes", "fewest nodes a round evaluates"),
    "min_available_nodes": ParameterInfo(
        2, "nodes", "nodes to wait for before the first round"
    ),
    "server_learning_rate": ParameterInfo(
        1.0, "", "server step size eta_g on the mean update"
    ),
    "server_momentum": ParameterInfo(0.0, "", "server momentum beta, in [0, 1)"),
    "proximal_mu": ParameterInfo(0.0, "", "weight of FedProx's proximal term"),
    # FedWon's client optimiser.
    "clip_lambda": ParameterInfo(
        0.01, "ratio", "adaptive gradient clipping threshold |G|/|W| per unit"
    ),
    # HeteroFL.
    "mode": ParameterInfo(
        "rolling", "", "sub-model extraction: static, random or rolling"
    ),
    "ratios": ParameterInfo(
        "1.0", "fraction", "capacity ratios for nodes that declare none"
    ),
    "seed": ParameterInfo(0, "", "random seed of the method's own draws"),
    "rolling_step": ParameterInfo(1, "channels", "rolling window advance per round"),
    "rolling_tile": ParameterInfo(True, "bool", "tile rolling windows over clients"),
    "rolling_drift": ParameterInfo(True, "bool", "windows drift across rounds"),
    "capacity_from_nodes": ParameterInfo(
        True, "bool", "ask nodes for capacity-ratio from their node config"
    ),
    "capacity_timeout_s": ParameterInfo(30.0, "s", "wait for capacity replies"),
    # FedBuff.
    "concurrency": ParameterInfo(10, "clients", "clients training at once (C)"),
    "buffer_size": ParameterInfo(10, "updates", "updates per server step (K)"),
    "staleness_exponent": ParameterInfo(
        0.5, "", "a in the weight 1/(1+tau)^a; 0 turns weighting off"
    ),
    "max_staleness": ParameterInfo(
        None, "versions", "updates staler than this are dropped (none: keep all)"
    ),
    "weight_by_examples": ParameterInfo(
        False, "bool", "also weight updates by example count"
    ),
    "poll_interval_s": ParameterInfo(
        0.2, "s", "sleep between pulls that brought nothing"
    ),
    "max_wall_s": ParameterInfo(
        3600.0, "s", "stop the asynchronous run after this long"
    ),
}


def parameter_info(
    name: str, overrides: dict[str, ParameterInfo] | None = None
) -> ParameterInfo:
    """The description of parameter ``name`` (a strategy's override first)."""
    if overrides and name in overrides:
        return overrides[name]
    return PARAMETERS.get(name, UNKNOWN)
