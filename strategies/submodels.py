"""Channel sub-models for heterogeneous model reduction: plans, masks, client side.

The pieces both ends of :mod:`strategies.heterofl` share: a :class:`ReductionPlan`
of which channel groups each tensor axis is made of, per-client channel masks under
the three extraction rules, cutting a sub-model out of the global state, and on the
client, rebuilding a reduced-width module from what the server sent.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from flwr.app import ArrayRecord, ConfigRecord, RecordDict
from torch import nn

from strategies.settings import EXTRACTION_MODES as EXTRACTION_MODES
from strategies.settings import ExtractionMode as ExtractionMode

# ConfigRecord keys the server adds to each client's training config.
RATIO_KEY = "heterofl-ratio"
MODE_KEY = "heterofl-mode"
MASK_KEY = "heterofl-mask"  # JSON: {group name: [kept channel indices]}

# A node declares its capacity in its node config (the inventory's node_config);
# the server asks for it with a query message of this type before a node's
# first round, and the node answers with a ConfigRecord under CAPACITY_RECORD.
CAPACITY_KEY = "capacity-ratio"
CAPACITY_QUERY = "query.capacity"
CAPACITY_RECORD = "capacity"
NODE_NAME_KEY = "flowerbed-node"


def declared_capacity(value: object) -> float | None:
    """A node's declared capacity ratio, or None when it declares none (or nonsense)."""
    try:
        ratio = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return ratio if 0 < ratio <= 1 else None


def capacity_reply(node_config: Mapping[str, object]) -> RecordDict:
    """A node's answer to a capacity query: its declared ratio (0: none), its name."""
    ratio = declared_capacity(node_config.get(CAPACITY_KEY))
    record = ConfigRecord(
        {
            CAPACITY_KEY: 0.0 if ratio is None else ratio,
            NODE_NAME_KEY: str(node_config.get(NODE_NAME_KEY, "")),
        }
    )
    return RecordDict({CAPACITY_RECORD: record})


NDArray = npt.NDArray[np.generic]
IndexArray = npt.NDArray[np.int64]
StateArrays = Mapping[str, NDArray]

# A tensor axis is the concatenation of these channel groups; () = never reduced.
AxisGroups = tuple[str, ...]
# Kept channel indices per group (sorted, unique, within the group's size).
ChannelMask = Mapping[str, IndexArray]


