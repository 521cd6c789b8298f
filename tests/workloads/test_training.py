import time

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from workloads import digits
from workloads.squeezenet import SqueezeNetConfig, build_model
from workloads.training import EvalResult, TrainResult, evaluate, train


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


def _tiny_data(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 32, 32, generator=gen), torch.randint(
        0, 10, (n,), generator=gen
    )


def test_default_model_learns_digits_well_above_chance() -> None:
    part = digits.partition(0, 1, samples_per_node=300, validation_fraction=0.0)
    x_test, y_test = digits.test_set()
    model = build_model(seed=0)
    before = evaluate(model, x_test, y_test)

    start = time.perf_counter()
    result = train(
        model, part.x_train, part.y_train, epochs=15, batch_size=8, lr=0.001, seed=0
    )
    elapsed = time.perf_counter() - start
    after = evaluate(model, x_test, y_test)

    print(f"15 epochs x 300 samples: {elapsed:.1f} s")
    assert before.accuracy < 0.2
    assert result.num_examples == 300
    assert result.steps == 15 * 38  # ceil(300 / 8) per epoch
    assert result.accuracy > 0.5
    assert after.accuracy > 0.5
    assert after.loss < before.loss


def test_batch_norm_variant_learns_in_a_few_epochs() -> None:
    part = digits.partition(0, 1, samples_per_node=300, validation_fraction=0.0)
    model = build_model(SqueezeNetConfig(batch_norm=True), seed=1)

    result = train(
        model, part.x_train, part.y_train, epochs=6, batch_size=16, lr=0.02, seed=1
    )

    assert result.accuracy > 0.5
    assert evaluate(model, part.x_train, part.y_train).accuracy > 0.5


def test_training_is_deterministic_given_seed() -> None:
    x, y = _tiny_data()
    models = [build_model(SqueezeNetConfig(width=0.5), seed=0) for _ in range(3)]

    results = [
        train(m, x, y, epochs=2, batch_size=16, lr=0.01, seed=s)
        for m, s in zip(models, (4, 4, 5), strict=True)
    ]

    assert results[0] == results[1]
    assert results[0].steps == 2 * 3
    same, other = models[1].state_dict(), models[2].state_dict()
    for key, value in models[0].state_dict().items():
        assert torch.equal(value, same[key])
    assert any(
        not torch.equal(value, other[key])
        for key, value in models[0].state_dict().items()
    )


def test_evaluate_agrees_with_a_manual_computation() -> None:
    x, y = _tiny_data(50)
    model = build_model(SqueezeNetConfig(width=0.5), seed=2)
    # Give the untrained model some signal so accuracy is neither 0 nor 1.
    train(model, x, y, epochs=3, batch_size=10, lr=0.01, seed=0)

    result = evaluate(model, x, y, batch_size=16)  # uneven last batch
    model.eval()
    with torch.no_grad():
        logits = model(x)
    expected_loss = float(F.cross_entropy(logits, y))
    expected_acc = float((logits.argmax(dim=1) == y).float().mean())

    assert result.num_examples == 50
    assert result.loss == pytest.approx(expected_loss, rel=1e-5)
    assert result.accuracy == pytest.approx(expected_acc)
    assert not model.training


def test_train_leaves_global_rng_alone() -> None:
    x, y = _tiny_data()
    model = build_model(SqueezeNetConfig(width=0.5))
    torch.manual_seed(9)
    expected_next = torch.rand(1)
    torch.manual_seed(9)

    train(model, x, y, epochs=1, batch_size=8, lr=0.01)

    assert torch.equal(torch.rand(1), expected_next)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
    ],
)
def test_bad_training_arguments_are_rejected(
    kwargs: dict[str, float], match: str
) -> None:
    x, y = _tiny_data(8)
    args: dict[str, float] = {"epochs": 1, "batch_size": 4, "lr": 0.01} | kwargs
    with pytest.raises(ValueError, match=match):
        train(nn.Linear(1, 1), x, y, **args)  # type: ignore[arg-type]


def test_mismatched_or_empty_data_is_rejected() -> None:
    x, y = _tiny_data(8)
    model = build_model(SqueezeNetConfig(width=0.5))

    with pytest.raises(ValueError, match="y must have shape"):
        evaluate(model, x, y[:-1])
    with pytest.raises(ValueError, match="non-empty"):
        evaluate(model, x[:0], y[:0])


def test_results_validate_their_fields() -> None:
    with pytest.raises(ValueError, match="accuracy"):
        EvalResult(loss=1.0, accuracy=1.5, num_examples=3)
    with pytest.raises(ValueError, match="steps"):
        TrainResult(loss=1.0, accuracy=0.5, num_examples=3, steps=0)
