"""The digit CNN of the FedBN and FedWon papers, width-scaled, for 32x32 inputs.

FedBN (Li et al., ICLR 2021) and FedWon (Zhuang and Lyu, ICLR 2024) run their
Digits-Five experiments on a plain CNN: three 5x5 convolutions of 64, 64 and
128 channels (padding 2, ReLU, a 2x2 max pool after the first two), then two
fully connected layers of 2048 and 512 units and a linear classifier. This is
that network, with two differences:

- ``width`` multiplies every hidden size (rounded, at least 1), so the study
  model (width 0.25: 16/16/32 channels, 512/128 units) trains on 2 cores;
- with ``batch_norm=True`` a BatchNorm2d follows every convolution, but the
  fully connected layers stay plain. The papers also normalise those, but a
  BatchNorm1d cannot train on a batch of one, and the batch-size-1 study
  compares the same network in every method.

Parameter counts with ``in_channels=3``, ``num_classes=10`` (batch norm off):

======  ==========  ======================
width   parameters  float32 bytes on wire
======  ==========  ======================
0.1        185,116  740,464 (0.7 MB)
0.25     1,136,506  4,546,024 (4.5 MB)  <- the FedWon study
0.5      4,539,626  18,158,504 (18 MB)
======  ==========  ======================

Every layer sits in ``features`` (convolutions), ``hidden`` (fully connected)
or ``classifier`` (the last Linear), so method variants can find layers by
name: FedWon standardises every convolution and leaves ``classifier`` unclipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workloads import CNN_MAX_WIDTH
from workloads.model_checks import check_io

# (conv1, conv2, conv3, fc1, fc2) at width 1.0, as in the FedBN paper's DigitModel.
WIDTH_ONE = (64, 64, 128, 2048, 512)
INPUT_SIDE = 32  # pixels; two 2x2 pools leave 8x8 maps
KERNEL = 5
MAX_WIDTH = CNN_MAX_WIDTH


@dataclass(frozen=True)
class DigitCNNConfig:
    """Shape of the digit CNN: input channels, classes, width, BatchNorm or not."""

    in_channels: int = 3
    num_classes: int = 10
    width: float = 0.25
    batch_norm: bool = False

    def __post_init__(self) -> None:
        check_io(self.in_channels, self.num_classes)
        if not 0 < self.width <= MAX_WIDTH:
            raise ValueError(
                f"digit CNN width must be in (0, {MAX_WIDTH:g}] (width 1 is 18M"
                f" parameters), got {self.width!r}"
            )

    def sizes(self) -> tuple[int, ...]:
        """(conv1, conv2, conv3, fc1, fc2) at this width, each at least 1."""
        return tuple(max(1, round(base * self.width)) for base in WIDTH_ONE)


class DigitCNN(nn.Module):
    """Three 5x5 convolutions, two hidden Linear layers, a Linear classifier."""

    def __init__(self, config: DigitCNNConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3, f1, f2 = config.sizes()

        def conv(cin: int, cout: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, KERNEL, 1, KERNEL // 2)]
            if config.batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            return [*layers, nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *conv(config.in_channels, c1),
            nn.MaxPool2d(2),
            *conv(c1, c2),
            nn.MaxPool2d(2),
            *conv(c2, c3),
        )
        side = INPUT_SIDE // 4
        self.hidden = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c3 * side * side, f1),
            nn.ReLU(inplace=True),
            nn.Linear(f1, f2),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(f2, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch of 32x32 images ``(N, C, 32, 32)`` to logits ``(N, classes)``."""
        logits: torch.Tensor = self.classifier(self.hidden(self.features(x)))
        return logits


def build_digit_cnn(config: DigitCNNConfig) -> DigitCNN:
    """A freshly initialised digit CNN (PyTorch's default initialisation)."""
    return DigitCNN(config)
