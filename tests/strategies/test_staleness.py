"""Gradient inversion of a stale update, and the fresh update made from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from strategies.fedbuff import FedBuff
from strategies.staleness import (
    InversionConfig,
    Refresher,
    fedbuff_refresh,
    invert,
    simulated_update,
)


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def _state(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _client_delta(base: dict[str, np.ndarray], label: int) -> dict[str, np.ndarray]:
    """A real client's update: SGD on inputs of one class only."""
    model = _mlp()
    model.load_state_dict({k: torch.tensor(v) for k, v in base.items()})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, 6, generator=gen) + 2.0 * label
    y = torch.full((64,), label)
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return {k: _state(model)[k] - base[k] for k in base}


def test_simulated_update_is_gradient_descent() -> None:
    model = _mlp()
    start = {k: v.detach() for k, v in model.named_parameters()}
    x, labels = torch.randn(4, 6), torch.eye(3)[[0, 1, 2, 0]]
    delta = simulated_update(model, start, x, labels, steps=1, lr=0.5)
    loss = nn.functional.cross_entropy(model(x), labels.argmax(1))
    grads = torch.autograd.grad(loss, list(model.parameters()))
    for (key, d), g in zip(delta.items(), grads, strict=True):
        assert torch.allclose(d, -0.5 * g, atol=1e-6), key


def test_inversion_reproduces_the_update_and_finds_its_class() -> None:
    base = _state(_mlp())
    delta = _client_delta(base, label=2)
    model = _mlp()
    tensors = {k: torch.tensor(v) for k, v in base.items()}
    out = invert(
        model,
        tensors,
        {k: torch.tensor(v) for k, v in delta.items()},
        (6,),
        3,
        InversionConfig(iterations=150),
    )
    assert out.cosine > 0.9
    assert out.soft_labels.mean(0).argmax() == 2  # the client's only class
    assert out.seconds > 0


def test_refresh_uses_inversion_when_stale_and_keeps_the_update_norm() -> None:
    base = _state(_mlp(0))
    current = _state(_mlp(5))
    delta = _client_delta(base, label=1)
    refresher = Refresher(_mlp(), (6,), 3, InversionConfig(min_staleness=2))
    fresh_enough = refresher.refresh(base, delta, current, staleness=1)
    assert not fresh_enough.used_inversion and refresher.seconds == []
    out = refresher.refresh(base, delta, current, staleness=10)
    assert out.used_inversion and len(refresher.seconds) == 1
    norm = lambda d: np.sqrt(sum(float((v**2).sum()) for v in d.values()))  # noqa: E731
    assert norm(out.delta) == pytest.approx(norm(delta), rel=1e-4)
    # Computed on the current model: not the stale update itself.
    flat = np.concatenate([out.delta[k].ravel() for k in delta])
    stale = np.concatenate([delta[k].ravel() for k in delta])
    assert np.dot(flat, stale) / (np.linalg.norm(flat) * np.linalg.norm(stale)) < 0.999


def test_a_failed_inversion_falls_back_to_the_raw_update() -> None:
    base = _state(_mlp())
    delta = _client_delta(base, label=0)
    refresher = Refresher(
        _mlp(), (6,), 3, InversionConfig(iterations=1, min_cosine=1.0)
    )
    out = refresher.refresh(base, delta, base, staleness=5)
    assert not out.used_inversion
    for key in delta:
        np.testing.assert_allclose(out.delta[key], delta[key])


def test_fedbuff_takes_the_hook() -> None:
    refresher = Refresher(_mlp(), (6,), 3, InversionConfig(iterations=5))
    hook = fedbuff_refresh(refresher)
    base = _state(_mlp())
    delta = _client_delta(base, label=0)
    same, refreshed, reason = hook(base, delta, base, 1)
    assert same is delta and not refreshed and reason == ""
    assert FedBuff(refresh=hook).refresh is hook
