"""FedBN (Li et al. 2021): BatchNorm layers stay on each client; the rest is FedAvg.

Every BatchNorm layer's affine parameters and running statistics
(``weight``, ``bias``, ``running_mean``, ``running_var``,
``num_batches_tracked``) are the client's own: it keeps them in
``context.state`` between rounds and never sends them
(:data:`CLIENT_SIDE`). The server (:class:`FedBN`) sends only the shared
keys and averages only shared keys, dropping any BatchNorm key a client sends
anyway; its global record keeps the BatchNorm values it started with, so a
server-side evaluation still loads a whole model.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from torch import nn

from strategies.client_side import ClientSide, batchnorm_model, sgd

NDArray = npt.NDArray[Any]


def batchnorm_keys(model: nn.Module) -> frozenset[str]:
    """State-dict keys of every BatchNorm layer of ``model`` (parameters, buffers)."""
    keys: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            prefix = f"{name}." if name else ""
            keys.update(prefix + key for key in module.state_dict())
    return frozenset(keys)


def average_shared(
    updates: Sequence[tuple[Mapping[str, NDArray], float]],
    local_keys: Collection[str],
) -> dict[str, NDArray]:
    """Weighted average of every key no client keeps; local keys are dropped unread.

    ``updates`` are (arrays, weight) pairs, the weight usually a client's number
    of examples. Every update must carry the same shared keys.
    """
    if not updates:
        raise ValueError("average_shared needs at least one update")
    total = float(sum(weight for _, weight in updates))
    if not total > 0:
        raise ValueError(f"update weights must sum to > 0, got {total!r}")
    shared = sorted(k for k in updates[0][0] if k not in local_keys)
    for index, (arrays, _) in enumerate(updates):
        keys = sorted(k for k in arrays if k not in local_keys)
        if keys != shared:
            raise ValueError(
                f"update {index} carries shared keys {keys[:5]}..., update 0"
                f" {shared[:5]}...: every client must train the same model variant"
            )
    return {
        key: np.sum(
            [np.asarray(a[key], np.float64) * (w / total) for a, w in updates], axis=0
        ).astype(np.asarray(updates[0][0][key]).dtype)
        for key in shared
    }


def without_keys(arrays: ArrayRecord, dropped: Collection[str]) -> ArrayRecord:
    """A copy of ``arrays`` without the keys in ``dropped``."""
    return ArrayRecord({k: v for k, v in arrays.items() if k not in dropped})


class SharedKeysOnly(FedAvg):
    """FedAvg that never sends the keys in ``local_keys`` (the nodes keep their
    own); it remembers the whole global record of the round (``_global``), so a
    subclass can aggregate the shared keys into it."""

    def __init__(self, local_keys: Collection[str], **fedavg: Any) -> None:
        super().__init__(**fedavg)
        self.local_keys = frozenset(local_keys)
        self._global: ArrayRecord | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send only the shared keys; remember the whole global record."""
        self._global = arrays
        return super().configure_train(
            server_round, without_keys(arrays, self.local_keys), config, grid
        )

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send only the shared keys: nodes evaluate with their own local keys."""
        return super().configure_evaluate(
            server_round, without_keys(arrays, self.local_keys), config, grid
        )


class FedBN(SharedKeysOnly):
    """FedAvg that neither sends nor averages the keys in ``local_keys``."""

    def __init__(self, local_keys: Collection[str], **fedavg: Any) -> None:
        if not local_keys:
            raise ValueError(
                "FedBN needs the model's BatchNorm keys (strategies.fedbn."
                "batchnorm_keys); with none it would be plain FedAvg"
            )
        super().__init__(local_keys, **fedavg)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Average the shared keys over the valid replies; local keys never."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        updates = []
        for reply in valid:
            arrays = next(iter(reply.content.array_records.values()))
            metrics = next(iter(reply.content.metric_records.values()))
            weight = float(metrics[self.weighted_by_key])  # type: ignore[arg-type]
            updates.append(({k: v.numpy() for k, v in arrays.items()}, weight))
        averaged = average_shared(updates, self.local_keys)
        merged: dict[str, Array] = {}
        if self._global is not None:
            merged.update(
                {k: v for k, v in self._global.items() if k in self.local_keys}
            )
        merged.update({k: Array(v) for k, v in averaged.items()})
        metrics_out = self.train_metrics_aggr_fn(
            [reply.content for reply in valid], self.weighted_by_key
        )
        return ArrayRecord(merged), metrics_out


CLIENT_SIDE = ClientSide(
    "batchnorm-local",
    build_model=batchnorm_model,
    build_optimizer=sgd,
    local_keys=batchnorm_keys,
)
