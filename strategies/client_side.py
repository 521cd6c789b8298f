"""The client half of a strategy: model variant, optimiser, kept state, keys sent.

A strategy is two halves: the server strategy (a ``flwr.serverapp.strategy``
subclass) and what each client must do for it. :class:`ClientSide` is the
second half as plain data and pure hooks, so the Flower app, the simulation
runtime and the in-process accuracy studies (bench/) all run a method with the
same pieces:

1. ``build_model(shape)`` builds the model variant the method trains;
2. :meth:`ClientSide.load_global` loads what the server sent;
3. :meth:`ClientSide.restore_local` overwrites the keys the client keeps from
   ``context.state`` (a FedBN node's BatchNorm layers, for instance);
4. ``build_optimizer(model, settings)`` builds the local optimiser;
5. after training, :meth:`ClientSide.keep_local` saves the kept keys to
   ``context.state`` and :meth:`ClientSide.shared_state` is what is sent back.

Methods that change what travels (sub-models, asynchronous versions) plug in
new ``build_model`` and ``local_keys`` functions without touching the app;
:func:`receive_model` does steps 1 and 2 and builds a HeteroFL sub-model
instead when the message's config carries a mask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from flwr.app import ArrayRecord, RecordDict
from torch import nn

from strategies import submodels
from workloads import ARCHITECTURES as ARCHITECTURES
from workloads.digitcnn import DigitCNNConfig, build_digit_cnn
from workloads.squeezenet import SqueezeNetConfig, build_model
from workloads.training import TrainResult

# The context.state entry under which a node keeps its local keys between rounds.
LOCAL_STATE_KEY = "flowerbed-local-keys"


@dataclass(frozen=True)
class ModelShape:
    """What fixes a model: input channels, classes, width and network."""

    in_channels: int = 1
    num_classes: int = 10
    width: float = 1.17
    architecture: str = "squeezenet"

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.num_classes < 2 or not self.width > 0:
            raise ValueError(
                "ModelShape needs in_channels >= 1, num_classes >= 2 and width > 0,"
                f" got {self}"
            )
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"model must be one of {', '.join(ARCHITECTURES)},"
                f" got {self.architecture!r}"
            )


@dataclass(frozen=True)
class OptimizerSettings:
    """Local optimiser settings; ``clip_lambda`` only matters to clipping optimisers."""

    lr: float
    momentum: float = 0.9
    weight_decay: float = 0.0
    clip_lambda: float = 0.01

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not self.clip_lambda > 0:
            raise ValueError(f"clip_lambda must be > 0, got {self.clip_lambda!r}")


@dataclass(frozen=True, eq=False)
class LocalTraining:
    """What a method's own training loop (:attr:`ClientSide.local_train`) gets.

    ``parameters`` are the campaign's strategy parameters (the method takes its
    own), ``config`` the train message's config (what the server set for this
    node this round) and ``state`` the node's ``context.state``.
    """

    x: torch.Tensor
    y: torch.Tensor
    epochs: int
    batch_size: int
    seed: int
    optimizer: OptimizerSettings
    parameters: Mapping[str, Any]
    config: Mapping[str, Any]
    state: RecordDict


# A method's own local training: it trains the model in place and returns the
# result and the metrics it adds to the reply (a ProWD client's bitwidth, say).
LocalTrain = Callable[
    [nn.Module, LocalTraining], tuple[TrainResult, dict[str, float | int]]
]
ModelFactory = Callable[[ModelShape], nn.Module]
OptimizerFactory = Callable[[nn.Module, OptimizerSettings], torch.optim.Optimizer]
LocalKeys = Callable[[nn.Module], frozenset[str]]


def _network(shape: ModelShape, batch_norm: bool) -> nn.Module:
    if shape.architecture == "cnn":
        return build_digit_cnn(
            DigitCNNConfig(
                shape.in_channels, shape.num_classes, shape.width, batch_norm
            )
        )
    return build_model(
        SqueezeNetConfig(
            shape.in_channels, shape.num_classes, shape.width, batch_norm=batch_norm
        )
    )


def plain_model(shape: ModelShape) -> nn.Module:
    """The shape's network without normalization layers."""
    return _network(shape, batch_norm=False)


