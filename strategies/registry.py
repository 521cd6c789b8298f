"""The strategy registry: a campaign's strategy name to its server and client halves.

Importing it loads neither Flower nor torch, so a campaign file is checked against
the names, parameters and models here in a fraction of a second. A strategy's
server class and client side are named by module path and imported when a
strategy is built or its client side is asked for, as a plugin registry does.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from instrumentation.schema import EventKind
from instrumentation.schema import EventSink as EventSink
from strategies.parameters import ParameterInfo, parameter_info
from strategies.settings import (
    EXTRACTION_MODES,
    FedBuffConfig,
    FedLabelConfig,
    ProWDConfig,
)
from workloads import ARCHITECTURES
from workloads import CNN_MAX_WIDTH as MAX_CNN_WIDTH

if TYPE_CHECKING:
    from flwr.serverapp.strategy import Strategy
    from torch import nn

    from strategies.client_side import ClientSide, OptimizerSettings
    from strategies.fedbuff import FedBuff, UpdateRecord
    from strategies.heterofl import HeteroFL

    ServerStrategy = Strategy | FedBuff

_FEDAVG_PARAMETERS = (
    "fraction_train",
    "fraction_evaluate",
    "min_train_nodes",
    "min_evaluate_nodes",
    "min_available_nodes",
)
_HETEROFL_PARAMETERS = (
    "mode",
    "ratios",
    "seed",
    "rolling_step",
    "rolling_tile",
    "rolling_drift",
    "capacity_from_nodes",
    "capacity_timeout_s",
)
_FEDBUFF_CONFIG = (
    "concurrency",
    "buffer_size",
    "staleness_exponent",
    "max_staleness",
    "server_learning_rate",
    "server_momentum",
    "weight_by_examples",
)
_FEDBUFF_LOOP = ("poll_interval_s", "max_wall_s")

# The event under which FedBuff's per-update records enter the event log (an
# alias kept for older imports).
FEDBUFF_UPDATE_EVENT = EventKind.FEDBUFF_UPDATE
# The ``metrics`` scope of HeteroFL's per-round coverage figures.
COVERAGE_SCOPE = "coverage"
# Where a strategy runs: on SuperNodes (a lab or the emulated cluster) and in
# Flower's simulation runtime (testbed/campaign/simulation.py).
RUNTIMES = ("deployment", "simulation")
# Where the plain client side lives (model variant "plain", no kept keys).
PLAIN_CLIENT_SIDE = "strategies.client_side:PLAIN"


Factory = Callable[[Mapping[str, Any], "nn.Module | None", "EventSink | None"], Any]


def load_object(path: str) -> Any:
    """The object ``module:name`` names, importing its module (once)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class StrategySpec:
    """A registered strategy: server class, client side and the parameters of each.

    ``server`` and ``client`` name the server strategy class and the
    :class:`~strategies.client_side.ClientSide` as ``module:name``; they are
    imported on first use (:attr:`strategy_cls`, :attr:`client_side`).
    ``parameters`` go to the server strategy's constructor, ``client_parameters``
    to the client's optimiser (:func:`optimizer_settings`). With
    ``needs_local_keys`` the server strategy is told which state-dict keys the
    clients keep (``local_keys=``), so it needs the model to build. A
    ``factory`` replaces the plain ``strategy_cls(**parameters)`` call for
    strategies that need the model or an event sink (HeteroFL, FedBuff); a
    ``validate`` hook checks parameter values, not just names.
    """

    name: str
    server: str
    description: str
    parameters: tuple[str, ...]
    client: str = PLAIN_CLIENT_SIDE
    client_parameters: tuple[str, ...] = ()
    needs_local_keys: bool = False
    factory: Factory | None = None
    validate: Callable[[Mapping[str, Any]], object] | None = None
    # The networks (ModelShape.architecture) the strategy can train, and why
    # it cannot train the others.
    architectures: tuple[str, ...] = ARCHITECTURES
    architecture_note: str = ""
    # What ``flowerbed strategies list|show`` says about the method: its
    # paper, parameter descriptions that differ from strategies/parameters.py,
    # the runtimes it runs in, the claim its bench tests, the bench and doc,
    # and the last documented result.
    paper: str = ""
    parameter_info: Mapping[str, ParameterInfo] = field(default_factory=dict)
    runtimes: tuple[str, ...] = RUNTIMES
    claim: str = ""
    bench: str = ""
    doc: str = ""
    result: str = ""

    @property
    def strategy_cls(self) -> type[Strategy] | type[FedBuff]:
        """The server strategy class (imports Flower, and torch for some)."""
        cls: type[Strategy] | type[FedBuff] = load_object(self.server)
        return cls

    @property
    def client_side(self) -> ClientSide:
        """The client half: model variant, optimiser, kept keys (imports torch)."""
        side: ClientSide = load_object(self.client)
        return side

    @property
    def all_parameters(self) -> tuple[str, ...]:
        """Every parameter a campaign may set for this strategy."""
        return self.parameters + self.client_parameters

    def describe(self) -> dict[str, Any]:
        """Everything ``flowerbed strategies show`` prints, as JSON-able data."""
        overrides = dict(self.parameter_info)

        def params(names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
            return {n: parameter_info(n, overrides).as_dict() for n in names}

        return {
            "name": self.name,
            "description": self.description,
            "paper": self.paper,
            "server": self.server,
            "client": self.client,
            "server_parameters": params(self.parameters),
            "client_parameters": params(self.client_parameters),
            "runtimes": list(self.runtimes),
            "models": list(self.architectures),
            "claim": self.claim,
            "bench": self.bench,
            "doc": self.doc,
            "result": self.result,
        }


def parse_ratios(value: Any) -> tuple[float, ...]:
    """HeteroFL capacity ratios from a list or a comma-separated string."""
    items: Sequence[Any]
    if isinstance(value, str):
        items = [v for v in value.replace(" ", "").split(",") if v]
    elif isinstance(value, int | float):
        items = [value]
    else:
        items = list(value)
    try:
        ratios = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        raise ValueError(
            f"heterofl ratios must be numbers in (0, 1], e.g. [0.5, 0.25] or"
            f" '0.5,0.25'; got {value!r}"
        ) from None
    if not ratios or not all(0 < r <= 1 for r in ratios):
        raise ValueError(
            f"heterofl ratios must be one or more numbers in (0, 1], got {value!r}"
        )
    return ratios


def _heterofl_options(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """HeteroFL's own keyword arguments, typed and checked."""
    options: dict[str, Any] = {}
    if "mode" in parameters:
        mode = str(parameters["mode"]).lower()
        if mode not in EXTRACTION_MODES:
            raise ValueError(
                f"heterofl mode must be one of {', '.join(EXTRACTION_MODES)},"
                f" got {parameters['mode']!r}"
            )
        options["mode"] = mode
    if "ratios" in parameters:
        options["ratios"] = parse_ratios(parameters["ratios"])
    for key in ("seed", "rolling_step"):
        if key in parameters:
            options[key] = int(parameters[key])
    if options.get("rolling_step", 1) < 1:
        raise ValueError(f"heterofl rolling_step must be >= 1, got {options}")
    for key in ("rolling_tile", "rolling_drift"):
        if key in parameters:
            options[key] = _as_bool(key, parameters[key])
    # Nodes declare their capacity in the inventory (node_config capacity-ratio).
    options["capacity_from_nodes"] = _as_bool(
        "capacity_from_nodes", parameters.get("capacity_from_nodes", True)
    )
    if "capacity_timeout_s" in parameters:
        timeout = float(parameters["capacity_timeout_s"])
        if not timeout > 0:
            raise ValueError(f"heterofl capacity_timeout_s must be > 0, got {timeout}")
        options["capacity_timeout_s"] = timeout
    return options


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"{key} must be true or false, got {value!r}")


def _build_heterofl(
    parameters: Mapping[str, Any], model: nn.Module | None, sink: EventSink | None
) -> HeteroFL:
    """HeteroFL with the model's channel plan; coverage goes to ``sink``."""
    from strategies import heterofl

    if model is None:
        raise ValueError(
            "strategy 'heterofl' cuts sub-models out of the model: pass the full"
            " model (client_side('heterofl').build_model(shape)) to build_strategy"
        )

    def on_coverage(server_round: int, coverage: dict[str, float]) -> None:
        if sink is not None:
            now = time.time_ns()
            sink.append(
                EventKind.METRICS,
                round=server_round,
                scope=COVERAGE_SCOPE,
                values=dict(coverage),
                start_ns=now,
                end_ns=now,
            )

    fedavg = {k: v for k, v in parameters.items() if k in _FEDAVG_PARAMETERS}
    return heterofl.HeteroFL(
        heterofl.plan_from_model(model),
        on_coverage=on_coverage,
        **_heterofl_options(parameters),
        **fedavg,
    )


def fedbuff_config(parameters: Mapping[str, Any]) -> FedBuffConfig:
    """FedBuff's configuration from campaign parameters (names as FedBuffConfig)."""
    values: dict[str, Any] = {}
    for key in ("concurrency", "buffer_size"):
        if key in parameters:
            values[key] = int(parameters[key])
    if "max_staleness" in parameters:
        raw = parameters["max_staleness"]
        values["max_staleness"] = None if raw in (None, "", "none") else int(raw)
    for key in ("staleness_exponent", "server_learning_rate", "server_momentum"):
        if key in parameters:
            values[key] = float(parameters[key])
    if "weight_by_examples" in parameters:
        values["weight_by_examples"] = _as_bool(
            "weight_by_examples", parameters["weight_by_examples"]
        )
    return FedBuffConfig(**values)


def _fedbuff_loop(parameters: Mapping[str, Any]) -> dict[str, float]:
    loop = {k: float(parameters[k]) for k in _FEDBUFF_LOOP if k in parameters}
    for key, value in loop.items():
        if not value > 0:
            raise ValueError(f"fedbuff {key} must be > 0, got {value!r}")
    return loop


def _validate_fedbuff(parameters: Mapping[str, Any]) -> None:
    fedbuff_config(parameters)
    _fedbuff_loop(parameters)


def _build_fedbuff(
    parameters: Mapping[str, Any], model: nn.Module | None, sink: EventSink | None
) -> FedBuff:
    """FedBuff whose every update record becomes a ``fedbuff_update`` event."""
    from strategies import fedbuff

    del model

    def on_update(record: UpdateRecord) -> None:
        if sink is not None:
            sink.append(EventKind.FEDBUFF_UPDATE, **record.as_dict())

    loop = _fedbuff_loop(parameters)
    return fedbuff.FedBuff(
        fedbuff_config(parameters),
        on_update=on_update,
        poll_interval_s=loop.get("poll_interval_s", 0.2),
        max_wall_s=loop.get("max_wall_s", 3600.0),
    )


_FEDLABEL_CLIENT = (
    "teacher",
    "label_fraction",
    "threshold",
    "unlabelled_weight",
    "consistency_weight",
)


def fedlabel_config(parameters: Mapping[str, Any]) -> FedLabelConfig:
    """A FedLabel client's configuration from campaign parameters."""
    values: dict[str, Any] = {}
    for key in _FEDLABEL_CLIENT:
        if key in parameters:
            raw = parameters[key]
            values[key] = str(raw).lower() if key == "teacher" else float(raw)
    return FedLabelConfig(**values)


def _validate_fedlabel(parameters: Mapping[str, Any]) -> None:
    fedlabel_config(parameters)


_PROWD_PARAMETERS = (
    "bitwidths",
    "aggregation",
    "compatibility",
    "dequantizer_steps",
    "dequantizer_lr",
    "seed",
)


def prowd_config(parameters: Mapping[str, Any]) -> ProWDConfig:
    """ProWD's configuration from campaign parameters (bitwidths: list or 'a,b')."""
    values: dict[str, Any] = {}
    if "bitwidths" in parameters:
        raw = parameters["bitwidths"]
        items = str(raw).replace(" ", "").split(",") if isinstance(raw, str) else raw
        items = [raw] if isinstance(raw, int) else items
        try:
            values["bitwidths"] = tuple(int(b) for b in items if b != "")
        except (TypeError, ValueError):
            raise ValueError(
                f"prowd bitwidths must be whole numbers, e.g. [32, 4, 2] or"
                f" '32,4,2'; got {raw!r}"
            ) from None
    if "aggregation" in parameters:
        values["aggregation"] = str(parameters["aggregation"]).lower()
    for key in ("compatibility", "dequantizer_lr"):
        if key in parameters:
            values[key] = float(parameters[key])
    for key in ("dequantizer_steps", "seed"):
        if key in parameters:
            values[key] = int(parameters[key])
    return ProWDConfig(**values)


def _validate_prowd(parameters: Mapping[str, Any]) -> None:
    prowd_config(parameters)


def _build_prowd(
    parameters: Mapping[str, Any], model: nn.Module | None, sink: EventSink | None
) -> Any:
    """ProWD with its configuration; the FedAvg parameters go to the round loop."""
    from strategies import prowd

    del model, sink
    fedavg = {k: v for k, v in parameters.items() if k in _FEDAVG_PARAMETERS}
    return prowd.ProWD(prowd_config(parameters), **fedavg)


_REALFM_PARAMETERS = (
    "costs",
    "payoff",
    "a_opt",
    "k",
    "server_payoff",
    "reward_share",
    "payoff_kind",
    "query_timeout_s",
)


def _positive_list(key: str, value: Any) -> tuple[float, ...]:
    items = value.replace(" ", "").split(",") if isinstance(value, str) else value
    items = [items] if isinstance(items, int | float) else list(items)
    try:
        numbers = tuple(float(v) for v in items if v != "")
    except (TypeError, ValueError):
        numbers = ()
    if not numbers or not all(v > 0 for v in numbers):
        raise ValueError(f"{key} must be one or more numbers > 0, got {value!r}")
    return numbers


def _realfm_options(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """RealFM's own keyword arguments, typed and checked."""
    options: dict[str, Any] = {}
    if "costs" in parameters:
        options["costs"] = _positive_list("realfm costs", parameters["costs"])
    for key in ("payoff", "server_payoff", "query_timeout_s", "k"):
        if key in parameters:
            options[key] = float(parameters[key])
            if not options[key] > 0:
                raise ValueError(f"realfm {key} must be > 0, got {parameters[key]!r}")
    if "a_opt" in parameters:
        options["a_opt"] = float(parameters["a_opt"])
        if not 0 < options["a_opt"] < 1:
            raise ValueError(f"realfm a_opt must be in (0, 1), got {options['a_opt']}")
    if "reward_share" in parameters:
        options["reward_share"] = float(parameters["reward_share"])
        if not 0 <= options["reward_share"] < 1:
            raise ValueError(
                f"realfm reward_share must be in [0, 1), got {options['reward_share']}"
            )
    if "payoff_kind" in parameters:
        kind = str(parameters["payoff_kind"]).lower()
        if kind not in ("nonlinear", "linear"):
            raise ValueError(
                f"realfm payoff_kind must be nonlinear or linear, got {kind!r}"
            )
        options["kind"] = kind
    return options


def _build_realfm(
    parameters: Mapping[str, Any], model: nn.Module | None, sink: EventSink | None
) -> Any:
    """RealFM whose mechanism outcome becomes a ``metrics`` event (scope realfm)."""
    from strategies import realfm

    del model

    def on_equilibrium(outcome: Any) -> None:
        if sink is not None:
            now = time.time_ns()
            devices = outcome.devices
            sink.append(
                EventKind.METRICS,
                round=0,
                scope="realfm",
                values={
                    "b-local": [d.b_local for d in devices],
                    "b-fed": [d.b_fed for d in devices],
                    "cost": [d.cost for d in devices],
                    "device-utility-local": [d.utility_local for d in devices],
                    "device-utility-fed": [d.utility_fed for d in devices],
                    "server-utility": outcome.server_utility_fed,
                    "a-fed": outcome.a_fed,
                },
                start_ns=now,
                end_ns=now,
            )

    fedavg = {k: v for k, v in parameters.items() if k in _FEDAVG_PARAMETERS}
    return realfm.RealFM(
        **_realfm_options(parameters), on_equilibrium=on_equilibrium, **fedavg
    )


_INVERSION_PARAMETERS = (
    "num_samples",
    "steps",
    "local_lr",
    "iterations",
    "inversion_lr",
    "min_cosine",
    "min_staleness",
    "input_size",
)
_INVERSION_INFO = {
    "num_samples": ParameterInfo(32, "samples", "synthetic samples per inversion"),
    "steps": ParameterInfo(3, "steps", "unrolled local steps per simulated update"),
    "local_lr": ParameterInfo(0.1, "", "step size of the simulated local training"),
    "iterations": ParameterInfo(150, "iterations", "optimiser steps per inversion"),
    "inversion_lr": ParameterInfo(0.05, "", "Adam step size on the synthetic set"),
    "min_cosine": ParameterInfo(
        0.5, "cosine", "below this the inversion failed: use the raw update"
    ),
    "min_staleness": ParameterInfo(
        2, "versions", "fresher updates are used as they are"
    ),
    "input_size": ParameterInfo(
        32, "pixels", "side of the square inputs the synthetic set has"
    ),
}


def _inversion_config(parameters: Mapping[str, Any]) -> Any:
    from strategies.staleness import InversionConfig

    values: dict[str, Any] = {}
    for key in ("num_samples", "steps", "iterations", "min_staleness"):
        if key in parameters:
            values[key] = int(parameters[key])
    for key in ("local_lr", "inversion_lr", "min_cosine"):
        if key in parameters:
            values[key] = float(parameters[key])
    return InversionConfig(**values)


def _validate_inversion(parameters: Mapping[str, Any]) -> None:
    _validate_fedbuff(parameters)
    if int(parameters.get("input_size", 32)) < 1:
        raise ValueError(f"input_size must be >= 1, got {parameters['input_size']!r}")
    _inversion_config(parameters)


def _model_io(model: nn.Module, input_size: int) -> tuple[tuple[int, ...], int]:
    """One input's shape and the number of classes, read off the model's layers."""
    modules = list(model.modules())
    first = next(
        m for m in modules if hasattr(m, "in_channels") or hasattr(m, "in_features")
    )
    last = next(
        m
        for m in reversed(modules)
        if hasattr(m, "out_channels") or hasattr(m, "out_features")
    )
    classes = int(getattr(last, "out_features", getattr(last, "out_channels", 0)))
    channels: Any = getattr(first, "in_channels", None)
    if channels is not None:
        return (int(channels), input_size, input_size), classes
    features: Any = getattr(first, "in_features", 0)
    return (int(features),), classes


def _build_fedbuff_inversion(
    parameters: Mapping[str, Any], model: nn.Module | None, sink: EventSink | None
) -> FedBuff:
    """FedBuff whose stale updates are refreshed by gradient inversion.

    Every inversion is a ``metrics`` event of scope ``inversion`` (server
    seconds, cosine, staleness, whether the refreshed update was used).
    """
    from strategies import staleness

    if model is None:
        raise ValueError(
            "strategy 'fedbuff-inversion' inverts updates through the model: pass"
            " the model (client_side(...).build_model(shape)) to build_strategy"
        )
    shape, classes = _model_io(model, int(parameters.get("input_size", 32)))

    def on_refresh(out: Any, tau: int) -> None:
        if sink is not None:
            now = time.time_ns()
            sink.append(
                EventKind.METRICS,
                round=0,
                scope="inversion",
                values={
                    "seconds": out.seconds,
                    "cosine": out.cosine,
                    "staleness": tau,
                    "used": int(out.used_inversion),
                },
                start_ns=now - int(out.seconds * 1e9),
                end_ns=now,
            )

    refresher = staleness.Refresher(
        model, shape, classes, _inversion_config(parameters), on_refresh
    )
    built = _build_fedbuff(parameters, None, sink)
    built.refresh = staleness.fedbuff_refresh(refresher)
    return built


_REALFM_INFO = {
    "costs": ParameterInfo(
        "0.0001", "per data point", "marginal costs for nodes that declare none"
    ),
    "payoff": ParameterInfo(1.0, "", "payoff scale c for nodes that declare none"),
    "a_opt": ParameterInfo(0.95, "accuracy", "ceiling of the accuracy model a(m)"),
    "k": ParameterInfo(1.0, "", "complexity constant of the accuracy model a(m)"),
    "server_payoff": ParameterInfo(1.0, "", "server's payoff scale p_s"),
    "reward_share": ParameterInfo(
        0.1, "fraction", "share of the server's extra utility paid to devices"
    ),
    "payoff_kind": ParameterInfo(
        "nonlinear", "", "nonlinear (RealFM) or linear (the baseline mechanism)"
    ),
    "query_timeout_s": ParameterInfo(30.0, "s", "wait for the nodes' cost replies"),
}

# FedBuff's defaults are FLSim's (strategies.settings.FedBuffConfig).
_FEDBUFF_INFO = {
    "server_learning_rate": ParameterInfo(0.7, "", "server step size eta_g"),
    "server_momentum": ParameterInfo(0.9, "", "server momentum beta, in [0, 1)"),
}

# The last documented results (docs/methods-<name>.md) of the methods below.
REALFM_RESULT = (
    "holds: b_fed > b_local for 8 of 8 devices in 5 of 5 seeds; RealFM above"
    " linear by 2.5-2.8 orders of magnitude in device utility, 2.6 in server"
    " utility (paper: over 3)"
)
STALENESS_RESULT = (
    "holds against weighting and dropping at 10 and 20 versions stale, 5 of 5"
    " seeds (0.863 vs 0.569 and 0.000 at 10); but below the raw stale update at"
    " full weight at 20 (0.674 vs 0.875); 0.16-0.63 server s per inversion"
)

_FEDLABEL_INFO = {
    "teacher": ParameterInfo(
        "fedlabel", "", "fedlabel, global (FixMatch with the global model) or none"
    ),
    "label_fraction": ParameterInfo(
        0.1, "fraction", "share of a node's samples whose labels it may use"
    ),
    "threshold": ParameterInfo(0.9, "probability", "confidence a pseudo-label needs"),
    "unlabelled_weight": ParameterInfo(1.0, "", "weight of the pseudo-label loss"),
    "consistency_weight": ParameterInfo(
        1.0, "", "weight of the global-local consistency term"
    ),
}
_PROWD_INFO = {
    "bitwidths": ParameterInfo(
        "32,4,2", "bits", "handed to the nodes in node-id order, cyclically"
    ),
    "aggregation": ParameterInfo("prowd", "", "prowd, grouped or naive"),
    "compatibility": ParameterInfo(
        0.0, "cosine", "least similarity for a low-bit update to be averaged in"
    ),
    "dequantizer_steps": ParameterInfo(100, "steps", "Adam steps per stage per round"),
    "dequantizer_lr": ParameterInfo(0.01, "", "the dequantiser's learning rate"),
    "seed": ParameterInfo(0, "", "seeds the dequantiser's initial weights"),
}

FEDLABEL_RESULT = (
    "does not hold at small scale: FedLabel below FedAvg with global-model"
    " pseudo-labels (see the doc for the measured table)"
)
PROWD_RESULT = (
    "holds only as a tie with grouped averaging at 32/4/2 (0.916 vs 0.915, 3 of"
    " 5 seeds), far above naive (0.238); at 32/8/4 0.925 > 0.915 > 0.890"
)

REGISTRY: Mapping[str, StrategySpec] = {
    spec.name: spec
    for spec in (
        StrategySpec(
            "fedavg",
            "flwr.serverapp.strategy:FedAvg",
            "FedAvg (McMahan et al. 2017), Flower's implementation",
            _FEDAVG_PARAMETERS,
            paper="McMahan et al., Communication-Efficient Learning of Deep"
            " Networks from Decentralized Data, AISTATS 2017",
            claim="the baseline every other method is compared with",
        ),
        StrategySpec(
            "fedavgm",
            "flwr.serverapp.strategy:FedAvgM",
            "FedAvg with server momentum, Flower's implementation",
            (*_FEDAVG_PARAMETERS, "server_learning_rate", "server_momentum"),
            paper="Hsu et al., Measuring the Effects of Non-Identical Data"
            " Distribution for Federated Visual Classification, 2019",
        ),
        StrategySpec(
            "fedprox",
            "flwr.serverapp.strategy:FedProx",
            "FedProx (Li et al. 2020), Flower's implementation",
            (*_FEDAVG_PARAMETERS, "proximal_mu"),
            paper="Li et al., Federated Optimization in Heterogeneous Networks,"
            " MLSys 2020",
        ),
        StrategySpec(
            "fedbn",
            "strategies.fedbn:FedBN",
            "FedBN (Li et al. 2021): BatchNorm stays on the client, the rest FedAvg",
            _FEDAVG_PARAMETERS,
            client="strategies.fedbn:CLIENT_SIDE",
            needs_local_keys=True,
            paper="Li et al., FedBN: Federated Learning on Non-IID Features via"
            " Local Batch Normalization, ICLR 2021",
            claim="FedBN > FedAvg on mean per-domain accuracy (Digits-5-lite)",
            bench="bench.methods_fedwon",
            doc="docs/methods.md",
            result="holds: 0.974 vs 0.959 (FedAvg+BN), 5 of 5 seeds",
        ),
        StrategySpec(
            "fedwon",
            "flwr.serverapp.strategy:FedAvg",
            "FedWon (Zhuang and Lyu 2024): no normalization, standardised"
            " convolutions, AGC-SGD on the client; FedAvg on the server",
            _FEDAVG_PARAMETERS,
            client="strategies.fedwon:CLIENT_SIDE",
            client_parameters=("clip_lambda",),
            paper="Zhuang and Lyu, FedWon: Triumphing Multi-domain Federated"
            " Learning Without Normalization, ICLR 2024",
            claim="FedWon >= FedBN > FedAvg on mean per-domain accuracy, and"
            " FedWon still trains at batch size 1",
            bench="bench.methods_fedwon",
            doc="docs/methods.md",
            result="holds at batch size 1 (+0.088 over FedBN, 5 of 5 seeds);"
            " does not hold, narrowly, at batch 16 (-0.008 over 15 seeds)",
        ),
        StrategySpec(
            "heterofl",
            "strategies.heterofl:HeteroFL",
            "Heterogeneous model reduction (Zhou et al. 2023): static (HeteroFL),"
            " random (Federated Dropout) or rolling (FedRolex) channel sub-models,"
            " coverage-weighted averaging",
            (*_FEDAVG_PARAMETERS, *_HETEROFL_PARAMETERS),
            factory=_build_heterofl,
            validate=_heterofl_options,
            architectures=("squeezenet",),
            architecture_note="it cuts sub-models by channel, and the digit CNN"
            " flattens its maps into a Linear layer",
            paper="Zhou et al., Every Parameter Matters: Ensuring the Convergence"
            " of Federated Learning with Dynamic Heterogeneous Models Reduction,"
            " NeurIPS 2023",
            claim="with no full-capacity client, rolling and random extraction"
            " beat static (Gamma* = 0) on full-model accuracy",
            bench="bench.methods_heterofl",
            doc="docs/methods-heterofl.md",
            result="holds with 8 clients; with 4, holds for rolling only",
        ),
        StrategySpec(
            "fedbuff",
            "strategies.fedbuff:FedBuff",
            "FedBuff (Nguyen et al. 2022): asynchronous buffered aggregation with"
            " staleness weights; rounds are server model versions",
            (*_FEDBUFF_CONFIG, *_FEDBUFF_LOOP),
            factory=_build_fedbuff,
            validate=_validate_fedbuff,
            paper="Nguyen et al., Federated Learning with Buffered Asynchronous"
            " Aggregation, AISTATS 2022; Huba et al., Papaya, MLSys 2022",
            parameter_info=_FEDBUFF_INFO,
            claim="with a 5G straggler, FedBuff reaches a target accuracy sooner"
            " in wall time than synchronous FedAvg",
            bench="bench.methods_fedbuff",
            doc="docs/methods.md",
            result="holds: every target sooner in 3 of 3 seeds (0.30 at 133 s"
            " vs 272 s, reached by FedAvg in 1 of 3)",
        ),
        StrategySpec(
            "fedbuff-inversion",
            "strategies.fedbuff:FedBuff",
            "Unlimited staleness via gradient inversion (Wang et al.): FedBuff whose"
            " stale updates the server inverts into synthetic data and recomputes"
            " on the current model",
            (*_FEDBUFF_CONFIG, *_FEDBUFF_LOOP, *_INVERSION_PARAMETERS),
            factory=_build_fedbuff_inversion,
            validate=_validate_inversion,
            paper="Wang et al., Tackling the Unlimited Staleness in Federated"
            " Learning with Intertwined Data and Device Heterogeneities, 2023",
            parameter_info={**_FEDBUFF_INFO, **_INVERSION_INFO},
            claim="higher accuracy on a slow client's own classes than staleness"
            " weighting and than dropping it, when its updates are many versions"
            " stale",
            bench="bench.methods_staleness",
            doc="docs/methods-staleness.md",
            result=STALENESS_RESULT,
        ),
        StrategySpec(
            "realfm",
            "strategies.realfm:RealFM",
            "RealFM (Bornstein et al.): devices declare data costs, the server"
            " shapes the accuracy it offers and pays rewards so each contributes"
            " b_fed > b_local; nodes train on the contribution set for them",
            (*_FEDAVG_PARAMETERS, *_REALFM_PARAMETERS),
            factory=_build_realfm,
            validate=_realfm_options,
            paper="Bornstein et al., Towards Realistic Mechanisms That Incentivize"
            " Federated Participation and Contribution, 2023",
            parameter_info=_REALFM_INFO,
            claim="b_fed > b_local for every device, and device and server"
            " utility above the linear-payoff mechanism",
            bench="bench.methods_realfm",
            doc="docs/methods-realfm.md",
            result=REALFM_RESULT,
        ),
        StrategySpec(
            "fedlabel",
            "flwr.serverapp.strategy:FedAvg",
            "FedLabel (Cho et al. 2023): few labels per client; the more confident"
            " of the kept local model and the global model pseudo-labels, with"
            " weak/strong augmentation and a global-local consistency term;"
            " FedAvg on the server",
            _FEDAVG_PARAMETERS,
            client="strategies.fedlabel:CLIENT_SIDE",
            client_parameters=_FEDLABEL_CLIENT,
            validate=_validate_fedlabel,
            parameter_info=_FEDLABEL_INFO,
            paper="Cho, Joshi, Dimitriadis. Local or Global: Selective Knowledge"
            " Assimilation for Federated Learning with Limited Labels. ICCV 2023"
            " (arXiv:2307.08809)",
            claim="FedLabel > FedAvg with global-model pseudo-labels > FedAvg on"
            " labels only, at 5-20% labels with non-IID clients",
            bench="bench.methods_fedlabel",
            doc="docs/methods-fedlabel.md",
            result=FEDLABEL_RESULT,
        ),
        StrategySpec(
            "prowd",
            "strategies.prowd:ProWD",
            "ProWD (Yoon et al. 2022): clients train quantised at their own"
            " bitwidth (straight-through estimator) and send weights + bitwidth;"
            " the server dequantises progressively, aggregates only compatible"
            " updates and re-quantises per client",
            (*_FEDAVG_PARAMETERS, *_PROWD_PARAMETERS),
            client="strategies.prowd:CLIENT_SIDE",
            factory=_build_prowd,
            validate=_validate_prowd,
            parameter_info=_PROWD_INFO,
            paper="Yoon, Park, Jeong, Hwang. Bitwidth Heterogeneous Federated"
            " Learning with Progressive Weight Dequantization. ICML 2022"
            " (arXiv:2202.11453)",
            claim="ProWD >= grouped averaging > naive averaging on the"
            " full-precision clients' accuracy when most clients are low-bit",
            bench="bench.methods_prowd",
            doc="docs/methods-prowd.md",
            result=PROWD_RESULT,
        ),
    )
}


def strategy_spec(name: str) -> StrategySpec:
    """Return strategy ``name`` or raise a KeyError listing the known ones."""
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(
            f"unknown strategy {name!r}; flowerbed knows: {known}"
            " (`flowerbed strategies list` describes each)"
        ) from None


def parameter_summary(spec: StrategySpec) -> str:
    """``name (default, unit)`` for each parameter of ``spec``, comma-separated."""
    overrides = dict(spec.parameter_info)
    parts = []
    for name in spec.all_parameters:
        info = parameter_info(name, overrides)
        unit = f" {info.unit}" if info.unit and info.unit != "bool" else ""
        parts.append(f"{name} (default {info.default}{unit})")
    return ", ".join(parts) if parts else "none"


def check_parameters(name: str, parameters: Mapping[str, Any]) -> None:
    """Raise ValueError naming any parameter ``name`` does not take or a bad value."""
    spec = strategy_spec(name)
    unknown = sorted(set(parameters) - set(spec.all_parameters))
    if unknown:
        raise ValueError(
            f"strategy {name!r} takes no parameter(s) {', '.join(unknown)}; "
            f"it takes: {parameter_summary(spec)}"
            f" (`flowerbed strategies show {spec.name}` explains each)"
        )
    if spec.validate is not None:
        try:
            spec.validate(parameters)
        except (TypeError, ValueError) as err:
            raise ValueError(f"strategy {name!r}: {err}") from None


def check_model(name: str, architecture: str, width: float) -> None:
    """Raise ValueError unless ``name`` can train ``architecture`` at ``width``."""
    spec = strategy_spec(name)
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"model must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}"
        )
    if architecture not in spec.architectures:
        why = f" ({spec.architecture_note})" if spec.architecture_note else ""
        raise ValueError(
            f"strategy {name!r} trains only model {', '.join(spec.architectures)},"
            f" not {architecture!r}{why}"
        )
    if architecture == "cnn" and not 0 < width <= MAX_CNN_WIDTH:
        raise ValueError(
            f"model-width must be in (0, {MAX_CNN_WIDTH:g}] with model cnn (width 1"
            f" is 18M parameters), got {width!r}"
        )


def build_strategy(
    name: str,
    parameters: Mapping[str, Any],
    model: nn.Module | None = None,
    sink: EventSink | None = None,
) -> ServerStrategy:
    """Instantiate the server strategy ``name`` with its share of ``parameters``.

    ``model`` is the model variant of the strategy's client side
    (``client_side(name).build_model``); strategies that keep keys on the
    client, or cut sub-models out of it, need it. ``sink`` receives the
    strategy's own events (FedBuff's ``fedbuff_update`` per update,
    HeteroFL's ``metrics`` of scope ``coverage`` per round). Every result has
    ``start(grid, initial_arrays, num_rounds, timeout, train_config,
    evaluate_config, evaluate_fn)``.
    """
    check_parameters(name, parameters)
    spec = strategy_spec(name)
    server = {k: v for k, v in parameters.items() if k in spec.parameters}
    if spec.factory is not None:
        built: ServerStrategy = spec.factory(server, model, sink)
        return built
    if spec.needs_local_keys:
        if model is None:
            raise ValueError(
                f"strategy {name!r} keeps keys on the client: pass the model "
                f"(client_side({name!r}).build_model(shape)) to build_strategy"
            )
        server["local_keys"] = spec.client_side.local_keys(model)
    strategy_cls: Any = spec.strategy_cls
    built = strategy_cls(**server)
    return built


def client_side(name: str) -> ClientSide:
    """The client half of strategy ``name``: model variant, optimiser, kept keys."""
    return strategy_spec(name).client_side


def optimizer_settings(
    name: str, parameters: Mapping[str, Any], lr: float, momentum: float = 0.9
) -> OptimizerSettings:
    """The client optimiser settings of strategy ``name`` (its client parameters)."""
    from strategies.client_side import OptimizerSettings

    check_parameters(name, parameters)
    spec = strategy_spec(name)
    # Client parameters that are not optimiser settings (FedLabel's teacher, say)
    # go to the method's own training loop (ClientSide.local_train) instead.
    taken = set(spec.client_parameters) & set(OptimizerSettings.__dataclass_fields__)
    extra = {k: float(v) for k, v in parameters.items() if k in taken}
    return OptimizerSettings(lr=lr, momentum=momentum, **extra)


def __getattr__(name: str) -> Any:
    """Names this module once imported eagerly, now imported on first use."""
    lazy = {
        "ClientSide": "strategies.client_side:ClientSide",
        "OptimizerSettings": "strategies.client_side:OptimizerSettings",
        "PLAIN": PLAIN_CLIENT_SIDE,
    }
    if name == "ServerStrategy":
        strategy: Any = load_object("flwr.serverapp.strategy:Strategy")
        return strategy | load_object("strategies.fedbuff:FedBuff")
    if name in lazy:
        return load_object(lazy[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
