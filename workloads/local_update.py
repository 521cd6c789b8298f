"""Local training with an optimiser the strategy chooses (FedWon's AGC-SGD, say)."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from workloads.training import TrainResult


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

    Same loop as :func:`workloads.training.train` (fresh random order per
    epoch, last batch may be smaller, seeded inside a forked RNG), but the
    optimiser is the caller's.
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
