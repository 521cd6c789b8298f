"""The strategy registry: a campaign's strategy name to the strategy that runs it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flwr.serverapp.strategy import FedAvg, FedAvgM, FedProx, Strategy


@dataclass(frozen=True)
class StrategySpec:
    """A registered strategy: its Flower class and the parameters a campaign may set."""

    name: str
    strategy_cls: type[Strategy]
    description: str
    parameters: tuple[str, ...]


REGISTRY: Mapping[str, StrategySpec] = {
    spec.name: spec
    for spec in (
        StrategySpec(
            "fedavg",
            FedAvg,
            "FedAvg (McMahan et al. 2017), Flower's implementation",
            (
                "fraction_train",
                "fraction_evaluate",
                "min_train_nodes",
                "min_evaluate_nodes",
                "min_available_nodes",
            ),
        ),
        StrategySpec(
            "fedavgm",
            FedAvgM,
            "FedAvg with server momentum, Flower's implementation",
            (
                "fraction_train",
                "fraction_evaluate",
                "min_train_nodes",
                "min_evaluate_nodes",
                "min_available_nodes",
                "server_learning_rate",
                "server_momentum",
            ),
        ),
        StrategySpec(
            "fedprox",
            FedProx,
            "FedProx (Li et al. 2020), Flower's implementation",
            (
                "fraction_train",
                "fraction_evaluate",
                "min_train_nodes",
                "min_evaluate_nodes",
                "min_available_nodes",
                "proximal_mu",
            ),
        ),
    )
}


def strategy_spec(name: str) -> StrategySpec:
    """Return strategy ``name`` or raise a KeyError listing the known ones."""
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"unknown strategy {name!r}; flowerbed knows: {known}") from None


def check_parameters(name: str, parameters: Mapping[str, Any]) -> None:
    """Raise ValueError naming any parameter ``name`` does not take."""
    spec = strategy_spec(name)
    unknown = sorted(set(parameters) - set(spec.parameters))
    if unknown:
        raise ValueError(
            f"strategy {name!r} takes no parameter(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(spec.parameters)}"
        )


def build_strategy(name: str, parameters: Mapping[str, Any]) -> Strategy:
    """Instantiate strategy ``name`` with ``parameters`` (checked first)."""
    check_parameters(name, parameters)
    return strategy_spec(name).strategy_cls(**dict(parameters))