@dataclass(frozen=True)
class ReductionPlan:
    """Which channel groups each axis of each state-dict tensor is made of.

    Parameters
    ----------
    group_sizes
        Full size of every channel group (a hidden layer's output channels).
    axes
        Per state-dict key, one :data:`AxisGroups` per tensor dimension.
    """

    group_sizes: Mapping[str, int]
    axes: Mapping[str, tuple[AxisGroups, ...]]

    def __post_init__(self) -> None:
        for name, size in self.group_sizes.items():
            if size < 1:
                raise ValueError(f"channel group {name!r} has size {size}; need >= 1")
        for key, axes in self.axes.items():
            for groups in axes:
                unknown = [g for g in groups if g not in self.group_sizes]
                if unknown:
                    raise ValueError(
                        f"plan entry {key!r} names unknown channel group(s) {unknown}"
                    )

    def check(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Raise ValueError unless ``shapes`` (full model) match the plan exactly."""
        if set(shapes) != set(self.axes):
            missing = sorted(set(shapes) - set(self.axes))
            extra = sorted(set(self.axes) - set(shapes))
            raise ValueError(
                f"plan and model keys differ: not in plan {missing}, not in model"
                f" {extra}; build the plan with plan_from_model(model)"
            )
        for key, shape in shapes.items():
            axes = self.axes[key]
            if len(axes) != len(shape):
                raise ValueError(
                    f"{key!r} has {len(shape)} dims but the plan describes {len(axes)}"
                )
            for dim, groups in enumerate(axes):
                if groups and sum(self.group_sizes[g] for g in groups) != shape[dim]:
                    raise ValueError(
                        f"{key!r} dim {dim} has size {shape[dim]} but groups"
                        f" {groups} sum to {sum(self.group_sizes[g] for g in groups)}"
                    )


# --- deriving a plan from a torch model --------------------------------------

_PASS_THROUGH = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Flatten,
)


@dataclass
class _PlanBuilder:
    last_layer: nn.Module
    group_sizes: dict[str, int] = field(default_factory=dict)
    axes: dict[str, tuple[AxisGroups, ...]] = field(default_factory=dict)

    def walk(self, module: nn.Module, path: str, inputs: AxisGroups) -> AxisGroups:
        prefix = f"{path}." if path else ""
        if isinstance(module, nn.Conv2d | nn.Linear):
            return self._layer(module, path, prefix, inputs)
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            for name in ("weight", "bias", "running_mean", "running_var"):
                if getattr(module, name, None) is not None:
                    self.axes[prefix + name] = (inputs,)
            if module.num_batches_tracked is not None:
                self.axes[prefix + "num_batches_tracked"] = ()
            return inputs
        if all(hasattr(module, a) for a in ("squeeze", "expand1x1", "expand3x3")):
            squeeze = module.get_submodule("squeeze")
            squeezed = self.walk(squeeze, prefix + "squeeze", inputs)
            expand1 = module.get_submodule("expand1x1")
            expand3 = module.get_submodule("expand3x3")
            left = self.walk(expand1, prefix + "expand1x1", squeezed)
            right = self.walk(expand3, prefix + "expand3x3", squeezed)
            return left + right  # torch.cat along channels
        if isinstance(module, nn.Sequential) or not path:
            # Containers (and the root model) run their children in order.
            for name, child in module.named_children():
                inputs = self.walk(child, prefix + name, inputs)
            return inputs
        if isinstance(module, _PASS_THROUGH):
            return inputs
        if any(True for _ in module.parameters()):
            raise ValueError(
                f"plan_from_model cannot reduce module {path!r} of type"
                f" {type(module).__name__}; supported: Conv2d (groups=1), Linear,"
                " BatchNorm, SqueezeNet Fire modules and Sequentials of them"
            )
        return inputs

    def _layer(
        self, layer: nn.Conv2d | nn.Linear, path: str, prefix: str, inputs: AxisGroups
    ) -> AxisGroups:
        if isinstance(layer, nn.Conv2d):
            if layer.groups != 1:
                raise ValueError(f"{path!r}: grouped convolutions are not supported")
            in_size, out_size, extra = layer.in_channels, layer.out_channels, 2
        else:
            in_size, out_size, extra = layer.in_features, layer.out_features, 0
        if inputs and sum(self.group_sizes[g] for g in inputs) != in_size:
            raise ValueError(
                f"{path!r} takes {in_size} inputs but the channels before it number"
                f" {sum(self.group_sizes[g] for g in inputs)}: flattening spatial"
                " maps into a Linear is not supported; pool to 1x1 first"
            )
        outputs: AxisGroups = ()
        if layer is not self.last_layer:
            self.group_sizes[path] = out_size
            outputs = (path,)
        self.axes[prefix + "weight"] = (outputs, inputs) + ((),) * extra
        if layer.bias is not None:
            self.axes[prefix + "bias"] = (outputs,)
        return outputs


def plan_from_model(model: nn.Module) -> ReductionPlan:
    """Derive the channel plan of a conv/linear stack (forward order = module order).

    The input channels of the first layer and the outputs of the last Conv2d or
    Linear (the classes) are never reduced; every other layer's output channels
    form one group. Fire modules (children ``squeeze``, ``expand1x1``,
    ``expand3x3``) feed the concatenation of both expands to the next layer.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    if not layers:
        raise ValueError("plan_from_model: the model has no Conv2d or Linear layer")
    builder = _PlanBuilder(last_layer=layers[-1])
    builder.walk(model, "", ())
    plan = ReductionPlan(dict(builder.group_sizes), dict(builder.axes))
    plan.check({k: tuple(v.shape) for k, v in model.state_dict().items()})
    return plan


# --- masks ---------------------------------------------------------------------


def kept_channels(size: int, ratio: float) -> int:
    """Channels a client of capacity ``ratio`` keeps out of ``size``: ceil(r*C) >= 1."""
    if not 0 < ratio <= 1:
        raise ValueError(f"capacity ratio must be in (0, 1], got {ratio!r}")
    # The epsilon keeps e.g. 0.3 * 10 = 3.0000000000000004 from becoming 4.
    return max(1, min(size, math.ceil(ratio * size - 1e-9)))


def make_mask(
    plan: ReductionPlan,
    ratio: float,
    mode: ExtractionMode,
    *,
    server_round: int,
    offset: float = 0.0,
    rng: np.random.Generator | None = None,
    rolling_step: int = 1,
    rolling_drift: bool = True,
) -> dict[str, IndexArray]:
    """Choose the kept channels of every group for one client and round.

    Parameters
    ----------
    plan
        The model's channel plan.
    ratio
        The client's capacity ratio ``r`` in (0, 1].
    mode
        ``static`` (first channels), ``random`` (uniform subset, needs ``rng``)
        or ``rolling`` (a window starting at ``server_round * rolling_step``
        plus ``offset * C``, wrapping around).
    server_round
        The round, from 1; only ``rolling`` uses it.
    offset
        Where this client's rolling window starts, as a fraction of each group.
    rng
        Random source for ``random``.
    rolling_step
        Channels the rolling window advances per round.
    rolling_drift
        The j-th group's window advances ``(j + 1) * rolling_step`` per round.
    """
    mask: dict[str, IndexArray] = {}
    for position, (group, size) in enumerate(plan.group_sizes.items()):
        kept = kept_channels(size, ratio)
        if mode == "static":
            indices = np.arange(kept)
        elif mode == "random":
            if rng is None:
                raise ValueError("make_mask: mode 'random' needs an rng")
            indices = np.sort(rng.choice(size, size=kept, replace=False))
        elif mode == "rolling":
            speed = rolling_step * (position + 1 if rolling_drift else 1)
            start = (server_round - 1) * speed + round(offset * size)
            indices = np.sort((start + np.arange(kept)) % size)
        else:
            raise ValueError(
                f"unknown extraction mode {mode!r}; use {EXTRACTION_MODES}"
            )
        mask[group] = indices.astype(np.int64)
    return mask


def round_masks(
    plan: ReductionPlan,
    ratios: Mapping[int, float],
    mode: ExtractionMode,
    *,
    server_round: int,
    seed: int = 0,
    rolling_step: int = 1,
    rolling_tile: bool = True,
    rolling_drift: bool = True,
) -> dict[int, dict[str, IndexArray]]:
    """Masks for all clients of a round, keyed like ``ratios`` (client id -> ratio).

    Random masks are drawn from a generator seeded with ``(seed, round, client)``,
    so a round is reproducible. Tiled rolling windows start where the previous
    client's (in ascending id order) ended.
    """
    masks: dict[int, dict[str, IndexArray]] = {}
    offset = 0.0
    for client in sorted(ratios):
        rng = np.random.default_rng([seed, server_round, client])
        masks[client] = make_mask(
            plan,
            ratios[client],
            mode,
            server_round=server_round,
            offset=offset if rolling_tile else 0.0,
            rng=rng,
            rolling_step=rolling_step,
            rolling_drift=rolling_drift,
        )
        offset = (offset + ratios[client]) % 1.0
    return masks


def mask_to_json(mask: ChannelMask) -> str:
    """Serialise a mask for a ConfigRecord string value."""
    return json.dumps({g: [int(i) for i in idx] for g, idx in mask.items()})


def mask_from_json(text: str) -> dict[str, IndexArray]:
    """Parse a mask written by :func:`mask_to_json`."""
    raw = json.loads(text)
    return {g: np.asarray(idx, dtype=np.int64) for g, idx in raw.items()}


# --- extraction --------------------------------------------------------------


def axis_indices(
    plan: ReductionPlan, mask: ChannelMask, key: str, shape: tuple[int, ...]
) -> tuple[IndexArray, ...]:
    """Per dimension of ``key``: the full-model indices a client keeps."""
    per_dim: list[IndexArray] = []
    for dim, groups in enumerate(plan.axes[key]):
        if not groups:
            per_dim.append(np.arange(shape[dim], dtype=np.int64))
            continue
        parts, start = [], 0
        for group in groups:
            parts.append(start + mask[group])
            start += plan.group_sizes[group]
        per_dim.append(np.concatenate(parts))
    return tuple(per_dim)


def extract_submodel(
    plan: ReductionPlan, state: StateArrays, mask: ChannelMask
) -> dict[str, NDArray]:
    """Cut a client's sub-model out of the full ``state`` (copies, C-contiguous)."""
    sub: dict[str, NDArray] = {}
    for key, full in state.items():
        if full.ndim == 0:
            sub[key] = full.copy()
            continue
        index = np.ix_(*axis_indices(plan, mask, key, full.shape))
        sub[key] = np.ascontiguousarray(full[index])
    return sub


def build_submodel(
    template: nn.Module, arrays: ArrayRecord | Mapping[str, torch.Tensor]
) -> nn.Module:
    """A copy of the full-width ``template`` resized to and loaded with ``arrays``.

    Every parameter and buffer takes the shape of its received array, so the
    copy computes with the reduced widths (less compute and memory, not just
    zeroed channels). ``arrays`` must carry every state-dict key of the template.
    """
    state = arrays.to_torch_state_dict() if isinstance(arrays, ArrayRecord) else arrays
    model = copy.deepcopy(template)
    expected = set(model.state_dict())
    if set(state) != expected:
        raise ValueError(
            "received sub-model keys differ from the template's: missing"
            f" {sorted(expected - set(state))},"
            f" unexpected {sorted(set(state) - expected)}"
        )
    for key, value in state.items():
        module_path, _, name = key.rpartition(".")
        module = model.get_submodule(module_path)
        tensor = torch.as_tensor(value).detach().clone()
        if name in module._parameters:
            module._parameters[name] = nn.Parameter(tensor)
        else:
            module._buffers[name] = tensor
    for module in model.modules():
        # Keep the descriptive attributes true to the new shapes.
        if isinstance(module, nn.Conv2d):
            module.out_channels, module.in_channels = module.weight.shape[:2]
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = module.weight.shape
        elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            for name in ("weight", "running_mean"):
                stat = getattr(module, name, None)
                if stat is not None:
                    module.num_features = int(stat.shape[0])
                    break
    return model


def attach_scaler(
    model: nn.Module, ratio: float
) -> list[torch.utils.hooks.RemovableHandle]:
    """Scale reduced inputs by ``1 / ratio`` while training, like inverted dropout.

    Every Conv2d/Linear after the first sees only ``ratio`` of its input
    channels, so its pre-activations are about ``ratio`` times those of the
    full model. Dividing those layers' inputs by ``ratio`` in training (not in
    evaluation) keeps the activation scale the full model will see; this is
    HeteroFL's "scaler" placed where the reduction happens (on the inputs, so
    the first layer, whose input is the image, is left alone and scales do not
    compound through a network without normalisation). Returns the hook
    handles (``handle.remove()`` detaches them).
    """
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]

    def scale(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> object:
        if not module.training:
            return None
        return (inputs[0] / ratio, *inputs[1:])

    return [layer.register_forward_pre_hook(scale) for layer in layers[1:]]


@dataclass(frozen=True)
class SubmodelAssignment:
    """What the server told a client about its sub-model (from the ConfigRecord)."""

    ratio: float
    mode: str
    mask: dict[str, IndexArray]


def read_assignment(config: ConfigRecord) -> SubmodelAssignment:
    """Read the ratio, mode and mask a HeteroFL server put into a train config."""
    missing = [k for k in (RATIO_KEY, MODE_KEY, MASK_KEY) if k not in config]
    if missing:
        raise ValueError(
            f"train config lacks {missing}: was this message sent by the heterofl"
            " strategy? (client and server strategies must match)"
        )
    return SubmodelAssignment(
        ratio=float(config[RATIO_KEY]),  # type: ignore[arg-type]
        mode=str(config[MODE_KEY]),
        mask=mask_from_json(str(config[MASK_KEY])),
    )
