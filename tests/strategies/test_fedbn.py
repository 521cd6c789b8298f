import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.app.message.message import make_message
from flwr.app.metadata import Metadata
from flwr.common import MessageType

from strategies.client_side import ModelShape
from strategies.fedbn import CLIENT_SIDE, FedBN, average_shared, batchnorm_keys

SHAPE = ModelShape(3, 10, 0.1)


def _reply(arrays: dict[str, np.ndarray], num_examples: int, node: int) -> Message:
    content = RecordDict(
        {
            "arrays": ArrayRecord({k: torch.from_numpy(v) for k, v in arrays.items()}),
            "metrics": MetricRecord({"num-examples": num_examples}),
        }
    )
    metadata = Metadata(
        run_id=1,
        message_id="",
        src_node_id=node,
        dst_node_id=0,
        reply_to_message_id="m",
        group_id="1",
        created_at=0.0,
        ttl=60.0,
        message_type=MessageType.TRAIN,
    )
    return make_message(metadata=metadata, content=content)


def test_batchnorm_keys_are_every_bn_parameter_and_statistic() -> None:
    model = CLIENT_SIDE.build_model(SHAPE)
    keys = batchnorm_keys(model)
    bn_layers = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(keys) == 5 * len(bn_layers) > 0
    suffixes = {k.rsplit(".", 1)[1] for k in keys}
    assert suffixes == {
        "weight",
        "bias",
        "running_mean",
        "running_var",
        "num_batches_tracked",
    }
    conv_keys = {k for k in model.state_dict() if k not in keys}
    assert all(model.state_dict()[k].ndim == 4 or "bias" in k for k in conv_keys)


def test_average_shared_weights_by_examples_and_drops_local_keys() -> None:
    a = {"w": np.array([1.0, 2.0]), "bn.running_mean": np.array([100.0])}
    b = {"w": np.array([4.0, 8.0]), "bn.running_mean": np.array([-100.0])}
    out = average_shared([(a, 1.0), (b, 3.0)], {"bn.running_mean"})
    assert set(out) == {"w"}
    np.testing.assert_allclose(out["w"], [3.25, 6.5])


def test_average_shared_refuses_mismatched_shared_keys() -> None:
    with pytest.raises(ValueError, match="same model variant"):
        average_shared([({"w": np.zeros(1)}, 1.0), ({"v": np.zeros(1)}, 1.0)], ())


def test_fedbn_never_averages_a_batchnorm_key() -> None:
    model = CLIENT_SIDE.build_model(SHAPE)
    local = batchnorm_keys(model)
    initial = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    strategy = FedBN(local_keys=local)
    strategy._global = ArrayRecord(model.state_dict())
    # Two clients send everything, BatchNorm keys included, with wildly
    # different BatchNorm values: none of them may reach the global model.
    replies = []
    for node, offset in ((1, 1.0), (2, 3.0)):
        arrays = {
            k: v + offset if v.dtype.kind == "f" else v for k, v in initial.items()
        }
        replies.append(_reply(arrays, 10 * node, node))
    merged, metrics = strategy.aggregate_train(1, replies)
    assert merged is not None and metrics is not None
    out = merged.to_torch_state_dict()
    assert set(out) == set(initial)
    for key in local:
        np.testing.assert_array_equal(out[key].numpy(), initial[key])
    shared = [k for k in initial if k not in local]
    assert shared
    for key in shared:  # weighted FedAvg: (10 * 1 + 20 * 3) / 30 = 7 / 3
        np.testing.assert_allclose(out[key].numpy(), initial[key] + 7 / 3, rtol=1e-5)


def test_fedbn_needs_local_keys() -> None:
    with pytest.raises(ValueError, match="BatchNorm keys"):
        FedBN(local_keys=())


def test_client_keeps_batchnorm_between_rounds_and_never_sends_it() -> None:
    model = CLIENT_SIDE.build_model(SHAPE)
    state = RecordDict()
    assert not CLIENT_SIDE.restore_local(model, state)
    model.train()
    model(torch.randn(4, 3, 32, 32))  # moves the running statistics
    CLIENT_SIDE.keep_local(model, state)
    sent = CLIENT_SIDE.shared_state(model)
    assert not set(sent) & batchnorm_keys(model)
    fresh = CLIENT_SIDE.build_model(SHAPE)
    CLIENT_SIDE.load_global(fresh, ArrayRecord(sent))
    assert CLIENT_SIDE.restore_local(fresh, state)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value)


def test_fedbn_digit_cnn_keeps_the_three_conv_batchnorms_local() -> None:
    model = CLIENT_SIDE.build_model(ModelShape(3, 10, 0.1, architecture="cnn"))
    keys = batchnorm_keys(model)
    assert {k.rsplit(".", 1)[0] for k in keys} == {
        "features.1",
        "features.5",
        "features.9",
    }
    shared = CLIENT_SIDE.shared_state(model)
    assert not set(shared) & keys
    assert "hidden.1.weight" in shared and "classifier.weight" in shared
