"""Heterogeneous model reduction: channel sub-models, coverage-weighted aggregation.

One mechanism, three extraction rules, as unified in "Every Parameter Matters"
(Zhou et al., NeurIPS 2023):

* ``static``  (HeteroFL, Diao et al. 2021): a client of capacity ratio ``r``
  always gets the first ``ceil(r * C)`` channels of every hidden layer.
* ``random``  (Federated Dropout, Caldas et al. 2018): a fresh random subset of
  ``ceil(r * C)`` channels per client, layer and round.
* ``rolling`` (FedRolex, Alam et al. 2022): a window of ``ceil(r * C)``
  channels whose start advances each round. With ``rolling_tile=True`` (the
  default) the clients' windows are laid back to back around the channel ring,
  so that whenever the ratios sum to at least 1 every channel is in some
  client's window every round; ``rolling_tile=False`` gives every client the
  same window start, as in FedRolex's public code. With ``rolling_drift=True``
  (the default) the window of the j-th channel group advances
  ``(j + 1) * rolling_step`` channels per round instead of ``rolling_step``:
  when all layers' windows move in lockstep (FedRolex), a weight joining
  channel ``o`` of one layer to channel ``i`` of an equally wide layer is never
  trained if ``o`` and ``i`` are further apart than the window, so part of the
  model is never covered; drifting windows eventually cover every weight
  (after a number of rounds of the order of the layer widths).

Channel-sliced sub-models cover a weight only when one client holds both of
its channels, so without a full-capacity client ``gamma-round`` is 0 for every
rule as soon as two reduced layers follow each other; what separates the rules
is whether every weight gets covered over the rounds
(``never-covered-fraction``), which static never achieves.

A :class:`ReductionPlan` says, for every state-dict key, which channel groups
each tensor axis is made of, so masks stay consistent across layers: the output
channels kept in a convolution are the input channels kept in its consumer(s)
and in the BatchNorm after it. :func:`plan_from_model` derives it for
conv/linear stacks and SqueezeNet Fire modules (concatenated expands).

The server averages every scalar parameter over the clients whose mask covered
it, weighted by their example counts; a parameter nobody covered keeps its
value. Per round it reports ``gamma-round`` (the minimum over parameters of the
number of clients covering it this round), ``gamma-star`` (the minimum of
``gamma-round`` over the rounds so far: the paper's minimum coverage index) and
``never-covered-fraction`` (the share of parameters no client has covered since
the first round).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from logging import INFO

import numpy as np
import numpy.typing as npt
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import sample_nodes
from flwr.supercore import log

from strategies.submodels import (
    CAPACITY_KEY,
    CAPACITY_QUERY,
    CAPACITY_RECORD,
    EXTRACTION_MODES,
    MASK_KEY,
    MODE_KEY,
    NODE_NAME_KEY,
    RATIO_KEY,
    ChannelMask,
    ExtractionMode,
    IndexArray,
    NDArray,
    ReductionPlan,
    StateArrays,
    SubmodelAssignment,
    attach_scaler,
    axis_indices,
    build_submodel,
    capacity_reply,
    declared_capacity,
    extract_submodel,
    kept_channels,
    make_mask,
    mask_from_json,
    mask_to_json,
    plan_from_model,
    read_assignment,
    round_masks,
)

__all__ = [
    "CAPACITY_KEY",
    "CAPACITY_QUERY",
    "CAPACITY_RECORD",
    "EXTRACTION_MODES",
    "MASK_KEY",
    "MODE_KEY",
    "NODE_NAME_KEY",
    "RATIO_KEY",
    "Aggregate",
    "ChannelMask",
    "ClientResult",
    "CoverageTracker",
    "ExtractionMode",
    "HeteroFL",
    "IndexArray",
    "NDArray",
    "ReductionPlan",
    "StateArrays",
    "SubmodelAssignment",
    "aggregate_by_coverage",
    "attach_scaler",
    "build_submodel",
    "capacity_reply",
    "declared_capacity",
    "extract_submodel",
    "kept_channels",
    "make_mask",
    "mask_from_json",
    "mask_to_json",
    "plan_from_model",
    "read_assignment",
    "round_masks",
]


@dataclass(frozen=True)
class ClientResult:
    """One client's trained sub-model, the mask it was cut with, and its weight."""

    arrays: StateArrays
    mask: ChannelMask
    weight: float

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ValueError(f"client weight must be > 0, got {self.weight!r}")


