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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from instrumentation.schema import EventKind
from instrumentation.schema import EventSink as EventSink
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
    # What `flowerbed strategies` shows: the paper, the claim its bench tests,
    # the bench command, and the last documented result (with its doc).
    paper: str = ""
    claim: str = ""
    bench: str = ""
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


REGISTRY: Mapping[str, StrategySpec] = {
    spec.name: spec
    for spec in (
        StrategySpec(
            "fedavg",
            "flwr.serverapp.strategy:FedAvg",
            "FedAvg (McMahan et al. 2017), Flower's implementation",
            _FEDAVG_PARAMETERS,
        ),
        StrategySpec(
            "fedavgm",
            "flwr.serverapp.strategy:FedAvgM",
            "FedAvg with server momentum, Flower's implementation",
            (*_FEDAVG_PARAMETERS, "server_learning_rate", "server_momentum"),
        ),
        StrategySpec(
            "fedprox",
            "flwr.serverapp.strategy:FedProx",
            "FedProx (Li et al. 2020), Flower's implementation",
            (*_FEDAVG_PARAMETERS, "proximal_mu"),
        ),
        StrategySpec(
            "fedbn",
            "strategies.fedbn:FedBN",
            "FedBN (Li et al. 2021): BatchNorm stays on the client, the rest FedAvg",
            _FEDAVG_PARAMETERS,
            client="strategies.fedbn:CLIENT_SIDE",
            needs_local_keys=True,
        ),
        StrategySpec(
            "fedwon",
            "flwr.serverapp.strategy:FedAvg",
            "FedWon (Zhuang and Lyu 2024): no normalization, standardised"
            " convolutions, AGC-SGD on the client; FedAvg on the server",
            _FEDAVG_PARAMETERS,
            client="strategies.fedwon:CLIENT_SIDE",
            client_parameters=("clip_lambda",),
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
        ),
        StrategySpec(
            "fedbuff",
            "strategies.fedbuff:FedBuff",
            "FedBuff (Nguyen et al. 2022): asynchronous buffered aggregation with"
            " staleness weights; rounds are server model versions",
            (*_FEDBUFF_CONFIG, *_FEDBUFF_LOOP),
            factory=_build_fedbuff,
            validate=_validate_fedbuff,
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
            paper="Cho, Joshi, Dimitriadis. Local or Global: Selective Knowledge"
            " Assimilation for Federated Learning with Limited Labels. ICCV 2023"
            " (arXiv:2307.08809)",
            claim="FedLabel > FedAvg with global-model pseudo-labels > FedAvg on"
            " labels only, at 5-20% labels with non-IID clients",
            bench="python -m bench.methods_fedlabel",
            result="see docs/methods-fedlabel.md",
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
            paper="Yoon, Park, Jeong, Hwang. Bitwidth Heterogeneous Federated"
            " Learning with Progressive Weight Dequantization. ICML 2022"
            " (arXiv:2202.11453)",
            claim="ProWD >= grouped averaging > naive averaging on the"
            " full-precision clients' accuracy when most clients are low-bit",
            bench="python -m bench.methods_prowd",
            result="see docs/methods-prowd.md",
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
    """Raise ValueError naming any parameter ``name`` does not take or a bad value."""
    spec = strategy_spec(name)
    unknown = sorted(set(parameters) - set(spec.all_parameters))
    if unknown:
        raise ValueError(
            f"strategy {name!r} takes no parameter(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(spec.all_parameters)}"
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
