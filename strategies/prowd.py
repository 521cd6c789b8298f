"""ProWD (Yoon et al., ICML 2022): bitwidth-heterogeneous FL, progressive dequantiser.

Clients train at different bitwidths: 32 (full precision) or ``b`` bits,
uniform symmetric levels per tensor with a straight-through estimator
(:func:`quantised_train`: the forward and backward passes see the quantised
weights, the step updates full-precision latent weights). Weight tensors (2-D
and up: convolution and linear weights) are quantised; biases stay full
precision. A client sends its quantised weights and its bitwidth (metric
``bitwidth``). The server re-quantises the global model to each client's
bitwidth before sending it (:meth:`BitwidthServer.model_for`).

The server (:class:`BitwidthServer`) aggregates one of three ways:

* ``naive``: the example-weighted mean of every update as received;
* ``grouped``: one model per bitwidth, each the mean of its own group; the
  full-precision group's model is the global model;
* ``prowd``: a trainable PROGRESSIVE DEQUANTISER lifts low-bit weights stage by
  stage along the bitwidth ladder (2 -> 4 -> ... -> 32; :class:`Dequantizer`).
  Each stage is a small per-element MLP that reads a weight (in units of its
  tensor's quantisation step) and its output unit's mean and mean magnitude,
  and predicts the correction to the next bitwidth. It is trained every round
  on the full-precision clients' weights: input their weights quantised to
  ``b``, target the same weights at the next bitwidth. A group's update of a
  tensor is the change of its dequantised weights from the dequantised model it
  was sent (so the dequantiser's own bias cancels). SELECTIVE aggregation: a
  low-bit group's update of a weight tensor is averaged in only where it is
  compatible with the full-precision group's, i.e. their cosine similarity is
  at least ``compatibility``; biases are always averaged. With no
  full-precision client in a round, every group is used.

The paper's exact dequantiser losses and selection rule are not public (no
code); these are our reading, and their parameters are in
:class:`~strategies.settings.ProWDConfig`.
"""

from __future__ import annotations

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

from strategies.client_side import ClientSide, LocalTraining, plain_model
from strategies.settings import FULL_PRECISION, ProWDConfig
from workloads.training import TrainResult

State = dict[str, torch.Tensor]
# The train config key that tells a client its bitwidth, and its reply metric.
BITWIDTH_KEY = "prowd-bitwidth"
BITWIDTH_METRIC = "bitwidth"
# Clip range of the quantiser: this many standard deviations (or the max |w|).
CLIP_STDS = 3.0
_FEATURES = 3
_HIDDEN = 16
_SAMPLE = 4096


def is_quantised(value: torch.Tensor) -> bool:
    """Weight tensors (2-D and up) are quantised; biases and scalars are not."""
    return value.ndim >= 2 and value.is_floating_point()


def quantisation_step(w: torch.Tensor, bits: int) -> float:
    """The spacing of ``bits``-bit levels for ``w`` (0 when ``w`` is all zeros)."""
    levels = 2 ** (bits - 1) - 1
    clip = min(float(w.abs().max()), CLIP_STDS * float(w.std())) if w.numel() > 1 else 0
    return clip / levels if clip > 0 else 0.0


def quantize(w: torch.Tensor, bits: int) -> torch.Tensor:
    """``w`` on ``2**(bits-1) - 1`` symmetric levels each side of 0 (32: unchanged).

    The clip range is ``min(max|w|, 3 std(w))``; 2 bits gives {-c, 0, c}.
    """
    if bits >= FULL_PRECISION:
        return w.clone()
    step = quantisation_step(w, bits)
    if step == 0:
        return torch.zeros_like(w)
    levels = 2 ** (bits - 1) - 1
    return torch.clamp(torch.round(w / step), -levels, levels) * step


def quantize_state(state: Mapping[str, torch.Tensor], bits: int) -> State:
    """Every weight tensor of ``state`` quantised to ``bits``; the rest copied."""
    return {
        k: quantize(v, bits) if is_quantised(v) else v.clone() for k, v in state.items()
    }


