import pytest
import torch
from torch import nn

from workloads.squeezenet import (
    DEFAULT_WIDTH,
    Fire,
    SqueezeNetConfig,
    build_model,
    count_parameters,
    model_bytes,
)


def test_default_model_has_about_one_million_parameters() -> None:
    model = build_model()

    n = count_parameters(model)

    assert 0.9e6 <= n <= 1.1e6
    assert n == 993_309  # the figure documented in the module docstring
    assert model_bytes(model) == 4 * n


@pytest.mark.parametrize(
    ("width", "expected"), [(0.5, 183_786), (1.0, 726_474), (DEFAULT_WIDTH, 993_309)]
)
def test_documented_parameter_counts(width: float, expected: int) -> None:
    assert count_parameters(build_model(SqueezeNetConfig(width=width))) == expected


@pytest.mark.parametrize("stem_stride", [1, 2])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_forward_maps_images_to_logits(stem_stride: int, batch_norm: bool) -> None:
    config = SqueezeNetConfig(stem_stride=stem_stride, batch_norm=batch_norm)
    model = build_model(config, seed=0).eval()

    logits = model(torch.randn(5, 1, 32, 32))

    assert logits.shape == (5, 10)
    assert torch.isfinite(logits).all()
    # Logits are not clamped at zero (no ReLU before pooling).
    assert (logits < 0).any()


def test_forward_respects_channels_and_classes() -> None:
    model = build_model(SqueezeNetConfig(in_channels=3, num_classes=7, width=0.5))

    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_layout_is_eight_fire_modules_in_sequentials() -> None:
    model = build_model(SqueezeNetConfig(width=1.0))

    fires = [m for m in model.features if isinstance(m, Fire)]
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]

    assert [f.out_channels for f in fires] == [128, 128, 256, 256, 384, 384, 512, 512]
    assert len(pools) == 3
    assert isinstance(model.classifier[0], nn.Dropout)
    final = model.classifier[1]
    assert isinstance(final, nn.Conv2d) and final.kernel_size == (1, 1)


def test_batch_norm_adds_a_norm_after_every_feature_conv() -> None:
    model = build_model(SqueezeNetConfig(batch_norm=True))
    plain = build_model(SqueezeNetConfig())

    convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.features.modules() if isinstance(m, nn.BatchNorm2d)]

    assert len(convs) == 1 + 8 * 3 == len(norms)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    # Running statistics travel too, so the wire size grows by more than params.
    assert model_bytes(model) > 4 * count_parameters(model)


def test_state_dict_holds_each_tensor_once() -> None:
    model = build_model()

    total = sum(t.numel() for t in model.state_dict().values())

    assert total == count_parameters(model)


def test_seed_makes_weights_repeatable_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)

    a = build_model(seed=5)
    b = build_model(seed=5)
    c = build_model(seed=6)

    assert torch.equal(torch.rand(1), expected_next)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    stem = "features.0.0.weight"
    assert not torch.equal(a.state_dict()[stem], c.state_dict()[stem])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"in_channels": 0},
        {"num_classes": 1},
        {"width": 0.0},
        {"stem_stride": 3},
        {"dropout": 1.0},
    ],
)
def test_bad_config_is_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SqueezeNetConfig(**kwargs)  # type: ignore[arg-type]
