"""MAS (merge and split): several FL tasks on the same clients, merged then split.

Five cheap tasks on the digits share each client's data (:data:`TASKS`):
the digit class (10-way), parity, ``>= 5``, "round shape" (0, 6, 8, 9 vs the
rest) and reconstruction of the 8x8 image (MSE). The model
(:class:`MultiTaskNet`) has one encoder slot per task and one head per task;
its ``assignment`` buffer says which encoder each task reads. A task group is
the set of tasks on one encoder.

Our design, the simplest honest one in one Flower run: the tasks train
MERGED (every task on encoder 0, loss = sum of the task losses) for
``merge_rounds`` rounds. In the last of them every client first measures
TAG-style look-ahead affinities on its own data (:func:`affinities`:
Z[i, j] = 1 - L_j(after an SGD step on task i's loss) / L_j(before), the step
on the shared encoder only) and sends them as the metric ``mas-affinity``.
The server averages them (example-weighted) and SPLITS the tasks into
``groups`` groups maximising within-group affinity, exhaustively over set
partitions (:func:`best_partition`). Each group then goes on as its own FL
task from the merged weights: its encoder slot starts as a copy of the
merged encoder, and from then on a task's gradients reach only its group's
encoder. The groups train in the same rounds, in the same message: what
travels is the encoder of every group in use plus the heads
(:meth:`MASClientSide.shared_state`), so bytes on the wire grow with the
number of groups, as they would with one FL task per group. The baselines
are ``merged`` (never split) and ``independent`` (one encoder per task from
round 1: five separate FL tasks).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
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

from instrumentation.schema import EventKind, EventSink
from strategies.client_side import ClientSide, LocalTraining, ModelShape
from strategies.settings_iii import MAS_TASKS, MASConfig
from workloads.training import TrainResult

TASKS = MAS_TASKS
ROUND_SHAPES = (0, 6, 8, 9)
# Train config key: measure affinities this round; reply metrics.
AFFINITY_KEY = "mas-affinity"
COMPUTE_METRIC = "compute-s"
POOLED = 8  # images are average-pooled to 8x8 (the digits' native size)
State = dict[str, torch.Tensor]


def task_targets(x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Each task's target for images ``x`` with digit labels ``y`` (TASKS order)."""
    rounds = torch.zeros_like(y)
    for digit in ROUND_SHAPES:
        rounds |= (y == digit).long()
    return [y, y % 2, (y >= 5).long(), rounds, pooled(x).flatten(1)]


