"""Local training and evaluation loops: minibatch SGD and a cross-entropy evaluation.

Thread counts are the caller's business (``torch.set_num_threads`` in the
client app), so these loops measure what the node is configured to do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


@dataclass(frozen=True)
class TrainResult:
    """What a local training run reports.

    ``loss`` and ``accuracy`` are means over the samples of the last epoch,
    taken on the fly while training (dropout on). ``num_examples`` is the size
    of the local training set (the FedAvg weight), not multiplied by epochs;
    ``steps`` counts optimizer steps over all epochs.
    """

    loss: float
    accuracy: float
    num_examples: int
    steps: int

    def __post_init__(self) -> None:
        if self.num_examples < 1 or self.steps < 1:
            raise ValueError(
                "num_examples and steps must be >= 1, got"
                f" {self.num_examples!r} and {self.steps!r}"
            )
        if not 0 <= self.accuracy <= 1:
            raise ValueError(f"accuracy must be in [0, 1], got {self.accuracy!r}")


@dataclass(frozen=True)
class EvalResult:
    """Mean cross-entropy loss and accuracy of a model over ``num_examples``."""

    loss: float
    accuracy: float
    num_examples: int

    def __post_init__(self) -> None:
        if self.num_examples < 1:
            raise ValueError(f"num_examples must be >= 1, got {self.num_examples!r}")
        if not 0 <= self.accuracy <= 1:
            raise ValueError(f"accuracy must be in [0, 1], got {self.accuracy!r}")


def _check_data(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(
            f"x must be a non-empty batch (N, ...), got shape {tuple(x.shape)}"
        )
    if y.shape != (len(x),):
        raise ValueError(
            f"y must have shape ({len(x)},) to match x, got {tuple(y.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> TrainResult:
    """Train ``model`` in place with minibatch SGD on ``(x, y)`` for ``epochs``.

    Each epoch visits the samples in a fresh random order; the last batch may be
    smaller. Shuffling and dropout draw from RNGs seeded with ``seed`` inside a
    forked RNG, so a run is repeatable and leaves the global RNG untouched.
    """
    _check_data(x, y, batch_size)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    return train_with(
        model, optimizer, x, y, epochs=epochs, batch_size=batch_size, seed=seed
    )


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256
) -> EvalResult:
    """Evaluate ``model`` (in eval mode, no gradients) on ``(x, y)``."""
    _check_data(x, y, batch_size)
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            logits = model(xb)
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(dim=1) == yb).sum())
    return EvalResult(
        loss=loss_sum / len(x), accuracy=correct / len(x), num_examples=len(x)
    )


def train_with(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
) -> TrainResult:
    """Train ``model`` in place with ``optimizer`` on ``(x, y)`` for ``epochs``.

    The loop behind :func:`train` (fresh random order per epoch, last batch may
    be smaller, seeded inside a forked RNG), with the caller's optimiser
    (FedWon's AGC-SGD, say).
    """
    if len(x) == 0 or y.shape != (len(x),):
        raise ValueError(
            f"x must be a non-empty batch and y match it, got {tuple(x.shape)}"
            f" and {tuple(y.shape)}"
        )
    if epochs < 1 or batch_size < 1:
        raise ValueError(
            f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}"
        )
    order_rng = torch.Generator().manual_seed(seed)
    steps, loss_sum, correct = 0, 0.0, 0
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(epochs):
            loss_sum, correct = 0.0, 0
            order = torch.randperm(len(x), generator=order_rng)
            for start in range(0, len(x), batch_size):
                batch = order[start : start + batch_size]
                xb, yb = x[batch], y[batch]
                optimizer.zero_grad(set_to_none=True)
                logits = model(xb)
                loss = F.cross_entropy(logits, yb)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                steps += 1
                loss_sum += loss.item() * len(batch)
                correct += int((logits.argmax(dim=1) == yb).sum())
    return TrainResult(
        loss=loss_sum / len(x),
        accuracy=correct / len(x),
        num_examples=len(x),
        steps=steps,
    )
