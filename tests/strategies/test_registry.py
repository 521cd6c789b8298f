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


class _ListSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def append(self, event: str, **fields: object) -> None:
        self.events.append((event, fields))


def test_heterofl_is_registered_with_its_parameters_checked() -> None:
    from strategies import heterofl
    from strategies.client_side import ModelShape
    from strategies.registry import client_side

    check_parameters("heterofl", {"mode": "static", "ratios": [0.5, 0.25]})
    check_parameters("heterofl", {"ratios": "0.5, 0.25", "rolling_step": 2})
    for bad in (
        {"mode": "diagonal"},
        {"ratios": [0.5, 1.5]},
        {"ratios": "half"},
        {"rolling_step": 0},
    ):
        with pytest.raises(ValueError, match="heterofl"):
            check_parameters("heterofl", bad)
    with pytest.raises(ValueError, match="pass the full"):
        build_strategy("heterofl", {})
    model = client_side("heterofl").build_model(ModelShape(1, 10, 0.1))
    strategy = build_strategy(
        "heterofl",
        {"mode": "random", "ratios": "0.5,0.25", "fraction_evaluate": 0.5},
        model=model,
    )
    assert isinstance(strategy, heterofl.HeteroFL)
    assert strategy.mode == "random" and strategy.ratios == (0.5, 0.25)
    assert strategy.fraction_evaluate == 0.5
    assert set(strategy.plan.axes) == set(model.state_dict())


def test_heterofl_writes_its_coverage_as_metrics_events() -> None:
    from strategies.client_side import ModelShape
    from strategies.registry import client_side

    sink = _ListSink()
    model = client_side("heterofl").build_model(ModelShape(1, 10, 0.1))
    strategy = build_strategy("heterofl", {}, model=model, sink=sink)
    assert strategy.on_coverage is not None  # type: ignore[union-attr]
    strategy.on_coverage(3, {"gamma-round": 0.0, "gamma-star": 0.0})  # type: ignore[union-attr]
    ((event, fields),) = sink.events
    assert event == "metrics"
    assert fields["round"] == 3 and fields["scope"] == "coverage"
    assert fields["values"] == {"gamma-round": 0.0, "gamma-star": 0.0}


def test_fedbuff_is_registered_and_logs_every_update() -> None:
    from strategies.fedbuff import FedBuff, UpdateRecord
    from strategies.registry import FEDBUFF_UPDATE_EVENT

    parameters = {
        "concurrency": 3,
        "buffer_size": 2,
        "staleness_exponent": 1.0,
        "max_staleness": 4,
        "server_learning_rate": 1.0,
        "server_momentum": 0.0,
        "max_wall_s": 30,
    }
    check_parameters("fedbuff", parameters)
    with pytest.raises(ValueError, match="fraction_train"):
        check_parameters("fedbuff", {"fraction_train": 1.0})
    with pytest.raises(ValueError, match="buffer_size"):
        check_parameters("fedbuff", {"buffer_size": 0})
    with pytest.raises(ValueError, match="server_momentum"):
        check_parameters("fedbuff", {"server_momentum": 1.0})
    sink = _ListSink()
    strategy = build_strategy("fedbuff", parameters, sink=sink)
    assert isinstance(strategy, FedBuff)
    assert strategy.config.concurrency == 3 and strategy.config.max_staleness == 4
    assert strategy.config.staleness_exponent == 1.0 and strategy.max_wall_s == 30
    record = UpdateRecord(
        node_id=7,
        trained_on_version=1,
        staleness=2,
        sent_ns=10,
        arrival_ns=20,
        outcome="applied",
        weight=1 / 3,
        version_after=3,
        server_step=True,
    )
    strategy._emit(record)
    ((event, fields),) = sink.events
    assert event == FEDBUFF_UPDATE_EVENT == "fedbuff_update"
    assert fields["node_id"] == 7 and fields["staleness"] == 2
    assert fields["outcome"] == "applied" and fields["arrival_ns"] == 20


def test_check_model_refuses_what_a_strategy_cannot_train() -> None:
    from strategies.registry import check_model

    check_model("fedwon", "cnn", 0.25)
    check_model("heterofl", "squeezenet", 1.17)
    with pytest.raises(ValueError, match="trains only model squeezenet, not 'cnn'"):
        check_model("heterofl", "cnn", 0.25)
    with pytest.raises(ValueError, match=r"model-width must be in \(0, 2\]"):
        check_model("fedbn", "cnn", 3.0)
    with pytest.raises(ValueError, match="model must be one of squeezenet, cnn"):
        check_model("fedavg", "resnet", 1.0)
