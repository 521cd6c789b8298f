"""The strategy registry: a campaign's strategy name to its server and client halves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flwr.serverapp.strategy import FedAvg, FedAvgM, FedProx, Strategy
from torch import nn

from strategies import fedbn, fedwon
from strategies.client_side import PLAIN, ClientSide, OptimizerSettings

_FEDAVG_PARAMETERS = (
    "fraction_train",
    "fraction_evaluate",
    "min_train_nodes",
    "min_evaluate_nodes",
    "min_available_nodes",
)


@dataclass(frozen=True)
class StrategySpec:
    """A registered strategy: server class, client side and the parameters of each.

    ``parameters`` go to the server strategy's constructor, ``client_parameters``
    to the client's optimiser (:func:`optimizer_settings`). With
    ``needs_local_keys`` the server strategy is told which state-dict keys the
    clients keep (``local_keys=``), so it needs the model to build.
    """

    name: str
    strategy_cls: type[Strategy]
    description: str
    parameters: tuple[str, ...]
    client_side: ClientSide = PLAIN
    client_parameters: tuple[str, ...] = ()
    needs_local_keys: bool = False

    @property
    def all_parameters(self) -> tuple[str, ...]:
        """Every parameter a campaign may set for this strategy."""
        return self.parameters + self.client_parameters


REGISTRY: Mapping[str, StrategySpec] = {
    spec.name: spec
    for spec in (
        StrategySpec(
            "fedavg",
            FedAvg,
            "FedAvg (McMahan et al. 2017), Flower's implementation",
            _FEDAVG_PARAMETERS,
        ),
        StrategySpec(
            "fedavgm",
            FedAvgM,
            "FedAvg with server momentum, Flower's implementation",
            (*_FEDAVG_PARAMETERS, "server_learning_rate", "server_momentum"),
        ),
        StrategySpec(
            "fedprox",
            FedProx,
            "FedProx (Li et al. 2020), Flower's implementation",
            (*_FEDAVG_PARAMETERS, "proximal_mu"),
        ),
        StrategySpec(
            "fedbn",
            fedbn.FedBN,
            "FedBN (Li et al. 2021): BatchNorm stays on the client, the rest FedAvg",
            _FEDAVG_PARAMETERS,
            client_side=fedbn.CLIENT_SIDE,
            needs_local_keys=True,
        ),
        StrategySpec(
            "fedwon",
            FedAvg,
            "FedWon (Zhuang and Lyu 2024): no normalization, standardised"
            " convolutions, AGC-SGD on the client; FedAvg on the server",
            _FEDAVG_PARAMETERS,
            client_side=fedwon.CLIENT_SIDE,
            client_parameters=("clip_lambda",),
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
    unknown = sorted(set(parameters) - set(spec.all_parameters))
    if unknown:
        raise ValueError(
            f"strategy {name!r} takes no parameter(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(spec.all_parameters)}"
        )


def build_strategy(
    name: str, parameters: Mapping[str, Any], model: nn.Module | None = None
) -> Strategy:
    """Instantiate the server strategy ``name`` with its share of ``parameters``.

    ``model`` is the model variant of the strategy's client side
    (``client_side(name).build_model``); strategies that keep keys on the
    client need it to learn which.
    """
    check_parameters(name, parameters)
    spec = strategy_spec(name)
    server = {k: v for k, v in parameters.items() if k in spec.parameters}
    if spec.needs_local_keys:
        if model is None:
            raise ValueError(
                f"strategy {name!r} keeps keys on the client: pass the model "
                f"(client_side({name!r}).build_model(shape)) to build_strategy"
            )
        server["local_keys"] = spec.client_side.local_keys(model)
    return spec.strategy_cls(**server)


def client_side(name: str) -> ClientSide:
    """The client half of strategy ``name``: model variant, optimiser, kept keys."""
    return strategy_spec(name).client_side


def optimizer_settings(
    name: str, parameters: Mapping[str, Any], lr: float, momentum: float = 0.9
) -> OptimizerSettings:
    """The client optimiser settings of strategy ``name`` (its client parameters)."""
    check_parameters(name, parameters)
    spec = strategy_spec(name)
    extra = {k: float(v) for k, v in parameters.items() if k in spec.client_parameters}
    return OptimizerSettings(lr=lr, momentum=momentum, **extra)
