"""The parameters of the Strategies III methods (issue 20): MAS, PROAR-PFed and
its OTA-FedAvg baseline, FedSpine. How each is read and checked, how its server
strategy is built, and what ``flowerbed strategies show`` says of them.

Like :mod:`strategies.method_options`, loads neither Flower nor torch at import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from instrumentation.schema import EventSink
from strategies.method_options import _FEDAVG_PARAMETERS
from strategies.parameters import ParameterInfo
from strategies.settings_iii import MASConfig, OTAConfig

if TYPE_CHECKING:
    from torch import nn


_MAS_PARAMETERS = ("merge_rounds", "groups", "affinity_batches", "mode")
_MAS_INFO = {
    "merge_rounds": ParameterInfo(
        1, "rounds", "R1: rounds merged; affinities measured in the last"
    ),
    "groups": ParameterInfo(2, "", "task groups the split makes (1..5)"),
    "affinity_batches": ParameterInfo(
        4, "batches", "minibatches a client averages its affinities over"
    ),
    "mode": ParameterInfo(
        "mas", "", "mas, merged (never split) or independent (one encoder per task)"
    ),
}
MAS_RESULT = (
    "loss within 5 % of the best: holds on average, 3 of 5 seeds (2 groups), 4 of"
    " 5 (3 groups); cost 0.44x independent's bytes but 0.6-0.8x its CPU"
)


def mas_config(parameters: Mapping[str, Any]) -> MASConfig:
    """MAS's configuration from campaign parameters."""
    values: dict[str, Any] = {}
    for key in ("merge_rounds", "groups", "affinity_batches"):
        if key in parameters:
            values[key] = int(parameters[key])
    if "mode" in parameters:
        values["mode"] = str(parameters["mode"]).lower()
    return MASConfig(**values)


def _validate_mas(parameters: Mapping[str, Any]) -> None:
    mas_config(parameters)


def _build_mas(
    parameters: Mapping[str, Any], model: nn.Module | None, sink: EventSink | None
) -> Any:
    """MAS with its configuration; the FedAvg parameters go to the round loop."""
    from strategies import mas

    del model
    fedavg = {k: v for k, v in parameters.items() if k in _FEDAVG_PARAMETERS}
    return mas.MAS(mas_config(parameters), sink=sink, **fedavg)


_OTA_PARAMETERS = (
    "snr_db",
    "ris_elements",
    "ris_gain",
    "truncation",
    "estimation_error",
    "seed",
)
_OTA_INFO = {
    "snr_db": ParameterInfo(10.0, "dB", "simulated transmit SNR P/sigma^2"),
    "ris_elements": ParameterInfo(
        16, "elements", "N, elements of each user's simulated RIS (0: none)"
    ),
    "ris_gain": ParameterInfo(
        0.05, "", "mean power of one RIS path relative to the direct path"
    ),
    "truncation": ParameterInfo(
        0.05, "", "a client with |h|^2 below this does not transmit"
    ),
    "estimation_error": ParameterInfo(
        0.0, "", "variance of the channel-estimate error, relative to |h|^2"
    ),
    "seed": ParameterInfo(0, "", "seeds the simulated channel draws"),
}
PROAR_RESULT = (
    "rises with RIS elements (0.087 at N <= 4, 0.93 at 64, -35 dB); with SNR as a"
    " step then a plateau; beats OTA-FedAvg from -40 to -20 dB thanks to the RIS,"
    " not at -10 and 0 dB (personal head: no gain at this scale)"
)


def ota_config(parameters: Mapping[str, Any]) -> OTAConfig:
    """The simulated over-the-air channel's configuration from campaign parameters."""
    values: dict[str, Any] = {}
    for key in ("snr_db", "ris_gain", "truncation", "estimation_error"):
        if key in parameters:
            values[key] = float(parameters[key])
    for key in ("ris_elements", "seed"):
        if key in parameters:
            values[key] = int(parameters[key])
    return OTAConfig(**values)


def _validate_ota(parameters: Mapping[str, Any]) -> None:
    ota_config(parameters)


def _build_proar(
    parameters: Mapping[str, Any], model: nn.Module | None, sink: EventSink | None
) -> Any:
    """PROAR-PFed: the classifier head stays on the node, the rest goes OTA."""
    from strategies import proar

    if model is None:
        raise ValueError(
            "strategy 'proar-pfed' keeps the classifier head on the client: pass the"
            " model (client_side('proar-pfed').build_model(shape)) to build_strategy"
        )
    fedavg = {k: v for k, v in parameters.items() if k in _FEDAVG_PARAMETERS}
    return proar.PROARPFed(
        ota_config(parameters), proar.personal_keys(model), sink=sink, **fedavg
    )


