import math

import pytest
import torch
from torch import nn

from strategies.client_side import ModelShape, OptimizerSettings
from strategies.fedwon import (
    CLIENT_SIDE,
    RELU_GAMMA,
    AgcSGD,
    ScaledStdConv2d,
    adaptive_clip_,
)
from workloads.training import evaluate, train_with


def _formula(conv: ScaledStdConv2d) -> torch.Tensor:
    """W_hat = g * gamma * (W - mean) / (std * sqrt(fan_in)), one channel at a time."""
    w = conv.weight.detach().double()
    out = torch.empty_like(w)
    fan_in = w[0].numel()
    for o in range(w.shape[0]):
        unit = w[o]
        mean = unit.sum() / unit.numel()
        std = math.sqrt(float(((unit - mean) ** 2).sum() / unit.numel()) + conv.eps)
        gain = float(conv.gain[o].item())
        out[o] = gain * RELU_GAMMA * (unit - mean) / (std * math.sqrt(fan_in))
    return out


def test_standardised_convolution_equals_its_formula() -> None:
    torch.manual_seed(0)
    conv = ScaledStdConv2d(3, 5, 3, padding=1)
    with torch.no_grad():
        conv.gain.uniform_(0.5, 2.0)
        conv.weight.mul_(torch.linspace(0.1, 10, 5).view(5, 1, 1, 1))
    expected = _formula(conv)
    torch.testing.assert_close(conv.standardized_weight().double(), expected)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(
        conv(x),
        nn.functional.conv2d(x, expected.float(), conv.bias, padding=1),
        rtol=1e-4,
        atol=1e-5,
    )


def test_standardised_weight_has_zero_mean_and_fan_in_scaled_norm() -> None:
    conv = ScaledStdConv2d(4, 6, 3)
    w = conv.standardized_weight().detach()
    assert w.mean(dim=(1, 2, 3)).abs().max() < 1e-6
    # unit variance per channel times gamma^2 / fan_in, summed over fan_in entries
    norms = (w**2).sum(dim=(1, 2, 3))
    torch.testing.assert_close(
        norms, torch.full((6,), RELU_GAMMA**2), rtol=1e-3, atol=0
    )


def _clip_formula(
    w: torch.Tensor, g: torch.Tensor, clip: float, eps: float = 1e-3
) -> torch.Tensor:
    """Row by row: if |G|/max(|W|, eps) > clip, G <- clip * max(|W|, eps) / |G| * G."""
    rows_w = w.reshape(w.shape[0], -1) if w.ndim > 1 else w.reshape(1, -1)
    rows_g = g.reshape(rows_w.shape)
    out = rows_g.clone()
    for i in range(rows_w.shape[0]):
        wn = max(float(rows_w[i].norm()), eps)
        gn = float(rows_g[i].norm())
        if gn / wn > clip:
            out[i] = clip * wn / gn * rows_g[i]
    return out.reshape(g.shape)


@pytest.mark.parametrize("shape", [(6, 3, 3, 3), (7, 5), (9,)])
def test_adaptive_clipping_equals_its_formula(shape: tuple[int, ...]) -> None:
    torch.manual_seed(1)
    p = nn.Parameter(torch.randn(shape))
    # mixed units: some gradients tiny (untouched), some huge (clipped)
    scale = torch.logspace(-4, 1, shape[0]).view(-1, *([1] * (len(shape) - 1)))
    grad = torch.randn(shape) * (scale if len(shape) > 1 else 1.0)
    with torch.no_grad():
        p[0].zero_()  # a zero-weight unit clips against eps
    p.grad = grad.clone()
    expected = _clip_formula(p.detach(), grad, 0.05)
    adaptive_clip_([p], clip_lambda=0.05)
    torch.testing.assert_close(p.grad, expected)
    if len(shape) > 1:
        assert torch.equal(
            p.grad[-1:] != grad[-1:], torch.ones_like(grad[-1:], dtype=torch.bool)
        )
        assert torch.equal(p.grad[1], grad[1])  # a tiny gradient is left alone


def test_agc_sgd_clips_before_stepping_but_not_the_classifier() -> None:
    model = CLIENT_SIDE.build_model(ModelShape(3, 10, 0.1))
    optimizer = CLIENT_SIDE.build_optimizer(
        model, OptimizerSettings(lr=1.0, momentum=0.0, clip_lambda=0.01)
    )
    assert isinstance(optimizer, AgcSGD)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.full_like(p, 100.0)
    optimizer.step()
    for name, p in model.named_parameters():
        step = (before[name] - p.detach()).flatten()
        if name.startswith("classifier."):
            assert torch.allclose(step, torch.full_like(step, 100.0))
        else:  # the step of every unit is at most lambda * max(|W|, eps)
            w = before[name]
            rows = w.reshape(w.shape[0], -1) if w.ndim > 1 else w.reshape(1, -1)
            limit = 0.01 * rows.norm(dim=1).clamp(min=1e-3)
            moved = step.reshape(rows.shape).norm(dim=1)
            assert (moved <= limit * (1 + 1e-4)).all(), name


def test_fedwon_model_has_no_normalization_and_standardises_hidden_convs() -> None:
    model = CLIENT_SIDE.build_model(ModelShape(3, 10, 0.25))
    kinds = {type(m) for m in model.modules()}
    assert not any(issubclass(k, nn.modules.batchnorm._NormBase) for k in kinds)
    assert not any(issubclass(k, nn.GroupNorm) for k in kinds)
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    plain = [n for n, m in convs if type(m) is nn.Conv2d]
    assert plain == ["classifier.1"]
    assert len(convs) > 20


def test_fedwon_learns_at_batch_size_one() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(24, 3, 32, 32)
    y = torch.arange(24) % 2
    x[y == 1] += 2.0  # two separable classes
    model = CLIENT_SIDE.build_model(ModelShape(3, 2, 0.1))
    optimizer = CLIENT_SIDE.build_optimizer(
        model, OptimizerSettings(lr=0.01, clip_lambda=0.01)
    )
    before = evaluate(model, x, y)
    result = train_with(model, optimizer, x, y, epochs=4, batch_size=1)
    after = evaluate(model, x, y)
    assert result.steps == 4 * 24
    assert after.loss < before.loss
    assert after.accuracy >= 0.9


def test_fedwon_digit_cnn_standardises_every_conv_and_leaves_the_head_unclipped() -> (
    None
):
    model = CLIENT_SIDE.build_model(ModelShape(3, 10, 0.1, architecture="cnn"))
    kinds = {type(m) for m in model.modules()}
    assert not any(issubclass(k, nn.modules.batchnorm._NormBase) for k in kinds)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and all(isinstance(m, ScaledStdConv2d) for m in convs)
    optimizer = CLIENT_SIDE.build_optimizer(model, OptimizerSettings(lr=0.1))
    by_group = {g["agc"]: {id(p) for p in g["params"]} for g in optimizer.param_groups}
    head = {id(p) for p in model.classifier.parameters()}
    assert by_group[False] == head
    assert not head & by_group[True]
    assert len(by_group[True]) == len(list(model.parameters())) - 2
