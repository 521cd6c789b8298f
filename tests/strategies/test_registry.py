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


def test_fedbn_and_fedwon_are_registered_with_their_client_sides() -> None:
    from strategies import fedbn, fedwon
    from strategies.client_side import ModelShape
    from strategies.registry import client_side

    assert client_side("fedbn") is fedbn.CLIENT_SIDE
    assert client_side("FedWon") is fedwon.CLIENT_SIDE
    assert client_side("fedavg").model_variant == "plain"
    model = client_side("fedbn").build_model(ModelShape(3, 10, 0.1))
    strategy = build_strategy("fedbn", {"fraction_evaluate": 0.5}, model=model)
    assert isinstance(strategy, fedbn.FedBN)
    assert strategy.local_keys == fedbn.batchnorm_keys(model)
    assert strategy.fraction_evaluate == 0.5
    with pytest.raises(ValueError, match="pass the model"):
        build_strategy("fedbn", {})


def test_client_parameters_reach_the_optimiser_not_the_server() -> None:
    from strategies.registry import optimizer_settings

    check_parameters("fedwon", {"clip_lambda": 0.05, "fraction_train": 1.0})
    strategy = build_strategy("fedwon", {"clip_lambda": 0.05})
    assert type(strategy) is FedAvg
    settings = optimizer_settings("fedwon", {"clip_lambda": 0.05}, lr=0.1)
    assert settings.clip_lambda == 0.05 and settings.lr == 0.1
    with pytest.raises(ValueError, match="clip_lambda"):
        optimizer_settings("fedavg", {"clip_lambda": 0.05}, lr=0.1)
