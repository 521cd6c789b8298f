"""The strategy registry: a campaign's strategy name to its server and client halves.

Importing it loads neither Flower nor torch, so a campaign file is checked against
the names, parameters and models here in a fraction of a second. A strategy's
server class and client side are named by module path and imported when a
strategy is built or its client side is asked for, as a plugin registry does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from instrumentation.schema import EventSink as EventSink
from strategies.method_options import (
    _FEDAVG_PARAMETERS,
    _FEDBUFF_CONFIG,
    _FEDBUFF_INFO,
    _FEDBUFF_LOOP,
    _FEDLABEL_CLIENT,
    _FEDLABEL_INFO,
    _HETEROFL_PARAMETERS,
    _INVERSION_INFO,
    _INVERSION_PARAMETERS,
    _PROWD_INFO,
    _PROWD_PARAMETERS,
    _REALFM_INFO,
    _REALFM_PARAMETERS,
    FEDLABEL_RESULT,
    PROWD_RESULT,
    REALFM_RESULT,
    STALENESS_RESULT,
    _build_fedbuff,
    _build_fedbuff_inversion,
    _build_heterofl,
    _build_prowd,
    _build_realfm,
    _heterofl_options,
    _realfm_options,
    _validate_fedbuff,
    _validate_fedlabel,
    _validate_inversion,
    _validate_prowd,
)

# Names older imports take from here (they live in strategies.method_options).
from strategies.method_options import COVERAGE_SCOPE as COVERAGE_SCOPE
from strategies.method_options import FEDBUFF_UPDATE_EVENT as FEDBUFF_UPDATE_EVENT
from strategies.method_options import fedbuff_config as fedbuff_config
from strategies.method_options import fedlabel_config as fedlabel_config
from strategies.method_options import parse_ratios as parse_ratios
from strategies.method_options import prowd_config as prowd_config
from strategies.method_options_iii import (  # Strategies III (issue 20)
    _FEDSPINE_INFO,
    _FEDSPINE_PARAMETERS,
    _MAS_INFO,
    _MAS_PARAMETERS,
    _OTA_INFO,
    _OTA_PARAMETERS,
    FEDSPINE_RESULT,
    MAS_RESULT,
    PROAR_RESULT,
    _build_fedspine,
    _build_mas,
    _build_ota_fedavg,
    _build_proar,
    _validate_fedspine,
    _validate_mas,
    _validate_ota,
)
from strategies.parameters import ParameterInfo, parameter_info
from workloads import ARCHITECTURES, TEXT_DATASETS, TEXT_STRATEGIES
from workloads import CNN_MAX_WIDTH as MAX_CNN_WIDTH

if TYPE_CHECKING:
    from flwr.serverapp.strategy import Strategy
    from torch import nn

    from strategies.client_side import ClientSide, OptimizerSettings
    from strategies.fedbuff import FedBuff

    ServerStrategy = Strategy | FedBuff

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
        StrategySpec(
            "mas",
            "strategies.mas:MAS",
            "MAS (merge and split): five digit tasks train as one multi-task"
            " model (shared encoder, a head per task) for merge_rounds rounds;"
            " clients send look-ahead task affinities, the server splits the"
            " tasks into the groups of highest affinity, each group goes on"
            " from the merged weights",
            (*_FEDAVG_PARAMETERS, *_MAS_PARAMETERS),
            client="strategies.mas:CLIENT_SIDE",
            factory=_build_mas,
            validate=_validate_mas,
            parameter_info=_MAS_INFO,
            architectures=("cnn", "squeezenet"),
            architecture_note="it always trains its own multi-task MLP"
            " (model-width sets the encoder width)",
            paper="Zhuang, Wen, Lyu, Zhang. MAS: Towards Resource-Efficient"
            " Federated Multiple-Task Learning. ICCV 2023 (arXiv:2307.11285)",
            claim="total loss within a few % of the best of all-in-one and"
            " independent tasks, at about half the cost of independent tasks",
            bench="bench.methods_mas",
            doc="docs/methods-mas.md",
            result=MAS_RESULT,
        ),
        StrategySpec(
            "proar-pfed",
            "strategies.proar:PROARPFed",
            "PROAR-PFed: personalised FL over a SIMULATED over-the-air uplink"
            " (Rayleigh fading, per-user RIS phase alignment, truncated channel"
            " inversion, receiver noise at snr_db); the classifier head stays"
            " on the node",
            (*_FEDAVG_PARAMETERS, *_OTA_PARAMETERS),
            client="strategies.proar:CLIENT_SIDE",
            factory=_build_proar,
            validate=_validate_ota,
            parameter_info=_OTA_INFO,
            paper="Personalized Over-the-Air Federated Learning with"
            " Personalized Reconfigurable Intelligent Surfaces (PROAR-PFed)",
            claim="personalised accuracy rises with SNR and with RIS elements,"
            " and beats OTA-FedAvg without RIS or personalisation on non-IID"
            " digits",
            bench="bench.methods_proar",
            doc="docs/methods-proar-pfed.md",
            result=PROAR_RESULT,
        ),
        StrategySpec(
            "ota-fedavg",
            "strategies.proar:PROARPFed",
            "OTA-FedAvg: FedAvg over the same simulated over-the-air uplink,"
            " every key global (PROAR-PFed's baseline; set ris_elements 0)",
            (*_FEDAVG_PARAMETERS, *_OTA_PARAMETERS),
            factory=_build_ota_fedavg,
            validate=_validate_ota,
            parameter_info=_OTA_INFO,
            paper="Zhu, Wang, Huang. Broadband Analog Aggregation for Low-Latency"
            " Federated Edge Learning, IEEE Trans. Wireless Commun. 2020",
            claim="the baseline of proar-pfed",
            bench="bench.methods_proar",
            doc="docs/methods-proar-pfed.md",
            result="below proar-pfed from -40 to -20 dB (diverges without RIS);"
            " above it at -10 and 0 dB (docs/methods-proar-pfed.md)",
        ),
        StrategySpec(
            "fedspine",
            "strategies.fedspine:FedSpine",
            "FedSpine (Yao et al. 2025): a tiny transformer fine-tuned with LoRA"
            " plus structured pruning (MLP channels), iterated; a UCB bandit per"
            " device picks (pruning ratio, LoRA rank) from its gain and measured"
            " seconds; heterogeneous ranks merged by coverage (HetLoRA-style)",
            (*_FEDAVG_PARAMETERS, *_FEDSPINE_PARAMETERS),
            client="strategies.fedspine:CLIENT_SIDE",
            factory=_build_fedspine,
            validate=_validate_fedspine,
            parameter_info=_FEDSPINE_INFO,
            architecture_note="it builds its own transformer (dataset text)",
            paper="Yao, Xu, Xu, Liao, Xie. Efficient Deployment of Large Language"
            " Models on Resource-constrained Devices, 2025 (arXiv:2501.02438)",
            claim="with heterogeneous device speeds, the bandit reaches a target"
            " accuracy sooner (simulated wall clock) than the best fixed"
            " (ratio, rank), at the same evaluated sparsity",
            bench="bench.methods_fedspine",
            doc="docs/methods-fedspine.md",
            result=FEDSPINE_RESULT,
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


def check_dataset(name: str, dataset: str) -> None:
    """Raise ValueError unless strategy ``name`` can train on ``dataset``.

    Text datasets (token ids) go only to strategies with their own text
    model (FedSpine), and those train only on text.
    """
    text_model = strategy_spec(name).name in TEXT_STRATEGIES
    if text_model != (dataset in TEXT_DATASETS):
        raise ValueError(
            f"strategy {name!r} cannot train on dataset {dataset!r}: dataset"
            f" {', '.join(TEXT_DATASETS)} goes with strategy"
            f" {', '.join(TEXT_STRATEGIES)} and only with it"
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
