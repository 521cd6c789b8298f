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


def test_receive_model_builds_the_heterofl_submodel_from_the_mask() -> None:
    import numpy as np
    from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

    from strategies import heterofl
    from strategies.client_side import PLAIN, ModelShape, receive_model

    shape = ModelShape(1, 10, 0.1)
    full = PLAIN.build_model(shape)
    plan = heterofl.plan_from_model(full)
    state = {k: v.numpy() for k, v in full.state_dict().items()}
    mask = heterofl.make_mask(plan, 0.5, "static", server_round=1)
    sub = heterofl.extract_submodel(plan, state, mask)
    config = ConfigRecord(
        {
            heterofl.RATIO_KEY: 0.5,
            heterofl.MODE_KEY: "static",
            heterofl.MASK_KEY: heterofl.mask_to_json(mask),
        }
    )
    arrays = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in sub.items()})
    content = RecordDict({"arrays": arrays, "config": config})

    model = receive_model(PLAIN, shape, content)

    received = model.state_dict()
    assert {k: tuple(v.shape) for k, v in received.items()} == {
        k: v.shape for k, v in sub.items()
    }
    assert sum(v.numel() for v in received.values()) < sum(
        v.size for v in state.values()
    )
    out = model(torch.zeros(2, 1, 32, 32))
    assert out.shape == (2, 10)
    # Without a mask the full model variant is loaded as before.
    plain = RecordDict({"arrays": ArrayRecord(full.state_dict())})
    again = receive_model(PLAIN, shape, plain)
    assert all(
        torch.equal(again.state_dict()[k], v) for k, v in full.state_dict().items()
    )