@dataclass(frozen=True)
class Aggregate:
    """The new global state and how many clients covered each parameter."""

    state: dict[str, NDArray]
    coverage: dict[str, npt.NDArray[np.int64]]

    @property
    def min_coverage(self) -> int:
        """Minimum over all parameters of the number of clients covering it."""
        return min(int(c.min()) for c in self.coverage.values() if c.size)


def aggregate_by_coverage(
    plan: ReductionPlan, state: StateArrays, results: Sequence[ClientResult]
) -> Aggregate:
    """Average every parameter over the clients that covered it; keep the rest.

    A parameter covered by clients ``S`` becomes ``sum_i w_i x_i / sum_i w_i``
    over ``i`` in ``S``; a parameter nobody covered keeps its value in
    ``state``. Non-floating tensors (e.g. ``num_batches_tracked``) keep theirs.
    """
    new_state: dict[str, NDArray] = {}
    coverage: dict[str, npt.NDArray[np.int64]] = {}
    for key, full in state.items():
        sums = np.zeros(full.shape, dtype=np.float64)
        weights = np.zeros(full.shape, dtype=np.float64)
        counts = np.zeros(full.shape, dtype=np.int64)
        for result in results:
            local = np.asarray(result.arrays[key], dtype=np.float64)
            index = np.ix_(*axis_indices(plan, result.mask, key, full.shape))
            if local.shape != sums[index].shape:
                raise ValueError(
                    f"client array {key!r} has shape {local.shape} but its mask"
                    f" selects {sums[index].shape}; was it cut with this mask?"
                )
            # Indices within one mask are unique, so += on a fancy index is exact.
            sums[index] += result.weight * local
            weights[index] += result.weight
            counts[index] += 1
        coverage[key] = counts
        if not np.issubdtype(full.dtype, np.floating):
            new_state[key] = full.copy()
            continue
        covered = counts > 0
        merged = np.array(full, dtype=np.float64, copy=True)
        merged[covered] = sums[covered] / weights[covered]
        new_state[key] = merged.astype(full.dtype)
    return Aggregate(new_state, coverage)


@dataclass
class CoverageTracker:
    """Running coverage statistics over rounds: Gamma* and never-covered share."""

    gamma_star: int | None = None
    ever_covered: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)

    def update(self, coverage: Mapping[str, npt.NDArray[np.int64]]) -> dict[str, float]:
        """Fold in one round's coverage; return this round's metrics."""
        gamma_round = min(int(c.min()) for c in coverage.values() if c.size)
        self.gamma_star = (
            gamma_round
            if self.gamma_star is None
            else min(self.gamma_star, gamma_round)
        )
        for key, counts in coverage.items():
            seen = self.ever_covered.get(key)
            now = counts > 0
            self.ever_covered[key] = now if seen is None else (seen | now)
        return {
            "gamma-round": float(gamma_round),
            "gamma-star": float(self.gamma_star),
            "never-covered-fraction": self.never_covered_fraction,
        }

    @property
    def never_covered_fraction(self) -> float:
        """Share of scalar parameters no client has covered in any round so far."""
        total = sum(v.size for v in self.ever_covered.values())
        never = sum(int((~v).sum()) for v in self.ever_covered.values())
        return never / total if total else 0.0


# --- server strategy ---------------------------------------------------------


def _numpy_state(arrays: ArrayRecord) -> dict[str, NDArray]:
    return {key: array.numpy() for key, array in arrays.items()}


def _array_record(state: StateArrays) -> ArrayRecord:
    return ArrayRecord(
        {key: Array(np.ascontiguousarray(v)) for key, v in state.items()}
    )


