import pytest
import torch
from torch import nn

from strategies.client_side import ModelShape, batchnorm_model, plain_model
from workloads.digitcnn import DigitCNNConfig, build_digit_cnn


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_digit_cnn_has_the_papers_layout_scaled_by_width() -> None:
    model = build_digit_cnn(DigitCNNConfig(3, 10, 0.25))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [c.out_channels for c in convs] == [16, 16, 32]
    assert all(c.kernel_size == (5, 5) for c in convs)
    assert [(m.in_features, m.out_features) for m in linears] == [
        (32 * 8 * 8, 512),
        (512, 128),
        (128, 10),
    ]
    # conv 3*16*25+16 + 16*16*25+16 + 16*32*25+32; fc 2048*512+512 + ...
    assert _params(model) == 1_136_506
    logits = model(torch.zeros(4, 3, 32, 32))
    assert logits.shape == (4, 10)


def test_batch_norm_follows_each_convolution_only() -> None:
    model = build_digit_cnn(DigitCNNConfig(1, 10, 0.1, batch_norm=True))
    norms = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)
    ]
    # BatchNorm2d only: a BatchNorm1d after the Linear layers could not train
    # on a batch of one image.
    assert len(norms) == 3 and all(isinstance(m, nn.BatchNorm2d) for m in norms)


def test_model_shape_picks_the_network_and_rejects_unknown_ones() -> None:
    cnn = ModelShape(3, 10, 0.1, architecture="cnn")
    assert isinstance(plain_model(cnn).classifier, nn.Linear)
    assert isinstance(batchnorm_model(cnn).features[1], nn.BatchNorm2d)
    assert not isinstance(plain_model(ModelShape(3, 10, 0.1)).classifier, nn.Linear)
    with pytest.raises(ValueError, match="model must be one of squeezenet, cnn"):
        ModelShape(3, 10, 0.1, architecture="resnet")
    with pytest.raises(ValueError, match="width must be in"):
        build_digit_cnn(DigitCNNConfig(3, 10, 4.0))