def quantised_train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    bits: int,
    *,
    lr: float,
    momentum: float = 0.9,
    epochs: int = 1,
    batch_size: int = 32,
    seed: int = 0,
) -> TrainResult:
    """Train ``model`` at ``bits`` with a straight-through estimator, in place.

    Each step the weight tensors are replaced by their quantised values for
    the forward and backward pass, then restored to the latent full-precision
    weights that the SGD step updates with those gradients. At the end the
    model holds the quantised weights, which is what the client sends.
    """
    quantised = [p for p in model.parameters() if is_quantised(p)]
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    generator = torch.Generator().manual_seed(seed)
    steps, loss_sum, correct = 0, 0.0, 0
    model.train()
    for _ in range(epochs):
        loss_sum, correct = 0.0, 0
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            latent = [p.detach().clone() for p in quantised]
            with torch.no_grad():
                for p in quantised:
                    p.copy_(quantize(p, bits))
            optimizer.zero_grad(set_to_none=True)
            logits = model(x[batch])
            loss = F.cross_entropy(logits, y[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            with torch.no_grad():
                for p, w in zip(quantised, latent, strict=True):
                    p.copy_(w)
            optimizer.step()
            steps += 1
            loss_sum += loss.item() * len(batch)
            correct += int((logits.argmax(1) == y[batch]).sum())
    with torch.no_grad():
        for p in quantised:
            p.copy_(quantize(p, bits))
    return TrainResult(
        loss=loss_sum / len(x),
        accuracy=correct / len(x),
        num_examples=len(x),
        steps=steps,
    )


def _features(w: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Per element: weight, unit mean, unit mean magnitude (in units of std(w))."""
    unit = max(float(w.std()), 1e-8) if w.numel() > 1 else 1.0
    rows = (w / unit).reshape(w.shape[0], -1)
    mean = rows.mean(1, keepdim=True).expand_as(rows)
    magnitude = rows.abs().mean(1, keepdim=True).expand_as(rows)
    return torch.stack([rows, mean, magnitude], -1).reshape(-1, _FEATURES), unit


class Dequantizer:
    """Progressive dequantiser: one per-element MLP stage per rung of the ladder."""

    def __init__(self, bitwidths: Iterable[int], seed: int = 0) -> None:
        self.ladder = sorted({*bitwidths, FULL_PRECISION})
        torch.manual_seed(seed)
        self.stages: dict[int, nn.Sequential] = {}
        for low in self.ladder[:-1]:
            head = nn.Linear(_HIDDEN, 1)
            nn.init.zeros_(head.weight)  # every stage starts as the identity
            nn.init.zeros_(head.bias)
            self.stages[low] = nn.Sequential(
                nn.Linear(_FEATURES, _HIDDEN), nn.Tanh(), head
            )
        self.last_loss: dict[int, float] = {}

    def _next(self, bits: int) -> int:
        return self.ladder[self.ladder.index(bits) + 1]

    def _stage(self, bits: int, w: torch.Tensor) -> torch.Tensor:
        features, unit = _features(w)
        correction: torch.Tensor = self.stages[bits](features)
        return w + correction.reshape(w.shape) * unit

    def lift(self, w: torch.Tensor, bits: int) -> torch.Tensor:
        """``w`` (at ``bits``) lifted stage by stage to full precision."""
        if bits not in self.ladder:
            raise ValueError(f"bitwidth {bits} is not on the ladder {self.ladder}")
        with torch.no_grad():
            while bits < FULL_PRECISION:
                w = self._stage(bits, w)
                bits = self._next(bits)
        return w

    def lift_state(self, state: Mapping[str, torch.Tensor], bits: int) -> State:
        """Every weight tensor lifted from ``bits``; the rest copied."""
        return {
            k: self.lift(v, bits) if is_quantised(v) else v.clone()
            for k, v in state.items()
        }

    def fit(
        self,
        full_precision: Sequence[Mapping[str, torch.Tensor]],
        steps: int,
        lr: float,
    ) -> None:
        """Train every stage on full-precision weights: ``b`` bits -> next rung."""
        tensors = [v for s in full_precision for v in s.values() if is_quantised(v)]
        if not tensors or steps == 0:
            return
        generator = torch.Generator().manual_seed(len(self.last_loss))
        for low, stage in self.stages.items():
            high = self._next(low)
            pairs = []
            for w in tensors:
                source = quantize(w, low)
                features, unit = _features(source)
                target = (quantize(w, high) - source).reshape(-1, 1) / unit
                pairs.append((features, target))
            features = torch.cat([f for f, _ in pairs])
            target = torch.cat([t for _, t in pairs])
            optimizer = torch.optim.Adam(stage.parameters(), lr=lr)
            for _ in range(steps):
                pick = torch.randint(
                    0,
                    len(features),
                    (min(_SAMPLE, len(features)),),
                    generator=generator,
                )
                optimizer.zero_grad(set_to_none=True)
                loss = F.mse_loss(stage(features[pick]), target[pick])
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
            self.last_loss[low] = loss.item()


@dataclass(frozen=True, eq=False)
class BitwidthUpdate:
    """One client's reply: its (quantised) weights, bitwidth and example count."""

    state: Mapping[str, torch.Tensor]
    bits: int
    num_examples: int


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two tensors (0 if either is all zeros)."""
    norm = float(a.norm() * b.norm())
    return float((a * b).sum()) / norm if norm > 0 else 0.0


def _mean(updates: Sequence[BitwidthUpdate], states: Sequence[State]) -> State:
    total = sum(u.num_examples for u in updates)
    weights = [u.num_examples / total for u in updates]
    return {
        k: torch.stack([s[k] * w for s, w in zip(states, weights, strict=True)]).sum(0)
        for k in states[0]
    }


@dataclass
class BitwidthServer:
    """The server's state and rule: global model, group models, dequantiser."""

    config: ProWDConfig
    global_state: State
    groups: dict[int, State] = field(default_factory=dict)
    dequantizer: Dequantizer | None = None
    # Per round: which (key, bitwidth) updates were left out as incompatible.
    last_rejected: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.dequantizer is None:
            self.dequantizer = Dequantizer(self.config.bitwidths, self.config.seed)

    def model_for(self, bits: int) -> State:
        """What a ``bits``-bit client receives: its model, re-quantised."""
        source = self.groups.get(bits, self.global_state)
        if self.config.aggregation != "grouped":
            source = self.global_state
        return quantize_state(source, bits)

    def aggregate(self, updates: Sequence[BitwidthUpdate]) -> State:
        """Merge one round's updates by the configured rule; return the global model."""
        if not updates:
            raise ValueError("aggregate needs at least one update")
        by_bits: dict[int, list[BitwidthUpdate]] = {}
        for update in updates:
            by_bits.setdefault(update.bits, []).append(update)
        if self.config.aggregation == "naive":
            self.global_state = _mean(updates, [dict(u.state) for u in updates])
        elif self.config.aggregation == "grouped":
            for bits, group in by_bits.items():
                self.groups[bits] = _mean(group, [dict(u.state) for u in group])
            if FULL_PRECISION in self.groups:
                self.global_state = self.groups[FULL_PRECISION]
        else:
            self.global_state = self._selective(by_bits)
        return self.global_state

    def _selective(self, by_bits: Mapping[int, Sequence[BitwidthUpdate]]) -> State:
        """ProWD: dequantise, then average only compatible updates per tensor."""
        assert self.dequantizer is not None
        full = by_bits.get(FULL_PRECISION, [])
        self.dequantizer.fit(
            [dict(u.state) for u in full],
            self.config.dequantizer_steps,
            self.config.dequantizer_lr,
        )
        previous = self.global_state
        deltas: dict[int, State] = {}
        weights: dict[int, int] = {}
        for bits, group in by_bits.items():
            lifted = [self.dequantizer.lift_state(u.state, bits) for u in group]
            sent = self.dequantizer.lift_state(quantize_state(previous, bits), bits)
            mean = _mean(group, lifted)
            deltas[bits] = {k: mean[k] - sent[k] for k in mean}
            weights[bits] = sum(u.num_examples for u in group)
        self.last_rejected = []
        merged: State = {}
        for key, value in previous.items():
            used = [
                bits
                for bits in deltas
                if bits == FULL_PRECISION
                or FULL_PRECISION not in deltas
                or not is_quantised(value)
                or cosine(deltas[bits][key], deltas[FULL_PRECISION][key])
                >= self.config.compatibility
            ]
            self.last_rejected += [(key, b) for b in deltas if b not in used]
            total = sum(weights[b] for b in used)
            step = sum(deltas[b][key] * (weights[b] / total) for b in used)
            merged[key] = value + step
        return merged


def assign_bitwidths(
    node_ids: Iterable[int], bitwidths: Sequence[int]
) -> dict[int, int]:
    """Bitwidths handed to nodes in node-id order, cyclically."""
    return {
        node: bitwidths[i % len(bitwidths)] for i, node in enumerate(sorted(node_ids))
    }


class ProWD(FedAvg):
    """FedAvg's round loop, per-node bitwidths, :class:`BitwidthServer` merging."""

    def __init__(self, config: ProWDConfig, **fedavg: Any) -> None:
        super().__init__(**fedavg)
        self.config = config
        self.server: BitwidthServer | None = None
        self.bitwidths: dict[int, int] = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send each sampled node the global model re-quantised to its bitwidth."""
        if self.server is None:
            self.server = BitwidthServer(self.config, arrays.to_torch_state_dict())
        messages = list(super().configure_train(server_round, arrays, config, grid))
        new_nodes = [m.metadata.dst_node_id for m in messages]
        if any(n not in self.bitwidths for n in new_nodes):
            self.bitwidths = assign_bitwidths(
                {*self.bitwidths, *new_nodes}, self.config.bitwidths
            )
        out = []
        for message in messages:
            node = message.metadata.dst_node_id
            bits = self.bitwidths[node]
            node_config = ConfigRecord(dict(config))
            node_config["server-round"] = server_round
            node_config[BITWIDTH_KEY] = bits
            content = RecordDict(
                {
                    self.arrayrecord_key: ArrayRecord(self.server.model_for(bits)),
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
        log(
            INFO,
            "ProWD configure_train: bitwidths %s (%s)",
            {n: self.bitwidths[n] for n in sorted(new_nodes)},
            self.config.aggregation,
        )
        return out

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Merge the valid replies by bitwidth; the global model is full precision."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid or self.server is None:
            return None, None
        updates = []
        for reply in valid:
            arrays = next(iter(reply.content.array_records.values()))
            metrics = next(iter(reply.content.metric_records.values()))
            updates.append(
                BitwidthUpdate(
                    arrays.to_torch_state_dict(),
                    int(metrics[BITWIDTH_METRIC]),  # type: ignore[arg-type]
                    int(metrics[self.weighted_by_key]),  # type: ignore[arg-type]
                )
            )
        merged = self.server.aggregate(updates)
        log(
            INFO,
            "ProWD aggregate_train: %s updates at bitwidths %s, %s incompatible",
            len(updates),
            sorted(u.bits for u in updates),
            len(self.server.last_rejected),
        )
        metrics_out = self.train_metrics_aggr_fn(
            [reply.content for reply in valid], self.weighted_by_key
        )
        return ArrayRecord(merged), metrics_out


def prowd_train(
    model: nn.Module, task: LocalTraining
) -> tuple[TrainResult, dict[str, float | int]]:
    """The app's ProWD client round: train at the server's bitwidth for this node."""
    if BITWIDTH_KEY not in task.config:
        raise ValueError(
            f"a ProWD train message must carry {BITWIDTH_KEY!r} in its config; is"
            " the server's strategy prowd?"
        )
    bits = int(task.config[BITWIDTH_KEY])
    result = quantised_train(
        model,
        task.x,
        task.y,
        bits,
        lr=task.optimizer.lr,
        momentum=task.optimizer.momentum,
        epochs=task.epochs,
        batch_size=task.batch_size,
        seed=task.seed,
    )
    return result, {BITWIDTH_METRIC: bits}


CLIENT_SIDE = ClientSide("plain", build_model=plain_model, local_train=prowd_train)