def batchnorm_model(shape: ModelShape) -> nn.Module:
    """The shape's network with a BatchNorm2d after every hidden convolution."""
    return _network(shape, batch_norm=True)


def sgd(model: nn.Module, settings: OptimizerSettings) -> torch.optim.Optimizer:
    """Plain SGD with momentum over every parameter."""
    return torch.optim.SGD(
        model.parameters(),
        lr=settings.lr,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
    )


def no_local_keys(model: nn.Module) -> frozenset[str]:
    """Everything is shared: the FedAvg family keeps nothing on the client."""
    return frozenset()


@dataclass(frozen=True)
class ClientSide:
    """What a client does for a strategy: model variant, optimiser, kept keys."""

    model_variant: str
    build_model: ModelFactory = plain_model
    build_optimizer: OptimizerFactory = sgd
    local_keys: LocalKeys = no_local_keys
    # None: the app's minibatch loop with build_optimizer (workloads.training).
    local_train: LocalTrain | None = None

    def shared_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The part of ``model``'s state dict that is sent to the server."""
        kept = self.local_keys(model)
        return {k: v for k, v in model.state_dict().items() if k not in kept}

    def load_global(self, model: nn.Module, arrays: ArrayRecord) -> None:
        """Load the server's arrays into ``model``; they must cover every shared key.

        Keys the client keeps are ignored if the server sent them anyway.
        """
        received = arrays.to_torch_state_dict()
        kept = self.local_keys(model)
        shared = {k: v for k, v in received.items() if k not in kept}
        missing = sorted(set(self.shared_state(model)) - set(shared))
        unexpected = sorted(set(shared) - set(model.state_dict()))
        if missing or unexpected:
            raise ValueError(
                f"{self.model_variant} model: the server's arrays miss keys"
                f" {missing[:5]} and bring unknown keys {unexpected[:5]}; the server"
                " and the client must build the same model variant (strategy and"
                " model-width)"
            )
        model.load_state_dict(shared, strict=False)

    def restore_local(self, model: nn.Module, state: RecordDict) -> bool:
        """Load the kept keys from ``context.state``; False if nothing was kept yet."""
        if LOCAL_STATE_KEY not in state.array_records:
            return False
        kept = state.array_records[LOCAL_STATE_KEY].to_torch_state_dict()
        expected = self.local_keys(model)
        if set(kept) != expected:
            raise ValueError(
                f"{self.model_variant} model: context.state holds keys"
                f" {sorted(set(kept) ^ expected)[:5]} that do not match the model's"
                " local keys; a node must not change model variant within a run"
            )
        model.load_state_dict(kept, strict=False)
        return True

    def keep_local(self, model: nn.Module, state: RecordDict) -> None:
        """Save the keys this client keeps into ``context.state`` (if any)."""
        kept = self.local_keys(model)
        if not kept:
            return
        local: Mapping[str, torch.Tensor] = {
            k: v.detach().clone() for k, v in model.state_dict().items() if k in kept
        }
        state[LOCAL_STATE_KEY] = ArrayRecord(dict(local))


PLAIN = ClientSide("plain")


def receive_model(
    side: ClientSide, shape: ModelShape, content: RecordDict
) -> nn.Module:
    """The model a received message describes, loaded with its arrays.

    A HeteroFL train message (a config carrying ``heterofl-mask``) yields the
    reduced-width sub-model :func:`strategies.submodels.build_submodel` cuts to
    the received shapes; any other message yields ``side``'s full model
    variant with the global arrays loaded (:meth:`ClientSide.load_global`).
    """
    if not content.array_records:
        raise ValueError(
            f"{side.model_variant} model: the message carries no ArrayRecord;"
            " the server must send the model"
        )
    arrays = next(iter(content.array_records.values()))
    template = side.build_model(shape)
    for config in content.config_records.values():
        if submodels.MASK_KEY in config:
            submodels.read_assignment(config)  # fails clearly on a partial config
            return submodels.build_submodel(template, arrays)
    side.load_global(template, arrays)
    return template