class HeteroFL(FedAvg):
    """FedAvg with per-client channel sub-models and coverage-weighted averaging.

    Parameters
    ----------
    plan
        The model's channel plan (:func:`plan_from_model`).
    mode
        ``static``, ``random`` or ``rolling`` sub-model extraction.
    ratios
        Capacity ratios handed out, cyclically in ascending node-id order, to
        the sampled nodes that declare no capacity of their own (node ids are
        only known at run time).
    ratio_of
        Optional ``node_id -> ratio``; ``None`` means "not known here".
    capacity_from_nodes
        Ask each node, before its first round, for the ``capacity-ratio`` of
        its node config (a ``query.capacity`` message; the inventory's
        ``node_config`` sets it). A node that declares none, answers with an
        error or not within ``capacity_timeout_s`` gets one of ``ratios``.
    seed
        Seed of the random masks.
    rolling_step, rolling_tile, rolling_drift
        See :func:`round_masks`.
    on_coverage
        Called after every round's aggregation with the round and its
        coverage metrics (``gamma-round``, ``gamma-star``,
        ``never-covered-fraction``), e.g. to write them to the event log.
    **fedavg
        Passed to :class:`flwr.serverapp.strategy.FedAvg`.
    """

    def __init__(
        self,
        plan: ReductionPlan,
        mode: ExtractionMode = "rolling",
        ratios: Sequence[float] = (1.0,),
        ratio_of: Callable[[int], float | None] | None = None,
        capacity_from_nodes: bool = False,
        capacity_timeout_s: float = 30.0,
        seed: int = 0,
        rolling_step: int = 1,
        rolling_tile: bool = True,
        rolling_drift: bool = True,
        on_coverage: Callable[[int, dict[str, float]], None] | None = None,
        **fedavg: object,
    ) -> None:
        super().__init__(**fedavg)  # type: ignore[arg-type]
        if mode not in EXTRACTION_MODES:
            raise ValueError(
                f"unknown extraction mode {mode!r}; use {EXTRACTION_MODES}"
            )
        if not ratios:
            raise ValueError("ratios must name at least one capacity ratio")
        for ratio in ratios:
            kept_channels(1, ratio)  # validates the range
        self.plan = plan
        self.mode: ExtractionMode = mode
        self.ratios = tuple(ratios)
        self.ratio_of = ratio_of
        self.capacity_from_nodes = capacity_from_nodes
        self.capacity_timeout_s = capacity_timeout_s
        self.declared: dict[int, float | None] = {}
        self.seed = seed
        self.rolling_step = rolling_step
        self.rolling_tile = rolling_tile
        self.rolling_drift = rolling_drift
        self.on_coverage = on_coverage
        self.tracker = CoverageTracker()
        self._global: dict[str, NDArray] = {}
        self._sent: dict[int, tuple[float, dict[str, IndexArray]]] = {}

    def summary(self) -> None:
        """Log the FedAvg summary plus the reduction settings."""
        super().summary()
        log(INFO, "\t├──> HeteroFL: mode %s, ratios %s", self.mode, self.ratios)

    def node_ratios(self, node_ids: Iterable[int]) -> dict[int, float]:
        """Capacity ratio per node: ``ratio_of``, then what the node declared,
        else ``ratios`` cyclically over the nodes that declared nothing."""
        ratios: dict[int, float] = {}
        undeclared = 0
        for node_id in sorted(node_ids):
            ratio = self.ratio_of(node_id) if self.ratio_of is not None else None
            if ratio is None:
                ratio = self.declared.get(node_id)
            if ratio is None:
                ratio = self.ratios[undeclared % len(self.ratios)]
                undeclared += 1
            ratios[node_id] = ratio
        return ratios

    def ask_capacities(self, grid: Grid, node_ids: Iterable[int]) -> None:
        """Learn the declared capacity of every node not asked yet (one query each)."""
        unknown = sorted(n for n in node_ids if n not in self.declared)
        if not unknown:
            return
        queries = [
            Message(
                RecordDict({"config": ConfigRecord({"want": CAPACITY_KEY})}),
                dst_node_id=node_id,
                message_type=CAPACITY_QUERY,
            )
            for node_id in unknown
        ]
        replies = grid.send_and_receive(queries, timeout=self.capacity_timeout_s)
        names: dict[int, str] = {}
        for reply in replies:
            node_id = int(reply.metadata.src_node_id)
            if reply.has_error() or CAPACITY_RECORD not in reply.content:
                continue
            record = reply.content.config_records.get(CAPACITY_RECORD, ConfigRecord())
            self.declared[node_id] = declared_capacity(record.get(CAPACITY_KEY))
            names[node_id] = str(record.get(NODE_NAME_KEY, ""))
        for node_id in unknown:
            self.declared.setdefault(node_id, None)
            ratio = self.declared[node_id]
            log(
                INFO,
                "HeteroFL: node %s%s declares %s",
                node_id,
                f" ({names[node_id]})" if names.get(node_id) else "",
                f"capacity {ratio:g}" if ratio is not None else "no capacity",
            )

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send every sampled node its own sub-model and mask."""
        if self.fraction_train == 0.0:
            return []
        num_nodes = int(len(list(grid.get_node_ids())) * self.fraction_train)
        sample_size = max(num_nodes, self.min_train_nodes)
        node_ids, _ = sample_nodes(grid, self.min_available_nodes, sample_size)
        self._global = _numpy_state(arrays)
        self.plan.check({k: v.shape for k, v in self._global.items()})
        if self.capacity_from_nodes:
            self.ask_capacities(grid, node_ids)
        ratios = self.node_ratios(node_ids)
        masks = round_masks(
            self.plan,
            ratios,
            self.mode,
            server_round=server_round,
            seed=self.seed,
            rolling_step=self.rolling_step,
            rolling_tile=self.rolling_tile,
            rolling_drift=self.rolling_drift,
        )
        self._sent = {node: (ratios[node], masks[node]) for node in ratios}
        messages = []
        for node_id in sorted(ratios):
            node_config = ConfigRecord(dict(config))
            node_config["server-round"] = server_round
            node_config[RATIO_KEY] = ratios[node_id]
            node_config[MODE_KEY] = self.mode
            node_config[MASK_KEY] = mask_to_json(masks[node_id])
            sub = extract_submodel(self.plan, self._global, masks[node_id])
            content = RecordDict(
                {
                    self.arrayrecord_key: _array_record(sub),
                    self.configrecord_key: node_config,
                }
            )
            messages.append(
                Message(
                    content,
                    dst_node_id=node_id,
                    message_type=MessageType.TRAIN,
                    group_id=str(server_round),
                )
            )
        log(INFO, "configure_train: %s sub-models (%s)", len(messages), self.mode)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Average each parameter over the replies whose sub-model covered it."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        results = []
        for reply in valid:
            node_id = reply.metadata.src_node_id
            if node_id not in self._sent:
                log(
                    INFO, "aggregate_train: ignoring reply from unsent node %s", node_id
                )
                continue
            record = reply.content.array_records[self.arrayrecord_key]
            weight = float(
                next(iter(reply.content.metric_records.values()))[self.weighted_by_key]  # type: ignore[arg-type]
            )
            results.append(
                ClientResult(_numpy_state(record), self._sent[node_id][1], weight)
            )
        if not results:
            return None, None
        merged = aggregate_by_coverage(self.plan, self._global, results)
        metrics = self.train_metrics_aggr_fn(
            [reply.content for reply in valid], self.weighted_by_key
        )
        coverage = self.tracker.update(merged.coverage)
        for key, value in coverage.items():
            metrics[key] = value
        if self.on_coverage is not None:
            self.on_coverage(server_round, coverage)
        log(
            INFO,
            "aggregate_train: gamma-round %s, gamma-star %s",
            metrics["gamma-round"],
            metrics["gamma-star"],
        )
        return _array_record(merged.state), metrics