def _build_ota_fedavg(
    parameters: Mapping[str, Any], model: nn.Module | None, sink: EventSink | None
) -> Any:
    """OTA-FedAvg: the same simulated uplink, every key global."""
    from strategies import proar

    del model
    fedavg = {k: v for k, v in parameters.items() if k in _FEDAVG_PARAMETERS}
    return proar.PROARPFed(ota_config(parameters), frozenset(), sink=sink, **fedavg)


# FedSpine (issue 20, item 2): strategies/fedspine.py.
_FEDSPINE_PARAMETERS = (
    "ratios",
    "ranks",
    "policy",
    "fixed_ratio",
    "fixed_rank",
    "exploration",
    "discount",
    "pace_quantile",
    "gain",
    "normalise",
    "target_sparsity",
    "seed",
)


def _numbers(name: str, raw: Any, kind: type) -> tuple[Any, ...]:
    """A list of numbers from a list, a number or a comma-separated string."""
    items = str(raw).replace(" ", "").split(",") if isinstance(raw, str) else raw
    items = [raw] if isinstance(raw, int | float) else items
    try:
        return tuple(kind(v) for v in items if v != "")
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a list of numbers, e.g. [0.25, 0.5] or '0.25,0.5';"
            f" got {raw!r}"
        ) from None


def fedspine_config(parameters: Mapping[str, Any]) -> Any:
    """FedSpine's configuration (a FedSpineConfig) from campaign parameters."""
    from strategies.fedspine_settings import FedSpineConfig

    values: dict[str, Any] = {}
    if "ratios" in parameters:
        values["ratios"] = _numbers("fedspine ratios", parameters["ratios"], float)
    if "ranks" in parameters:
        values["ranks"] = _numbers("fedspine ranks", parameters["ranks"], int)
    for key in ("policy", "gain", "normalise"):
        if key in parameters:
            values[key] = str(parameters[key]).lower()
    for key in (
        "fixed_ratio",
        "exploration",
        "discount",
        "pace_quantile",
        "target_sparsity",
    ):
        if key in parameters:
            values[key] = float(parameters[key])
    for key in ("fixed_rank", "seed"):
        if key in parameters:
            values[key] = int(parameters[key])
    return FedSpineConfig(**values)


def _validate_fedspine(parameters: Mapping[str, Any]) -> None:
    fedspine_config(parameters)


def _build_fedspine(
    parameters: Mapping[str, Any], model: nn.Module | None, sink: EventSink | None
) -> Any:
    """FedSpine with its configuration; the FedAvg parameters go to the round loop."""
    from strategies import fedspine

    del model, sink
    fedavg = {k: v for k, v in parameters.items() if k in _FEDAVG_PARAMETERS}
    return fedspine.FedSpine(fedspine_config(parameters), **fedavg)


_FEDSPINE_INFO = {
    "ratios": ParameterInfo(
        "0,0.25,0.5,0.75", "fraction", "pruning ratios (MLP channels) the bandit picks"
    ),
    "ranks": ParameterInfo("2,4,8", "", "LoRA ranks the bandit picks (at most 8)"),
    "policy": ParameterInfo("ucb", "", "ucb (bandit per device) or fixed"),
    "fixed_ratio": ParameterInfo(0.5, "fraction", "every device's ratio if fixed"),
    "fixed_rank": ParameterInfo(4, "", "every device's LoRA rank if fixed"),
    "exploration": ParameterInfo(0.1, "", "UCB exploration weight"),
    "discount": ParameterInfo(0.9, "", "UCB discount of past rounds per round"),
    "pace_quantile": ParameterInfo(
        1.0, "quantile", "reward = gain / max(seconds, this quantile of the others')"
    ),
    "gain": ParameterInfo("accuracy", "", "accuracy or loss gain on held-out data"),
    "normalise": ParameterInfo(
        "max", "", "max, decay or gain (gains over the round's mean first)"
    ),
    "target_sparsity": ParameterInfo(
        0.5, "fraction", "MLP channels pruned when the global model is evaluated"
    ),
    "seed": ParameterInfo(0, "", "seeds the order each device tries the arms in"),
}
FEDSPINE_RESULT = (
    "does not hold at small scale: the bandit reached 0.78 later than the best"
    " fixed arm in 3 of 3 seeds (131 vs 102 simulated s); a hand-set arm per"
    " speed class beat it (87 s)"
)
