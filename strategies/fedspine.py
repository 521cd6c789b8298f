"""FedSpine (Yao et al. 2025): LoRA + structured pruning, a bandit per device.

The model is a tiny transformer built here (:class:`TinyTransformer`: token
and position embeddings, two pre-norm blocks of 4-head attention and an MLP,
a mean-pooled classification head; no downloaded weights). Every Linear of a
block is a :class:`LoRALinear`: a frozen base weight plus ``LORA_SLOTS`` LoRA
slots (``A`` rows, ``B`` columns) of which a device trains the first ``rank``.
Fine-tuning trains the LoRA slots and the classification head only.

Structured pruning drops whole MLP channels: a channel's importance is
``|W1[j, :]| * |W2[:, j]|`` of the EFFECTIVE weights (base + B @ A), and a
device at pruning ratio ``p`` drops the ``p`` least important channels of
each block (:func:`channel_masks`). The masks are recomputed from the global
model every round, so pruning and tuning alternate (iterated). The global
model is evaluated pruned at ``target_sparsity``.

The server (:class:`SpineServer`) keeps, per device, a discounted UCB bandit
(:class:`DeviceBandit`) over the arms (pruning ratio, LoRA rank). A device
reports its gain (held-out accuracy or loss after minus before its local
training, on its pruned model) and its training seconds (measured on the
device; in the bench, simulated as work / speed). The reward is
``gain / max(seconds, pace)`` with ``pace`` a quantile of the round's
seconds (default the maximum: the synchronous round time), divided by the
largest reward seen so far (``normalise: max``) or with past rounds discounted
(``normalise: decay``, which follows the gains as they shrink over rounds),
or with each gain first divided by the round's mean gain (``normalise:
gain``: the gains' fall as the model converges cancels, the seconds stay):
a device faster than the pace is paid for its gain alone (working less would
not shorten the round), the straggler that sets the round time per second it
spends.

Heterogeneous ranks are aggregated HetLoRA-style with coverage weights: a
device of rank ``r`` pruned to channel set ``m`` updated only the first ``r``
LoRA slots and, in the MLP, only the rows/columns of its kept channels; each
element of the global LoRA moves by the example-weighted mean of the updates
of the devices that covered it (:func:`coverage`), and an element no device
covered keeps its value. (Averaging A and B separately is not the average of
the products B @ A; HetLoRA accepts this, and so do we.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from logging import INFO
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from torch import nn

from strategies.client_side import ClientSide, LocalTraining, ModelShape
from strategies.fedspine_model import (
    State,
    TinyTransformer,
    channel_masks,
    coverage,
    freeze_base,
    prune,
    set_rank,
    trainable_keys,
)
from strategies.fedspine_settings import LORA_SLOTS, FedSpineConfig
from workloads import textcls
from workloads.training import TrainResult

Arm = tuple[float, int]
RATIO_KEY = "fedspine-ratio"
RANK_KEY = "fedspine-rank"
GAIN_ACCURACY = "fedspine-gain-accuracy"
GAIN_LOSS = "fedspine-gain-loss"
SECONDS = "fedspine-train-s"
# A device holds this share of its sentences out to measure its gain.
HOLDOUT = 0.25


@dataclass(frozen=True)
class SpineResult:
    """A device's round: training result, gain and seconds."""

    train: TrainResult
    gain_accuracy: float
    gain_loss: float
    seconds: float


