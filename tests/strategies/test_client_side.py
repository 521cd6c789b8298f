import pytest
import torch
from flwr.app import ArrayRecord, RecordDict

from strategies.client_side import PLAIN, ModelShape, OptimizerSettings
from strategies.fedbn import CLIENT_SIDE as FEDBN
from strategies.fedwon import CLIENT_SIDE as FEDWON

SHAPE = ModelShape(1, 10, 0.1)


def test_plain_client_shares_everything_and_keeps_nothing() -> None:
    model = PLAIN.build_model(SHAPE)
    state = RecordDict()
    PLAIN.keep_local(model, state)
    assert len(state) == 0
    assert set(PLAIN.shared_state(model)) == set(model.state_dict())


def test_load_global_refuses_another_model_variant() -> None:
    fedwon_model = FEDWON.build_model(SHAPE)
    with pytest.raises(ValueError, match="same model variant"):
        PLAIN.load_global(
            PLAIN.build_model(SHAPE), ArrayRecord(fedwon_model.state_dict())
        )


def test_restore_local_refuses_state_of_another_variant() -> None:
    state = RecordDict({"flowerbed-local-keys": ArrayRecord({"x": torch.zeros(1)})})
    with pytest.raises(ValueError, match="local keys"):
        FEDBN.restore_local(FEDBN.build_model(SHAPE), state)


def test_load_global_sets_the_shared_weights() -> None:
    source, target = FEDBN.build_model(SHAPE), FEDBN.build_model(SHAPE)
    FEDBN.load_global(target, ArrayRecord(FEDBN.shared_state(source)))
    for key, value in FEDBN.shared_state(source).items():
        assert torch.equal(target.state_dict()[key], value)


@pytest.mark.parametrize(
    "kwargs", [{"lr": 0.0}, {"lr": 0.1, "momentum": 1.0}, {"lr": 0.1, "clip_lambda": 0}]
)
def test_optimizer_settings_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        OptimizerSettings(**kwargs)
