"""The model and the data: a linear layer fitted to a noisy random linear target."""

from __future__ import annotations

import torch

FEATURES = 8


def build_model() -> torch.nn.Module:
    """A linear regression model with ``FEATURES`` inputs."""
    torch.manual_seed(0)
    return torch.nn.Linear(FEATURES, 1)


def node_data(partition_id: int, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This node's samples of ``y = x @ w + noise`` (same ``w`` everywhere)."""
    w = torch.linspace(-1.0, 1.0, FEATURES)
    generator = torch.Generator().manual_seed(partition_id)
    x = torch.randn(samples, FEATURES, generator=generator)
    y = x @ w + 0.1 * torch.randn(samples, generator=generator)
    return x, y.unsqueeze(1)


def fit(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float
) -> float:
    """Full-batch gradient descent; return the final training loss."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss = torch.tensor(0.0)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    return float(loss.item())


def mse(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error of ``model`` on ``(x, y)``."""
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(model(x), y).item())
