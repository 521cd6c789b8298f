import pytest
import torch
from flwr.app import RecordDict
from torch import nn

from strategies.client_side import LocalTraining, OptimizerSettings
from strategies.fedlabel import (
    LOCAL_MODEL_KEY,
    consistency_loss,
    fedlabel_train,
    select_pseudo_labels,
    split_labelled,
    strong_augment,
    train_round,
    weak_augment,
)
from strategies.registry import check_parameters, optimizer_settings
from strategies.settings import FedLabelConfig


def _logits(*rows: list[float]) -> torch.Tensor:
    # probabilities -> logits whose softmax gives them back
    return torch.log(torch.tensor(rows))


def test_the_more_confident_model_labels_each_sample() -> None:
    local = _logits([0.9, 0.1], [0.3, 0.7], [0.55, 0.45])
    global_ = _logits([0.2, 0.8], [0.05, 0.95], [0.52, 0.48])
    chosen = select_pseudo_labels(local, global_, threshold=0.85)
    assert chosen.labels.tolist() == [0, 1, 0]
    assert chosen.from_local.tolist() == [True, False, True]
    # below the threshold, a label is not used
    assert chosen.mask.tolist() == [True, True, False]
    assert chosen.agree.tolist() == [False, True, True]


def test_a_tie_goes_to_the_global_model() -> None:
    same = _logits([0.6, 0.4])
    chosen = select_pseudo_labels(same, _logits([0.4, 0.6]), threshold=0.5)
    assert not bool(chosen.from_local[0]) and chosen.labels.tolist() == [1]


def test_global_teacher_alone_never_takes_a_local_label() -> None:
    chosen = select_pseudo_labels(None, _logits([0.96, 0.04], [0.5, 0.5]), 0.95)
    assert chosen.labels.tolist() == [0, 0]
    assert chosen.mask.tolist() == [True, False]
    assert not chosen.from_local.any() and not chosen.agree.any()


def test_consistency_is_zero_for_equal_outputs_or_no_agreement() -> None:
    a = torch.randn(4, 10)
    assert float(consistency_loss(a, a.clone(), torch.ones(4, dtype=torch.bool))) == (
        pytest.approx(0.0, abs=1e-6)
    )
    b = torch.randn(4, 10)
    assert float(consistency_loss(a, b, torch.zeros(4, dtype=torch.bool))) == 0.0
    where = torch.tensor([True, False, True, False])
    loss = consistency_loss(a, b, where)
    assert float(loss) > 0
    # symmetric, and only the masked rows count
    assert float(consistency_loss(b, a, where)) == pytest.approx(float(loss))
    c = b.clone()
    c[1] += 5
    assert float(consistency_loss(a, c, where)) == pytest.approx(float(loss))


def test_augmentations_keep_shape_and_strong_moves_more() -> None:
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 2:6, 3:5] = 1.0  # a bar, like a digit "1"
    weak = weak_augment(x, torch.Generator().manual_seed(1))
    strong = strong_augment(x, torch.Generator().manual_seed(1))
    assert weak.shape == strong.shape == x.shape
    assert float((strong - x).abs().mean()) > 1.5 * float((weak - x).abs().mean())


def test_split_labelled_keeps_at_least_one_label() -> None:
    x, y = torch.zeros(30, 1, 8, 8), torch.arange(30)
    (x_l, y_l), x_u = split_labelled(x, y, 0.1)
    assert y_l.tolist() == [0, 1, 2] and len(x_u) == 27
    (_, y_l), x_u = split_labelled(x, y, 0.001)
    assert len(y_l) == 1 and len(x_u) == 29


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def test_train_round_trains_the_local_model_only_with_fedlabel() -> None:
    x, y = torch.randn(40, 1, 8, 8), torch.randint(0, 10, (40,))
    labelled, unlabelled = split_labelled(x, y, 0.25)
    for teacher, local_moves in (("fedlabel", True), ("global", False)):
        model, local = _model(), _model()
        before = [p.clone() for p in local.parameters()]
        stats = train_round(
            model,
            local,
            labelled,
            unlabelled,
            FedLabelConfig(teacher=teacher, threshold=0.05),
            lr=0.1,
        )
        moved = any(
            not torch.equal(a, b)
            for a, b in zip(before, local.parameters(), strict=True)
        )
        assert moved is local_moves, teacher
        assert stats.steps == 1 and stats.pseudo_used == 1.0
    with pytest.raises(ValueError, match="local model"):
        train_round(_model(), None, labelled, unlabelled, FedLabelConfig(), lr=0.1)


def test_the_app_hook_keeps_the_local_model_in_context_state() -> None:
    state = RecordDict()
    x, y = torch.randn(40, 1, 8, 8), torch.randint(0, 10, (40,))
    task = LocalTraining(
        x, y, 1, 16, 0, OptimizerSettings(lr=0.1), {"label_fraction": 0.2}, {}, state
    )
    model = _model()
    _, metrics = fedlabel_train(model, task)
    assert LOCAL_MODEL_KEY in state.array_records
    assert metrics["local-state-restored"] == 0 and metrics["labelled-samples"] == 8
    kept = state.array_records[LOCAL_MODEL_KEY].to_torch_state_dict()
    _, metrics = fedlabel_train(_model(), task)
    assert metrics["local-state-restored"] == 1
    # the kept local model went on training in the second round
    again = state.array_records[LOCAL_MODEL_KEY].to_torch_state_dict()
    assert any(not torch.equal(kept[k], again[k]) for k in kept)


def test_registry_checks_fedlabel_parameters() -> None:
    check_parameters("fedlabel", {"teacher": "global", "label_fraction": 0.05})
    with pytest.raises(ValueError, match="teacher must be one of"):
        check_parameters("fedlabel", {"teacher": "oracle"})
    with pytest.raises(ValueError, match="label_fraction"):
        check_parameters("fedlabel", {"label_fraction": 0})
    # FedLabel's client keys do not reach the optimiser
    settings = optimizer_settings("fedlabel", {"teacher": "none"}, lr=0.01)
    assert settings.lr == 0.01
