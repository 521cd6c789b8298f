import pytest
import torch
from flwr.app import RecordDict
from torch import nn

from strategies.client_side import LocalTraining, OptimizerSettings
from strategies.prowd import (
    BITWIDTH_KEY,
    BitwidthServer,
    BitwidthUpdate,
    Dequantizer,
    assign_bitwidths,
    cosine,
    prowd_train,
    quantised_train,
    quantize,
    quantize_state,
)
from strategies.registry import build_strategy, check_parameters, prowd_config
from strategies.settings import ProWDConfig


def test_quantize_uses_two_to_the_bits_minus_one_levels() -> None:
    torch.manual_seed(0)
    w = torch.randn(64, 32)
    for bits, most in ((2, 3), (4, 15), (8, 255)):
        assert len(torch.unique(quantize(w, bits))) <= most
    assert torch.equal(quantize(w, 32), w)
    # 2 bits: {-c, 0, c}, symmetric
    values = torch.unique(quantize(w, 2))
    assert len(values) == 3 and float(values[0]) == -float(values[2])
    # error shrinks as bits grow
    errors = [float((quantize(w, b) - w).abs().mean()) for b in (2, 4, 8)]
    assert errors[0] > errors[1] > errors[2]


def test_quantize_state_leaves_biases_full_precision() -> None:
    state = {"w": torch.randn(8, 4), "b": torch.randn(8)}
    out = quantize_state(state, 2)
    assert torch.equal(out["b"], state["b"])
    assert len(torch.unique(out["w"])) <= 3


def test_quantised_training_learns_and_ends_on_the_grid() -> None:
    torch.manual_seed(0)
    x = torch.randn(128, 4)
    y = (x[:, 0] > 0).long()
    model = nn.Linear(4, 2)
    before = quantised_train(model, x, y, 4, lr=0.1, epochs=1, batch_size=16)
    after = quantised_train(model, x, y, 4, lr=0.1, epochs=5, batch_size=16)
    assert after.accuracy > max(0.85, before.accuracy - 0.01)
    assert torch.equal(model.weight, quantize(model.weight.detach(), 4))
    # the latent weights moved between steps: the bias (full precision) too
    assert after.steps == 5 * 8


def test_dequantizer_starts_as_identity_and_learns_to_lower_the_error() -> None:
    torch.manual_seed(0)
    weights = [{"w": torch.randn(32, 16) * 0.1} for _ in range(4)]
    dequantizer = Dequantizer([32, 4, 2])
    low = quantize(weights[0]["w"], 2)
    assert torch.equal(dequantizer.lift(low, 2), low)
    dequantizer.fit(weights, steps=300, lr=0.01)
    held_out = torch.randn(32, 16) * 0.1
    q = quantize(held_out, 2)
    raw_error = float((q - held_out).pow(2).mean())
    lifted_error = float((dequantizer.lift(q, 2) - held_out).pow(2).mean())
    assert lifted_error < raw_error
    with pytest.raises(ValueError, match="ladder"):
        dequantizer.lift(q, 3)


def _state(value: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((4, 4), value), "b": torch.full((4,), value)}


def test_naive_averages_everything_grouped_keeps_one_model_per_bitwidth() -> None:
    updates = [
        BitwidthUpdate(_state(1.0), 32, 10),
        BitwidthUpdate(_state(0.0), 2, 30),
    ]
    naive = BitwidthServer(ProWDConfig(aggregation="naive"), _state(0.5))
    assert float(naive.aggregate(updates)["w"][0, 0]) == pytest.approx(0.25)
    grouped = BitwidthServer(ProWDConfig(aggregation="grouped"), _state(0.5))
    assert float(grouped.aggregate(updates)["w"][0, 0]) == pytest.approx(1.0)
    assert float(grouped.groups[2]["b"][0]) == 0.0
    # a 2-bit client gets its own group's model, re-quantised
    assert float(grouped.model_for(2)["b"][0]) == 0.0


def test_selective_aggregation_drops_an_incompatible_low_bit_update() -> None:
    torch.manual_seed(0)
    start = {"w": torch.randn(8, 8), "b": torch.zeros(8)}
    direction = torch.randn(8, 8)

    def server_at_start() -> BitwidthServer:
        return BitwidthServer(
            ProWDConfig(aggregation="prowd", dequantizer_steps=0, compatibility=0.5),
            {k: v.clone() for k, v in start.items()},
        )

    server = server_at_start()
    full = {"w": start["w"] + 0.1 * direction, "b": torch.ones(8)}
    # the 4-bit group moved the other way: incompatible, left out
    against = quantize_state(
        {"w": start["w"] - 0.5 * direction, "b": -torch.ones(8)}, 4
    )
    merged = server.aggregate(
        [BitwidthUpdate(full, 32, 10), BitwidthUpdate(against, 4, 10)]
    )
    assert server.last_rejected == [("w", 4)]
    assert torch.allclose(merged["w"], full["w"], atol=1e-6)
    # biases always average: (1 + -1) / 2 from start 0
    assert torch.allclose(merged["b"], torch.zeros(8), atol=1e-6)
    # a compatible 4-bit update is averaged in
    along = quantize_state({"w": start["w"] + 0.1 * direction, "b": torch.ones(8)}, 4)
    server = server_at_start()
    server.aggregate([BitwidthUpdate(full, 32, 10), BitwidthUpdate(along, 4, 10)])
    assert server.last_rejected == []


def test_cosine_and_assignment() -> None:
    a = torch.tensor([1.0, 0.0])
    assert cosine(a, a) == pytest.approx(1.0) and cosine(a, -a) == pytest.approx(-1)
    assert cosine(a, torch.zeros(2)) == 0.0
    assert assign_bitwidths([7, 3, 5, 9], [32, 4]) == {3: 32, 5: 4, 7: 32, 9: 4}


def test_client_hook_trains_at_the_bitwidth_the_server_sent() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))
    x, y = torch.randn(32, 1, 4, 4), torch.randint(0, 10, (32,))
    task = LocalTraining(
        x, y, 1, 8, 0, OptimizerSettings(lr=0.1), {}, {BITWIDTH_KEY: 2}, RecordDict()
    )
    _, metrics = prowd_train(model, task)
    assert metrics == {"bitwidth": 2}
    assert len(torch.unique(model[1].weight.detach())) <= 3
    no_bitwidth = LocalTraining(
        x, y, 1, 8, 0, OptimizerSettings(lr=0.1), {}, {}, RecordDict()
    )
    with pytest.raises(ValueError, match=BITWIDTH_KEY):
        prowd_train(model, no_bitwidth)


def test_registry_checks_and_builds_prowd() -> None:
    assert prowd_config({"bitwidths": "32,8,4"}).bitwidths == (32, 8, 4)
    check_parameters("prowd", {"bitwidths": [32, 4, 2], "aggregation": "grouped"})
    with pytest.raises(ValueError, match="bitwidths must be"):
        check_parameters("prowd", {"bitwidths": [32, 1]})
    with pytest.raises(ValueError, match="aggregation must be"):
        check_parameters("prowd", {"aggregation": "mean"})
    strategy = build_strategy("prowd", {"bitwidths": "32,2", "min_train_nodes": 2})
    assert type(strategy).__name__ == "ProWD"
