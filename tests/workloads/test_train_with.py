import torch
from torch import nn

from workloads.training import train_with


def test_uses_the_given_optimiser_and_counts_steps() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    calls = []

    class Counting(torch.optim.SGD):
        def step(self, closure=None):  # type: ignore[no-untyped-def]
            calls.append(1)
            return super().step(closure)

    x, y = torch.randn(10, 1, 2, 2), torch.arange(10) % 2
    result = train_with(
        model, Counting(model.parameters(), lr=0.1), x, y, epochs=2, batch_size=4
    )
    assert result.steps == len(calls) == 6  # ceil(10 / 4) x 2
    assert result.num_examples == 10