def pooled(x: torch.Tensor) -> torch.Tensor:
    """Images average-pooled to 8x8."""
    factor = max(1, x.shape[-1] // POOLED)
    return F.avg_pool2d(x, factor) if factor > 1 else x


class MultiTaskNet(nn.Module):
    """One encoder slot per task, one head per task; ``assignment`` maps them.

    ``forward`` returns the class head's logits (so a plain evaluation of the
    model scores the digit-class task); :meth:`task_losses` gives every task's
    loss, running each encoder in use once.
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64) -> None:
        super().__init__()
        features = in_channels * POOLED * POOLED
        self.encoders = nn.ModuleList(
            nn.Sequential(
                nn.Linear(features, hidden),
                nn.ReLU(),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
            )
            for _ in TASKS
        )
        outputs = (10, 2, 2, 2, features)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in outputs)
        self.assignment: torch.Tensor
        self.register_buffer("assignment", torch.zeros(len(TASKS), dtype=torch.long))

    def codes(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Each encoder in use applied to ``x`` (pooled and flattened)."""
        flat = pooled(x).flatten(1)
        return {g: self.encoders[g](flat) for g in active_encoders(self)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The digit-class logits."""
        flat = pooled(x).flatten(1)
        out: torch.Tensor = self.heads[0](self.encoders[int(self.assignment[0])](flat))
        return out

    def task_losses(
        self, x: torch.Tensor, targets: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """The loss of every task (cross-entropy; MSE for reconstruction)."""
        codes = self.codes(x)
        losses = []
        for t, head in enumerate(self.heads):
            out = head(codes[int(self.assignment[t])])
            if TASKS[t] == "recon":
                losses.append(F.mse_loss(out, targets[t]))
            else:
                losses.append(F.cross_entropy(out, targets[t]))
        return torch.stack(losses)


def hidden_size(width: float) -> int:
    """The encoder width for a campaign's model-width (64 at 1.0, at least 8)."""
    return max(8, round(64 * width))


def build_mas_model(shape: ModelShape) -> nn.Module:
    """The multi-task model for ``shape`` (its architecture is not used)."""
    return MultiTaskNet(shape.in_channels, hidden_size(shape.width))


def active_encoders(model_or_assignment: nn.Module | torch.Tensor) -> list[int]:
    """The encoder slots some task reads, ascending."""
    assignment = (
        model_or_assignment.assignment
        if isinstance(model_or_assignment, nn.Module)
        else model_or_assignment
    )
    assert isinstance(assignment, torch.Tensor)
    return sorted({int(g) for g in assignment})


def shared_keys(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Keys that travel: the encoders in use, every head, the assignment."""
    used = {f"encoders.{g}." for g in active_encoders(state["assignment"])}
    return [
        k
        for k in state
        if not k.startswith("encoders.") or any(k.startswith(u) for u in used)
    ]


@dataclass(frozen=True)
class MASClientSide(ClientSide):
    """MAS's client half: only the encoders in use travel, either way."""

    def shared_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The encoders the assignment uses, the heads and the assignment."""
        state = model.state_dict()
        return {k: state[k] for k in shared_keys(state)}

    def load_global(self, model: nn.Module, arrays: ArrayRecord) -> None:
        """Load what the server sent; it must cover the encoders its assignment uses."""
        received = arrays.to_torch_state_dict()
        if "assignment" not in received:
            raise ValueError(
                "mas model: the server's arrays carry no 'assignment'; is the"
                " server's strategy mas?"
            )
        expected = {**model.state_dict(), "assignment": received["assignment"]}
        missing = sorted(set(shared_keys(expected)) - set(received))
        unexpected = sorted(set(received) - set(model.state_dict()))
        if missing or unexpected:
            raise ValueError(
                f"mas model: the server's arrays miss keys {missing[:5]} and bring"
                f" unknown keys {unexpected[:5]}; server and client must build the"
                " same model (strategy mas, same model-width)"
            )
        model.load_state_dict(received, strict=False)


def affinities(
    model: MultiTaskNet,
    x: torch.Tensor,
    targets: Sequence[torch.Tensor],
    *,
    lr: float,
    batches: int,
    batch_size: int,
    seed: int = 0,
) -> torch.Tensor:
    """TAG look-ahead affinities Z[i, j], averaged over ``batches`` minibatches.

    For each batch and task i: one SGD step of size ``lr`` on task i's loss,
    applied to the encoder task i reads (heads unchanged), then
    Z[i, j] = 1 - L_j(after) / L_j(before). Positive: a step for i helps j.
    The model is left as it was.
    """
    n = len(TASKS)
    total = torch.zeros(n, n)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=generator)
    done = 0
    for b in range(batches):
        batch = order[(b * batch_size) % len(x) :][:batch_size]
        if len(batch) == 0:
            break
        bx, bt = x[batch], [t[batch] for t in targets]
        before = model.task_losses(bx, bt)
        steps = []
        for i in range(n):
            params = list(model.encoders[int(model.assignment[i])].parameters())
            grads = torch.autograd.grad(before[i], params, retain_graph=True)
            steps.append((params, grads))
        reference = before.detach().clamp_min(1e-12)
        with torch.no_grad():
            for i, (params, grads) in enumerate(steps):
                saved = [p.detach().clone() for p in params]
                for p, g in zip(params, grads, strict=True):
                    p.sub_(lr * g)
                after = model.task_losses(bx, bt)
                for p, s in zip(params, saved, strict=True):
                    p.copy_(s)
                total[i] += 1 - after / reference
        done += 1
    return total / max(done, 1)


def multitask_train(
    model: MultiTaskNet,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float,
    momentum: float = 0.9,
    epochs: int = 1,
    batch_size: int = 32,
    seed: int = 0,
) -> TrainResult:
    """SGD on the sum of the task losses, in place (loss: the mean summed loss)."""
    targets = task_targets(x, y)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    generator = torch.Generator().manual_seed(seed)
    steps, loss_sum, correct = 0, 0.0, 0
    model.train()
    for _ in range(epochs):
        loss_sum, correct = 0.0, 0
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            losses = model.task_losses(x[batch], [t[batch] for t in targets])
            loss = losses.sum()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            steps += 1
            loss_sum += loss.item() * len(batch)
            with torch.no_grad():
                correct += int((model(x[batch]).argmax(1) == y[batch]).sum())
    return TrainResult(
        loss=loss_sum / max(len(x), 1),
        accuracy=correct / max(len(x), 1),
        num_examples=len(x),
        steps=steps,
    )


def task_test_losses(
    model: MultiTaskNet, x: torch.Tensor, y: torch.Tensor
) -> list[float]:
    """Every task's loss on ``(x, y)`` (no gradients)."""
    model.eval()
    with torch.no_grad():
        return [float(v) for v in model.task_losses(x, task_targets(x, y))]


def partitions(n: int, k: int) -> Iterable[tuple[tuple[int, ...], ...]]:
    """Every partition of tasks ``0..n-1`` into exactly ``k`` non-empty groups."""
    for labels in itertools.product(range(k), repeat=n):
        # canonical: group g first appears before group g + 1
        seen: list[int] = []
        for label in labels:
            if label not in seen:
                seen.append(label)
        if seen != list(range(k)):
            continue
        yield tuple(tuple(t for t in range(n) if labels[t] == g) for g in range(k))


def partition_score(affinity: torch.Tensor, groups: Sequence[Sequence[int]]) -> float:
    """TAG's score: per task, the mean affinity onto it from its group's others."""
    score = 0.0
    for group in groups:
        for j in group:
            others = [i for i in group if i != j]
            if others:
                score += float(sum(affinity[i, j] for i in others)) / len(others)
    return score


def best_partition(affinity: torch.Tensor, k: int) -> tuple[tuple[int, ...], ...]:
    """The partition into ``k`` groups with the highest :func:`partition_score`."""
    n = affinity.shape[0]
    return max(partitions(n, k), key=lambda g: partition_score(affinity, g))


def split_state(
    state: Mapping[str, torch.Tensor], groups: Sequence[Sequence[int]]
) -> State:
    """The merged state split: group g's encoder a copy of the merged encoder."""
    source = int(state["assignment"][0])
    prefix = f"encoders.{source}."
    out = {k: v.clone() for k, v in state.items()}
    assignment = torch.zeros(len(TASKS), dtype=torch.long)
    for g, group in enumerate(groups):
        for t in group:
            assignment[t] = g
        for k, v in state.items():
            if k.startswith(prefix):
                out[f"encoders.{g}." + k[len(prefix) :]] = v.clone()
    out["assignment"] = assignment
    return out


def average(updates: Sequence[tuple[Mapping[str, torch.Tensor], int]]) -> State:
    """Example-weighted mean of every key (the assignment is copied)."""
    total = sum(n for _, n in updates)
    out: State = {}
    for key, value in updates[0][0].items():
        if not value.is_floating_point():
            out[key] = value.clone()
            continue
        stacked = torch.stack([s[key].double() * (n / total) for s, n in updates])
        out[key] = stacked.sum(0).to(value.dtype)
    return out


class MAS(FedAvg):
    """FedAvg's round loop; merged rounds, affinity round, split, group rounds."""

    def __init__(
        self, config: MASConfig, sink: EventSink | None = None, **fedavg: Any
    ) -> None:
        super().__init__(**fedavg)
        self.config = config
        self.sink = sink
        self.state: State | None = None
        self.groups: tuple[tuple[int, ...], ...] | None = None
        self.affinity: torch.Tensor | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send the encoders in use and the heads; ask for affinities in round R1."""
        if self.state is None:
            self.state = arrays.to_torch_state_dict()
            if self.config.mode == "independent":
                self.groups = tuple((t,) for t in range(len(TASKS)))
                self.state = split_state(self.state, self.groups)
        measure = (
            self.config.mode == "mas"
            and self.groups is None
            and server_round >= self.config.merge_rounds
        )
        messages = list(super().configure_train(server_round, arrays, config, grid))
        sent = {k: self.state[k] for k in shared_keys(self.state)}
        out = []
        for message in messages:
            node_config = ConfigRecord(dict(config))
            node_config["server-round"] = server_round
            node_config[AFFINITY_KEY] = int(measure)
            content = RecordDict(
                {
                    self.arrayrecord_key: ArrayRecord(sent),
                    self.configrecord_key: node_config,
                }
            )
            out.append(
                Message(
                    content,
                    dst_node_id=message.metadata.dst_node_id,
                    message_type=MessageType.TRAIN,
                    group_id=str(server_round),
                )
            )
        log(
            INFO,
            "MAS configure_train: round %s, encoders %s, affinities %s",
            server_round,
            active_encoders(self.state["assignment"]),
            "asked" if measure else "not asked",
        )
        return out

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Average what came back; after the affinity round, split the tasks."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid or self.state is None:
            return None, None
        updates, measured = [], []
        for reply in valid:
            arrays = next(iter(reply.content.array_records.values()))
            metrics = next(iter(reply.content.metric_records.values()))
            n = int(metrics[self.weighted_by_key])  # type: ignore[arg-type]
            updates.append((arrays.to_torch_state_dict(), n))
            if AFFINITY_KEY in metrics:
                values = metrics[AFFINITY_KEY]
                assert isinstance(values, list)
                measured.append((torch.tensor(values, dtype=torch.float64), n))
        self.state.update(average(updates))
        if measured and self.groups is None:
            total = sum(n for _, n in measured)
            mean = sum(v * (n / total) for v, n in measured)
            assert isinstance(mean, torch.Tensor)
            self.split(mean.reshape(len(TASKS), len(TASKS)), server_round)
        metrics_out = self.train_metrics_aggr_fn(
            [reply.content for reply in valid], self.weighted_by_key
        )
        return ArrayRecord(self.state), metrics_out

    def split(self, affinity: torch.Tensor, server_round: int) -> None:
        """Split the merged model into the best ``groups`` groups by ``affinity``."""
        assert self.state is not None
        self.affinity = affinity
        self.groups = best_partition(affinity, self.config.groups)
        self.state = split_state(self.state, self.groups)
        names = [[TASKS[t] for t in g] for g in self.groups]
        log(INFO, "MAS split after round %s: groups %s", server_round, names)
        if self.sink is not None:
            self.sink.append(
                EventKind.METRICS,
                round=server_round,
                scope="mas",
                values={
                    "affinity": [float(v) for v in affinity.flatten()],
                    "groups": [int(v) for v in self.state["assignment"]],
                },
            )


def mas_train(
    model: nn.Module, task: LocalTraining
) -> tuple[TrainResult, dict[str, Any]]:
    """The app's MAS client round: multi-task SGD, then affinities if asked."""
    if AFFINITY_KEY not in task.config:
        raise ValueError(
            f"a MAS train message must carry {AFFINITY_KEY!r} in its config; is the"
            " server's strategy mas?"
        )
    assert isinstance(model, MultiTaskNet)
    start = time.process_time()
    result = multitask_train(
        model,
        task.x,
        task.y,
        lr=task.optimizer.lr,
        momentum=task.optimizer.momentum,
        epochs=task.epochs,
        batch_size=task.batch_size,
        seed=task.seed,
    )
    extra: dict[str, Any] = {}
    if int(task.config[AFFINITY_KEY]):
        batches = int(task.parameters.get("affinity_batches", 4))
        z = affinities(
            model,
            task.x,
            task_targets(task.x, task.y),
            lr=task.optimizer.lr,
            batches=batches,
            batch_size=task.batch_size,
            seed=task.seed,
        )
        extra[AFFINITY_KEY] = [float(v) for v in z.flatten()]
    extra[COMPUTE_METRIC] = time.process_time() - start
    return result, extra


CLIENT_SIDE = MASClientSide("mas", build_model=build_mas_model, local_train=mas_train)
