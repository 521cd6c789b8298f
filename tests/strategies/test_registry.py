import pytest
from flwr.serverapp.strategy import FedAvg

from strategies.registry import (
    REGISTRY,
    build_strategy,
    check_parameters,
    strategy_spec,
)


def test_known_strategies() -> None:
    assert {"fedavg", "fedavgm", "fedprox"} <= set(REGISTRY)
    assert strategy_spec("FedAvg").strategy_cls is FedAvg


def test_unknown_strategy_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="fedavg"):
        strategy_spec("fedmagic")


def test_parameters_are_checked() -> None:
    check_parameters("fedprox", {"proximal_mu": 0.1})
    with pytest.raises(ValueError, match="proximal_mu"):
        check_parameters("fedavg", {"proximal_mu": 0.1})


def test_build_passes_parameters() -> None:
    strategy = build_strategy("fedavg", {"fraction_evaluate": 0.5})
    assert isinstance(strategy, FedAvg)
    assert strategy.fraction_evaluate == 0.5
    with pytest.raises(ValueError, match="proximal_mu"):
        build_strategy("fedavg", {"proximal_mu": 0.1})
