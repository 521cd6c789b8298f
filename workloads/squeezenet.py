"""The SqueezeNet 1.1-style CNN flowerbed trains by default, sized for 32x32 inputs.

The layout follows SqueezeNet 1.1 (Iandola et al., 2016; torchvision's
``squeezenet1_1``): a 3x3 stem convolution, three 3x3/2 max pools, eight Fire
modules (squeeze 1x1, then expand 1x1 and expand 3x3 concatenated) with
squeeze/expand widths 16/64, 16/64, 32/128, 32/128, 48/192, 48/192, 64/256,
64/256, then dropout, a 1x1 convolution to ``num_classes`` and global average
pooling. Unlike torchvision's version there is no ReLU on the class maps: with
it, training from scratch sat at chance for many epochs on small local data.
For 32x32 inputs the stem is 3x3 with padding 1 and, by default, stride 2 as in
SqueezeNet 1.1, so the maps go 32 -> 16 (stem) -> 8 -> 4 -> 2 through the
pools; ``stem_stride=1`` keeps 32x32 after the stem and costs about four times
the compute for no better accuracy on the digits.

How it trains (300 digits samples, SGD with momentum 0.9, 2 CPU cores): without
batch norm it needs a small learning rate, about 0.001-0.002 with batches of
8-16, and still spends a few epochs near chance before it takes off; at 0.01 or
more it collapses to predicting one class. With ``batch_norm=True`` it learns in
a few epochs at 0.02-0.05.

``width`` multiplies every channel count (rounded, at least 1). Parameter
counts with ``in_channels=1``, ``num_classes=10`` (batch norm off):

======  ==========  ======================
width   parameters  float32 bytes on wire
======  ==========  ======================
0.5        183,786      735,144 (0.7 MB)
1.0        726,474    2,905,896 (2.9 MB)
1.17       993,309    3,973,236 (4.0 MB)  <- default
======  ==========  ======================

The default width, 1.17, is chosen so the model has about 1.0M parameters and
an update is about 4 MB on the wire, the size the measurement campaigns are
calibrated against. ``batch_norm=True`` adds a BatchNorm2d after every
convolution except the classifier's (FedBN and FedWon variants build on it);
all layers sit in the ``features`` and ``classifier`` Sequentials so such
variants can find and replace them by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workloads.model_checks import check_io

DEFAULT_WIDTH = 1.17

# (squeeze, expand) channels per Fire module at width 1.0, SqueezeNet 1.1 order.
FIRE_CHANNELS: tuple[tuple[int, int], ...] = (
    (16, 64),
    (16, 64),
    (32, 128),
    (32, 128),
    (48, 192),
    (48, 192),
    (64, 256),
    (64, 256),
)
STEM_CHANNELS = 64
# A max pool follows the stem and the 2nd and 4th Fire modules, as in SqueezeNet 1.1.
_POOL_AFTER_FIRE = frozenset({1, 3})


@dataclass(frozen=True)
class SqueezeNetConfig:
    """Shape of a SqueezeNet: input channels, classes, width and optional parts."""

    in_channels: int = 1
    num_classes: int = 10
    width: float = DEFAULT_WIDTH
    stem_stride: int = 2
    dropout: float = 0.5
    batch_norm: bool = False

    def __post_init__(self) -> None:
        check_io(self.in_channels, self.num_classes)
        if not 0 < self.width <= 8:
            raise ValueError(f"width must be in (0, 8], got {self.width!r}")
        if self.stem_stride not in (1, 2):
            raise ValueError(
                f"stem_stride must be 1 or 2 (32x32 inputs), got {self.stem_stride!r}"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def channels(self, base: int) -> int:
        """Scale a width-1.0 channel count by ``width``, rounding, at least 1."""
        return max(1, round(base * self.width))


def _conv_block(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    batch_norm: bool,
    stride: int = 1,
    padding: int = 0,
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding),
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Fire(nn.Module):
    """A Fire module: 1x1 squeeze, then 1x1 and 3x3 expands concatenated."""

    def __init__(
        self, in_channels: int, squeeze: int, expand: int, batch_norm: bool
    ) -> None:
        super().__init__()
        self.squeeze = _conv_block(in_channels, squeeze, 1, batch_norm)
        self.expand1x1 = _conv_block(squeeze, expand, 1, batch_norm)
        self.expand3x3 = _conv_block(squeeze, expand, 3, batch_norm, padding=1)
        self.out_channels = 2 * expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Squeeze ``x``, expand it two ways and stack the results as channels."""
        s = self.squeeze(x)
        return torch.cat([self.expand1x1(s), self.expand3x3(s)], dim=1)


class SqueezeNet(nn.Module):
    """SqueezeNet with ``features`` and ``classifier`` Sequentials; returns logits."""

    def __init__(self, config: SqueezeNetConfig) -> None:
        super().__init__()
        self.config = config
        stem = config.channels(STEM_CHANNELS)
        layers: list[nn.Module] = [
            _conv_block(
                config.in_channels,
                stem,
                3,
                config.batch_norm,
                stride=config.stem_stride,
                padding=1,
            ),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        ]
        channels = stem
        for index, (squeeze, expand) in enumerate(FIRE_CHANNELS):
            fire = Fire(
                channels,
                config.channels(squeeze),
                config.channels(expand),
                config.batch_norm,
            )
            layers.append(fire)
            channels = fire.out_channels
            if index in _POOL_AFTER_FIRE:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        final_conv = nn.Conv2d(channels, config.num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=config.dropout),
            final_conv,
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
        )
        self._init_weights(final_conv)

    def _init_weights(self, final_conv: nn.Conv2d) -> None:
        # torchvision's SqueezeNet init: a small normal final conv starts the
        # logits near zero, i.e. the loss near log(num_classes).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                if module is final_conv:
                    nn.init.normal_(module.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch of images ``(N, C, H, W)`` to logits ``(N, num_classes)``."""
        logits: torch.Tensor = self.classifier(self.features(x))
        return logits


def build_model(
    config: SqueezeNetConfig | None = None, seed: int | None = None
) -> SqueezeNet:
    """Build a freshly initialised SqueezeNet; ``seed`` makes the weights repeatable.

    The seed is applied inside a forked RNG, so the caller's global torch RNG
    state is left as it was.
    """
    config = config or SqueezeNetConfig()
    if seed is None:
        return SqueezeNet(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SqueezeNet(config)


def count_parameters(model: nn.Module) -> int:
    """Count the model's trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_bytes(model: nn.Module) -> int:
    """Bytes the model's floating-point state takes when sent as float32.

    Counts every floating-point tensor of the state dict, so batch-norm running
    statistics are included; integer buffers (``num_batches_tracked``) are not.
    """
    return 4 * sum(
        int(t.numel()) for t in model.state_dict().values() if t.is_floating_point()
    )
