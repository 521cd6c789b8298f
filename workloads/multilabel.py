"""Multi-label training and evaluation: sigmoid outputs, BCE loss, averaged precision.

FLAIR (workloads/flair.py) tags an image with every subject in it, so a model
scores each label independently: one logit per label, trained with binary
cross-entropy on multi-hot targets. Accuracy means little there; the metric is
averaged precision, as in the FLAIR paper: *macro* AP is the mean over labels
of each label's AP, *micro* AP pools every (image, label) pair. Labels with no
positive in the evaluated set have no AP and are left out of the macro mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


@dataclass(frozen=True)
class MultiLabelTrainResult:
    """Mean BCE loss over the last epoch's samples, the set size and step count."""

    loss: float
    num_examples: int
    steps: int

    def __post_init__(self) -> None:
        if self.num_examples < 1 or self.steps < 1:
            raise ValueError(
                "num_examples and steps must be >= 1, got"
                f" {self.num_examples!r} and {self.steps!r}"
            )


@dataclass(frozen=True)
class MultiLabelEvalResult:
    """Mean BCE loss, macro and micro averaged precision over ``num_examples``.

    An AP is NaN when the set holds no positive label at all.
    """

    loss: float
    macro_ap: float
    micro_ap: float
    num_examples: int

    def __post_init__(self) -> None:
        if self.num_examples < 1:
            raise ValueError(f"num_examples must be >= 1, got {self.num_examples!r}")
        for name in ("macro_ap", "micro_ap"):
            value = getattr(self, name)
            if not (math.isnan(value) or 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be in [0, 1] or NaN, got {value!r}")


def _check(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
    if len(x) == 0 or y.ndim != 2 or len(y) != len(x):
        raise ValueError(
            f"x must be a non-empty batch and y ({len(x)}, L) multi-hot, got"
            f" {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")


def average_precision(scores: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """(macro AP, micro AP) of ``scores`` (N, L) against 0/1 ``targets`` (N, L)."""
    from sklearn.metrics import average_precision_score

    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(
            f"scores and targets must both be (N, L), got {scores.shape}"
            f" and {targets.shape}"
        )
    present = targets.sum(axis=0) > 0
    if not present.any():
        return math.nan, math.nan
    macro = float(
        average_precision_score(
            targets[:, present], scores[:, present], average="macro"
        )
    )
    micro = float(average_precision_score(targets, scores, average="micro"))
    return macro, micro


def train_multilabel(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
) -> MultiLabelTrainResult:
    """Train ``model`` in place with BCE-with-logits on multi-hot ``y``.

    The loop of workloads.training.train_with (fresh seeded order per epoch,
    inside a forked RNG), with the multi-label loss.
    """
    _check(x, y, batch_size)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    order_rng = torch.Generator().manual_seed(seed)
    steps, loss_sum = 0, 0.0
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(epochs):
            loss_sum = 0.0
            order = torch.randperm(len(x), generator=order_rng)
            for start in range(0, len(x), batch_size):
                batch = order[start : start + batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = F.binary_cross_entropy_with_logits(model(x[batch]), y[batch])
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                steps += 1
                loss_sum += loss.item() * len(batch)
    return MultiLabelTrainResult(loss_sum / len(x), len(x), steps)


def evaluate_multilabel(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256
) -> MultiLabelEvalResult:
    """Evaluate ``model`` (eval mode, no gradients): BCE loss, macro and micro AP."""
    _check(x, y, batch_size)
    model.eval()
    loss_sum = 0.0
    scores = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            logits = model(x[start : start + batch_size])
            yb = y[start : start + batch_size]
            loss_sum += (
                float(F.binary_cross_entropy_with_logits(logits, yb, reduction="sum"))
                / y.shape[1]
            )
            scores.append(torch.sigmoid(logits))
    macro, micro = average_precision(
        torch.cat(scores).numpy(), y.numpy().astype(np.int64)
    )
    return MultiLabelEvalResult(loss_sum / len(x), macro, micro, len(x))
