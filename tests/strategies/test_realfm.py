"""RealFM's mechanism: local optima, accuracy shaping, b_fed, and the train config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from strategies import realfm
from strategies.realfm import (
    AccuracyModel,
    Device,
    device_utility,
    equilibrium,
    federated_contribution,
    local_optimum,
    shaped_gain,
)

MODEL = AccuracyModel()


def test_accuracy_model_grows_with_data_and_stays_below_its_ceiling() -> None:
    values = [MODEL.accuracy(m) for m in (1, 10, 100, 1e3, 1e5, 1e8)]
    assert values[0] == values[1] == 0.0  # too few points to say anything
    assert values == sorted(values) and values[-1] < MODEL.a_opt


@pytest.mark.parametrize("kind", ["nonlinear", "linear"])
@pytest.mark.parametrize("cost", [1e-4, 1e-3])
def test_local_optimum_is_a_maximum_of_the_devices_utility(
    kind: Any, cost: float
) -> None:
    b = local_optimum(cost, 1.0, MODEL, kind)
    assert b > 0
    best = device_utility(b, cost, 1.0, MODEL, kind)
    for other in (b * 0.9, b * 0.99, b * 1.01, b * 1.1):
        assert device_utility(other, cost, 1.0, MODEL, kind) <= best + 1e-9


def test_a_device_that_cannot_profit_contributes_nothing_alone() -> None:
    assert local_optimum(1.0, 1.0, MODEL) == 0


@pytest.mark.parametrize("kind", ["nonlinear", "linear"])
def test_shaping_reaches_a_fed_exactly_at_b_fed(kind: Any) -> None:
    a_local, a_fed, b_local, cost = 0.90, 0.94, 1000.0, 1e-3
    b_fed = federated_contribution(a_local, a_fed, b_local, cost, 1.0, kind)
    assert b_fed > b_local
    gain = shaped_gain(b_fed, b_local, a_local, cost, 1.0, kind)
    assert a_local + gain == pytest.approx(a_fed, abs=1e-9)
    # No extra data, no extra accuracy.
    assert shaped_gain(b_local, b_local, a_local, cost, 1.0, kind) == 0.0


def test_linear_shaping_is_linear_in_the_extra_data() -> None:
    one = shaped_gain(1100, 1000, 0.5, 1e-3, 1.0, "linear")
    two = shaped_gain(1200, 1000, 0.5, 1e-3, 1.0, "linear")
    assert two == pytest.approx(2 * one) and one == pytest.approx(0.1)


def test_every_device_contributes_more_and_gains_under_realfm() -> None:
    devices = [Device(c) for c in (5e-5, 1e-4, 1.5e-4, 3e-4, 1e-2)]
    outcome = equilibrium(devices, kind="nonlinear", reward_share=0.1)
    for device in outcome.devices:
        assert device.b_fed > device.b_local
        assert device.a_offered == pytest.approx(outcome.a_fed, abs=1e-6)
        assert device.utility_fed >= device.utility_local
    # The costliest device would free-ride (b_local = 0) but contributes here.
    assert outcome.devices[-1].b_local == 0 and outcome.devices[-1].b_fed > 0
    assert outcome.server_utility_fed > outcome.server_utility_local
    assert outcome.a_trained >= outcome.a_fed


def test_realfm_beats_the_linear_mechanism_on_utility_and_data() -> None:
    devices = [Device(c) for c in (5e-4, 1e-3, 1.5e-3)]
    real = equilibrium(devices, kind="nonlinear")
    linear = equilibrium(devices, kind="linear")
    assert real.total_fed > linear.total_fed
    assert real.server_utility_fed > linear.server_utility_fed
    for r, lin in zip(real.devices, linear.devices, strict=True):
        assert r.utility_fed > lin.utility_fed


def test_node_half_declares_costs_and_caps_its_contribution() -> None:
    reply = realfm.cost_reply({realfm.COST_KEY: 0.002, realfm.PAYOFF_KEY: 2})
    record = reply.config_records[realfm.COST_RECORD]
    assert record[realfm.COST_KEY] == 0.002 and record[realfm.PAYOFF_KEY] == 2.0
    assert realfm.contribution({realfm.CONTRIBUTION_KEY: 50}, 128) == 50
    assert realfm.contribution({realfm.CONTRIBUTION_KEY: 5000}, 128) == 128
    assert realfm.contribution({}, 128) == 128


def test_the_app_reads_the_same_contribution_key() -> None:
    # The app is not an installed package: read its constant from the source.
    source = (
        Path(__file__).parents[2] / "apps/digits/flowerbed_digits/client_task.py"
    ).read_text()
    assert f'REALFM_CONTRIBUTION_KEY = "{realfm.CONTRIBUTION_KEY}"' in source


@pytest.fixture
def _task_identity() -> Iterator[None]:
    # Message() outside a Flower process needs a task identity.
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield


class _Grid:
    """Two nodes; node 1 declares a cost, node 2 does not answer with one."""

    def get_node_ids(self) -> list[int]:
        return [1, 2]

    def send_and_receive(self, messages: list[Message], timeout: float) -> list[Any]:
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            config = {realfm.COST_KEY: 2e-4} if node == 1 else {}
            replies.append(_Reply(node, realfm.cost_reply(config)))
        return replies


class _Reply:
    def __init__(self, node: int, content: RecordDict) -> None:
        self.content = content
        self.metadata = type("M", (), {"src_node_id": node})()

    def has_error(self) -> bool:
        return False


@pytest.mark.usefixtures("_task_identity")
def test_each_train_message_carries_its_own_contribution() -> None:
    strategy = realfm.RealFM(costs=(1e-3,), min_available_nodes=2, min_train_nodes=2)
    arrays = ArrayRecord({})
    messages = list(strategy.configure_train(1, arrays, ConfigRecord({}), _Grid()))  # type: ignore[arg-type]
    sent = {
        m.metadata.dst_node_id: m.content.config_records["config"][
            realfm.CONTRIBUTION_KEY
        ]
        for m in messages
    }
    assert strategy.outcome is not None
    assert [d.cost for d in strategy.outcome.devices] == [2e-4, 1e-3]
    assert sent == strategy.contributions and sent[1] > sent[2] > 0