def _eval(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        return float((logits.argmax(1) == y).float().mean()), float(
            F.cross_entropy(logits, y)
        )


def spine_train(
    model: TinyTransformer,
    x: torch.Tensor,
    y: torch.Tensor,
    ratio: float,
    rank: int,
    *,
    lr: float,
    epochs: int = 1,
    batch_size: int = 16,
    seed: int = 0,
) -> SpineResult:
    """Prune at ``ratio``, train LoRA at ``rank`` + head (Adam), measure the gain.

    The last ``HOLDOUT`` of ``(x, y)`` is held out: the gain is its accuracy
    (and loss) after minus before training, on the pruned model.
    """
    if len(x) < 4:
        raise ValueError(
            f"FedSpine needs at least 4 sentences per device, got {len(x)}"
        )
    cut = len(x) - max(1, round(HOLDOUT * len(x)))
    x_fit, y_fit, x_out, y_out = x[:cut], y[:cut], x[cut:], y[cut:]
    set_rank(model, rank)
    prune(model, ratio)
    acc0, loss0 = _eval(model, x_out, y_out)
    params = freeze_base(model)
    optimizer = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    steps, loss_sum, correct = 0, 0.0, 0
    model.train()
    for _ in range(epochs):
        loss_sum, correct = 0.0, 0
        order = torch.randperm(len(x_fit), generator=generator)
        for first in range(0, len(x_fit), batch_size):
            batch = order[first : first + batch_size]
            optimizer.zero_grad(set_to_none=True)
            logits = model(x_fit[batch])
            loss = F.cross_entropy(logits, y_fit[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            steps += 1
            loss_sum += loss.item() * len(batch)
            correct += int((logits.argmax(1) == y_fit[batch]).sum())
    seconds = time.perf_counter() - start
    acc1, loss1 = _eval(model, x_out, y_out)
    result = TrainResult(loss_sum / len(x_fit), correct / len(x_fit), len(x_fit), steps)
    return SpineResult(result, acc1 - acc0, loss0 - loss1, seconds)


@dataclass
class DeviceBandit:
    """Discounted UCB over the arms for one device."""

    arms: tuple[Arm, ...]
    exploration: float
    discount: float
    # Seeds the order untried arms are tried in (devices differ, so they do
    # not all explore the same arm in the same round).
    seed: int = 0
    counts: list[float] = field(default_factory=list)
    sums: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.counts = [0.0] * len(self.arms)
        self.sums = [0.0] * len(self.arms)

    def choose(self, scale: float = 1.0) -> Arm:
        """An untried arm first (seeded order), else the highest upper bound.

        Mean rewards are divided by ``scale`` (the largest reward seen), so the
        exploration weight is in units of the best reward.
        """
        order = torch.randperm(
            len(self.arms), generator=torch.Generator().manual_seed(self.seed)
        )
        for i in order.tolist():
            if self.counts[i] == 0:
                return self.arms[i]
        total = sum(self.counts)
        bounds = [
            s / n / (scale if scale > 0 else 1.0)
            + self.exploration * math.sqrt(math.log(max(total, 1.0 + 1e-9)) / n)
            for s, n in zip(self.sums, self.counts, strict=True)
        ]
        return self.arms[max(range(len(bounds)), key=bounds.__getitem__)]

    def update(self, arm: Arm, reward: float) -> None:
        """Discount the past, then credit ``reward`` to ``arm``."""
        self.counts = [n * self.discount for n in self.counts]
        self.sums = [s * self.discount for s in self.sums]
        i = self.arms.index(arm)
        self.counts[i] += 1.0
        self.sums[i] += reward


@dataclass(frozen=True, eq=False)
class SpineUpdate:
    """One device's reply, as the server reads it."""

    node: int
    state: Mapping[str, torch.Tensor]
    arm: Arm
    num_examples: int
    gain: float
    seconds: float


def raw_rewards(updates: Sequence[SpineUpdate], pace_quantile: float) -> list[float]:
    """``gain / max(seconds, pace)``; pace: ``pace_quantile`` of the OTHERS' seconds.

    With the default quantile 1 the pace is the slowest other device, so
    ``max(seconds, pace)`` is the synchronous round time as far as this
    device can change it: a device that is not the straggler gains nothing by
    working less, and the straggler's reward depends on its own choice only.
    """
    out = []
    for i, update in enumerate(updates):
        others = [u.seconds for j, u in enumerate(updates) if j != i]
        pace = (
            float(
                torch.quantile(torch.tensor(others, dtype=torch.float64), pace_quantile)
            )
            if others
            else 0.0
        )
        out.append(update.gain / max(update.seconds, pace, 1e-9))
    return out


@dataclass
class SpineServer:
    """Global model, per-device bandits, coverage-weighted HetLoRA merging."""

    config: FedSpineConfig
    global_state: State
    bandits: dict[int, DeviceBandit] = field(default_factory=dict)
    choices: dict[int, Arm] = field(default_factory=dict)
    history: list[dict[int, Arm]] = field(default_factory=list)
    # The bandits' means are divided by this: the largest |raw reward| so far
    # (normalise max), or with older rounds discounted (normalise decay).
    reward_scale: float = 0.0

    def _model(self) -> TinyTransformer:
        model = TinyTransformer()
        model.load_state_dict(self.global_state)
        return model

    def choose(self, nodes: Iterable[int]) -> dict[int, Arm]:
        """This round's (ratio, rank) per node."""
        out: dict[int, Arm] = {}
        for node in sorted(nodes):
            if self.config.policy == "fixed":
                out[node] = (self.config.fixed_ratio, self.config.fixed_rank)
                continue
            bandit = self.bandits.setdefault(
                node,
                DeviceBandit(
                    self.config.arms,
                    self.config.exploration,
                    self.config.discount,
                    seed=self.config.seed * 100_003 + node,
                ),
            )
            out[node] = bandit.choose(self.reward_scale)
        self.choices = out
        self.history.append(dict(out))
        return out

    def aggregate(self, updates: Sequence[SpineUpdate]) -> State:
        """Credit the bandits, then merge the LoRA/head updates by coverage."""
        if not updates:
            raise ValueError("aggregate needs at least one update")
        if self.config.policy == "ucb":
            raw = raw_rewards(updates, self.config.pace_quantile)
            if self.config.normalise == "gain":  # gains relative to the round's
                mean_gain = sum(abs(u.gain) for u in updates) / len(updates)
                raw = [r / mean_gain if mean_gain > 0 else 0.0 for r in raw]
            # (Not the round's mean: the straggler's time divides every
            # device's reward, and a per-round scale would cancel it.)
            kept = self.reward_scale
            if self.config.normalise == "decay":
                kept *= self.config.discount
            self.reward_scale = max([kept, *(abs(r) for r in raw)])
            for update, reward in zip(updates, raw, strict=True):
                if update.node in self.bandits:
                    self.bandits[update.node].update(update.arm, reward)
        model = self._model()
        sent = self.global_state
        num = {k: torch.zeros_like(sent[k]) for k in trainable_keys(model)}
        den = {k: torch.zeros_like(sent[k]) for k in trainable_keys(model)}
        for update in updates:
            ratio, rank = update.arm
            cov = coverage(model, rank, channel_masks(model, ratio))
            for key in num:
                delta = update.state[key] - sent[key]
                num[key] += update.num_examples * cov[key] * delta
                den[key] += update.num_examples * cov[key]
        merged = {k: v.clone() for k, v in sent.items()}
        for key in num:
            merged[key] = sent[key] + num[key] / den[key].clamp_min(1e-12)
        self.global_state = merged
        return merged

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """The global model's accuracy, pruned at ``target_sparsity``."""
        model = self._model()
        set_rank(model, LORA_SLOTS)
        prune(model, self.config.target_sparsity)
        return _eval(model, x, y)[0]


class FedSpine(FedAvg):
    """FedAvg's round loop; per-node arms from :class:`SpineServer`'s bandits."""

    def __init__(self, config: FedSpineConfig, **fedavg: Any) -> None:
        super().__init__(**fedavg)
        self.config = config
        self.server: SpineServer | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send every sampled node the global model and its (ratio, rank)."""
        if self.server is None:
            self.server = SpineServer(self.config, arrays.to_torch_state_dict())
        messages = list(super().configure_train(server_round, arrays, config, grid))
        arms = self.server.choose(m.metadata.dst_node_id for m in messages)
        out = []
        for message in messages:
            node = message.metadata.dst_node_id
            node_config = ConfigRecord(dict(config))
            node_config["server-round"] = server_round
            node_config[RATIO_KEY], node_config[RANK_KEY] = arms[node]
            content = RecordDict(
                {
                    self.arrayrecord_key: ArrayRecord(self.server.global_state),
                    self.configrecord_key: node_config,
                }
            )
            out.append(
                Message(
                    content,
                    dst_node_id=node,
                    message_type=MessageType.TRAIN,
                    group_id=str(server_round),
                )
            )
        log(INFO, "FedSpine configure_train: (ratio, rank) per node %s", arms)
        return out

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Credit each node's bandit with its gain per time; merge by coverage."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid or self.server is None:
            return None, None
        gain_key = GAIN_ACCURACY if self.config.gain == "accuracy" else GAIN_LOSS
        updates = []
        for reply in valid:
            arrays = next(iter(reply.content.array_records.values()))
            metrics = next(iter(reply.content.metric_records.values()))
            missing = [
                k for k in (gain_key, SECONDS, RATIO_KEY, RANK_KEY) if k not in metrics
            ]
            if missing:
                raise ValueError(
                    f"a FedSpine reply from node {reply.metadata.src_node_id} lacks"
                    f" metrics {missing}; does the ClientApp run strategy fedspine?"
                )
            updates.append(
                SpineUpdate(
                    reply.metadata.src_node_id,
                    arrays.to_torch_state_dict(),
                    (float(metrics[RATIO_KEY]), int(metrics[RANK_KEY])),  # type: ignore[arg-type]
                    int(metrics[self.weighted_by_key]),  # type: ignore[arg-type]
                    float(metrics[gain_key]),  # type: ignore[arg-type]
                    float(metrics[SECONDS]),  # type: ignore[arg-type]
                )
            )
        merged = self.server.aggregate(updates)
        log(
            INFO,
            "FedSpine aggregate_train: %s updates, seconds %s",
            len(updates),
            {u.node: round(u.seconds, 3) for u in updates},
        )
        metrics_out = self.train_metrics_aggr_fn(
            [reply.content for reply in valid], self.weighted_by_key
        )
        return ArrayRecord(merged), metrics_out


def fedspine_model(shape: ModelShape) -> nn.Module:
    """The tiny transformer (the shape's image fields do not apply to text)."""
    return TinyTransformer(num_classes=textcls.NUM_CLASSES)


def fedspine_train(
    model: nn.Module, task: LocalTraining
) -> tuple[TrainResult, dict[str, float | int]]:
    """The app's FedSpine client round: prune and tune at the server's arm."""
    if RATIO_KEY not in task.config or RANK_KEY not in task.config:
        raise ValueError(
            f"a FedSpine train message must carry {RATIO_KEY!r} and {RANK_KEY!r} in"
            " its config; is the server's strategy fedspine?"
        )
    if task.x.is_floating_point() or not isinstance(model, TinyTransformer):
        raise ValueError(
            "strategy fedspine fine-tunes a text model on token ids: set the"
            " workload's dataset to text"
        )
    ratio, rank = float(task.config[RATIO_KEY]), int(task.config[RANK_KEY])
    result = spine_train(
        model,
        task.x,
        task.y,
        ratio,
        rank,
        lr=task.optimizer.lr,
        epochs=task.epochs,
        batch_size=task.batch_size,
        seed=task.seed,
    )
    set_rank(model, LORA_SLOTS)
    prune(model, 0.0)
    return result.train, {
        RATIO_KEY: ratio,
        RANK_KEY: rank,
        GAIN_ACCURACY: result.gain_accuracy,
        GAIN_LOSS: result.gain_loss,
        SECONDS: result.seconds,
    }


CLIENT_SIDE = ClientSide(
    "fedspine", build_model=fedspine_model, local_train=fedspine_train
)


def pretrain(
    model: TinyTransformer, corpus: torch.Tensor, steps: int, lr: float, seed: int = 0
) -> float:
    """Next-token pre-training of the base weights (LoRA and head untouched).

    Returns the last step's loss.
    """
    keys = set(trainable_keys(model))
    params = [p for k, p in model.named_parameters() if k not in keys]
    for key, p in model.named_parameters():
        p.requires_grad_(key not in keys)
    optimizer = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    loss = torch.tensor(0.0)
    model.train()
    for _ in range(steps):
        batch = corpus[torch.randint(len(corpus), (32,), generator=generator)]
        optimizer.zero_grad(set_to_none=True)
        logits = model.lm(batch[:, :-1])
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)
        )
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    return float(loss.detach())
