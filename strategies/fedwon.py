"""FedWon (Zhuang and Lyu, ICLR 2024): no normalization, standardised convolutions, AGC.

The model has no BatchNorm or GroupNorm at all. Every hidden convolution is a
scaled weight-standardised convolution (:class:`ScaledStdConv2d`), per output
channel ``o``::

    W_hat[o] = g[o] * gamma * (W[o] - mean(W[o])) / (std(W[o]) * sqrt(fan_in))

with ``g`` a learnable gain (initialised to 1), ``gamma`` the gain of the
activation that follows (ReLU: 1.7139588594436646, from the NFNet paper) and
``fan_in = in_channels / groups * kh * kw``; ``std`` is the biased standard
deviation with ``eps`` added to the variance (as timm's ``ScaledStdConv2d``).
The classifier's 1x1 convolution stays plain, like the linear head of NFNets.

The client optimiser is SGD after adaptive gradient clipping, unit-wise
(:func:`adaptive_clip_`): for each output unit ``i`` (row of a weight, the
whole vector of a 1-D parameter), if ``|G_i| / max(|W_i|, eps) > lambda`` then
``G_i <- lambda * max(|W_i|, eps) / |G_i| * G_i`` (Brock et al. 2021).
Nothing is kept on the client, so the server is plain FedAvg over everything.
Without batch statistics the model trains at batch size 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from strategies.client_side import (
    ClientSide,
    ModelShape,
    OptimizerSettings,
    plain_model,
)

RELU_GAMMA = 1.7139588594436646
STD_EPS = 1e-6
AGC_EPS = 1e-3


class ScaledStdConv2d(nn.Conv2d):
    """A Conv2d whose weight is standardised per output channel on every call."""

    def __init__(
        self,
        *args: Any,
        gamma: float = RELU_GAMMA,
        eps: float = STD_EPS,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.gain = nn.Parameter(torch.ones(self.out_channels, 1, 1, 1))
        self.gamma = gamma
        self.eps = eps

    @property
    def fan_in(self) -> int:
        """Inputs to one output unit: in_channels / groups x kernel area."""
        return int(self.weight[0].numel())

    def standardized_weight(self) -> torch.Tensor:
        """W_hat = g * gamma * (W - mean) / (std * sqrt(fan_in)), per output channel."""
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        scale = self.gamma / math.sqrt(self.fan_in)
        return self.gain * scale * (w - mean) / torch.sqrt(var + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` with the standardised weight."""
        return F.conv2d(
            x,
            self.standardized_weight(),
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )


def standardize_convolutions(
    model: nn.Module, keep: Callable[[str, nn.Conv2d], bool]
) -> nn.Module:
    """Replace each Conv2d of ``model`` in place by a ScaledStdConv2d, unless ``keep``.

    The new convolution takes over the old one's weight and bias, so a seeded
    model stays seeded.
    """
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if type(child) is not nn.Conv2d or keep(full, child):
                continue
            if isinstance(child.padding, str):
                raise ValueError(f"{full}: string padding is not supported")
            conv = ScaledStdConv2d(
                child.in_channels,
                child.out_channels,
                child.kernel_size,
                stride=child.stride,
                padding=child.padding,
                dilation=child.dilation,
                groups=child.groups,
                bias=child.bias is not None,
            )
            with torch.no_grad():
                conv.weight.copy_(child.weight)
                if child.bias is not None and conv.bias is not None:
                    conv.bias.copy_(child.bias)
            setattr(parent, child_name, conv)
    return model


def _is_classifier(name: str, conv: nn.Conv2d) -> bool:
    return name.startswith("classifier.")


def fedwon_model(shape: ModelShape) -> nn.Module:
    """The shape's network, no normalization, hidden convolutions standardised.

    Hidden means every convolution outside ``classifier``: all of the SqueezeNet's
    but its 1x1 class convolution, and all three of the digit CNN's (its
    classifier is a Linear layer).
    """
    return standardize_convolutions(plain_model(shape), keep=_is_classifier)


def unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    """L2 norm per output unit: over all but dim 0, or the whole of a 0/1-D tensor."""
    dims = None if x.ndim <= 1 else tuple(range(1, x.ndim))
    norm: torch.Tensor = torch.linalg.vector_norm(x, dim=dims, keepdim=x.ndim > 1)
    return norm


def adaptive_clip_(
    parameters: Iterable[torch.Tensor], clip_lambda: float, eps: float = AGC_EPS
) -> None:
    """Clip each parameter's gradient unit-wise, in place (AGC, Brock et al. 2021).

    For each unit, if ``|G| / max(|W|, eps) > clip_lambda`` the gradient is
    rescaled to ``clip_lambda * max(|W|, eps) / |G| * G``; otherwise untouched.
    """
    for p in parameters:
        if p.grad is None:
            continue
        weight_norm = unitwise_norm(p.detach()).clamp(min=eps)
        grad_norm = unitwise_norm(p.grad.detach())
        max_norm = clip_lambda * weight_norm
        clipped = p.grad.detach() * (max_norm / grad_norm.clamp(min=1e-12))
        p.grad.detach().copy_(torch.where(grad_norm > max_norm, clipped, p.grad))


class AgcSGD(torch.optim.SGD):
    """SGD (with momentum) that clips gradients unit-wise before every step.

    Parameters in ``unclipped`` (the classifier, as NFNets recommend) are
    stepped but never clipped.
    """

    def __init__(
        self,
        clipped: Iterable[nn.Parameter],
        unclipped: Iterable[nn.Parameter],
        settings: OptimizerSettings,
    ) -> None:
        groups = [
            {"params": list(clipped), "agc": True},
            {"params": list(unclipped), "agc": False},
        ]
        super().__init__(
            [g for g in groups if g["params"]],
            lr=settings.lr,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )
        self.clip_lambda = settings.clip_lambda

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """Clip the gradients of the clipped group, then take an SGD step."""
        for group in self.param_groups:
            if group["agc"]:
                adaptive_clip_(group["params"], self.clip_lambda)
        return super().step(closure)


def agc_sgd(model: nn.Module, settings: OptimizerSettings) -> torch.optim.Optimizer:
    """AGC-SGD over ``model``: every parameter clipped except the classifier's."""
    clipped: list[nn.Parameter] = []
    unclipped: list[nn.Parameter] = []
    for name, parameter in model.named_parameters():
        (unclipped if name.startswith("classifier.") else clipped).append(parameter)
    return AgcSGD(clipped, unclipped, settings)


CLIENT_SIDE = ClientSide(
    "weight-standardised", build_model=fedwon_model, build_optimizer=agc_sgd
)
