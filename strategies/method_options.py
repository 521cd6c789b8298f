"""Each method's parameters: how they are read and checked, how its server
strategy is built, and what ``flowerbed strategies show`` says of them.

The table that names each method and ties these together is
:mod:`strategies.registry`; this module holds the per-method pieces it points
to, and, like it, loads neither Flower nor torch at import (the builders import
them when a strategy is built).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from instrumentation.schema import EventKind
from instrumentation.schema import EventSink as EventSink
from strategies.parameters import ParameterInfo
from strategies.settings import (
    EXTRACTION_MODES,
    FedBuffConfig,
    FedLabelConfig,
    ProWDConfig,
)

if TYPE_CHECKING:
    from torch import nn

    from strategies.fedbuff import FedBuff, UpdateRecord
    from strategies.heterofl import HeteroFL

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
