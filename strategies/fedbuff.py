"""FedBuff: asynchronous buffered aggregation, as a pure state machine and a Grid loop.

FedBuff (Nguyen et al., AISTATS 2022), the aggregation Papaya deploys (Huba et
al., MLSys 2022): the server keeps ``concurrency`` clients training at all
times. Each client trains from the model version ``v`` it downloaded and
returns its weights; the server turns them into ``delta = local - downloaded``,
computes the staleness ``tau = v_now - v`` and the weight
``s(tau) = 1 / (1 + tau) ** a``, and adds ``s(tau) * delta`` to a buffer. When
the buffer holds ``buffer_size`` (K) updates the server takes one step of SGD
with momentum on the buffer mean and clears the buffer::

    mean = sum_i s(tau_i) delta_i / K          (or / sum_i n_i, see below)
    m    <- beta * m + mean
    x    <- x + eta_g * m

Updates staler than ``max_staleness`` are dropped. With
``weight_by_examples`` each weight is also multiplied by the client's example
count ``n_i`` and the sum is divided by ``sum_i n_i`` instead of K.

"Rounds" are server model versions: version ``v`` is the model after ``v``
server steps. :func:`receive_update` is the arithmetic (pure, no I/O);
:class:`FedBuff` runs it against a Flower Grid with ``push_messages`` and
``pull_messages`` and reports every update through a callback.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from logging import INFO, WARNING
from typing import Any, Literal

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
from flwr.serverapp.strategy.result import Result
from flwr.supercore import log

from strategies.settings import FedBuffConfig as FedBuffConfig

NDArray = npt.NDArray[np.generic]
FloatArray = npt.NDArray[np.float64]
StateArrays = Mapping[str, NDArray]

# ConfigRecord key telling the client which model version it trains on.
VERSION_KEY = "model-version"
# How long one poll waits for the pulls it started (a pull stuck on an upload in
# progress carries over; the loop sleeps ``poll_interval_s`` when nothing came).
PULL_WAIT_S = 0.05

Outcome = Literal["applied", "dropped", "failed", "timed-out", "abandoned"]


def staleness_weight(staleness: int, exponent: float) -> float:
    """FedBuff's polynomial staleness weight ``1 / (1 + tau) ** a``."""
    if staleness < 0:
        raise ValueError(f"staleness must be >= 0, got {staleness!r}")
    return float(1.0 / (1.0 + staleness) ** exponent)


def server_step(
    params: StateArrays,
    momentum: Mapping[str, FloatArray],
    mean_delta: Mapping[str, FloatArray],
    learning_rate: float,
    beta: float,
) -> tuple[dict[str, NDArray], dict[str, FloatArray]]:
    """One server SGD-with-momentum step along the mean update.

    ``m <- beta * m + mean_delta`` and ``x <- x + learning_rate * m`` for every
    floating key of ``mean_delta``; other keys of ``params`` are copied.
    Returns the new ``(params, momentum)``; the inputs are not modified.
    """
    new_params = {key: np.array(value, copy=True) for key, value in params.items()}
    new_momentum: dict[str, FloatArray] = {}
    for key, delta in mean_delta.items():
        velocity = beta * momentum.get(key, np.zeros_like(delta)) + delta
        new_momentum[key] = velocity
        base = np.asarray(params[key], dtype=np.float64)
        new_params[key] = (base + learning_rate * velocity).astype(params[key].dtype)
    return new_params, new_momentum


@dataclass(frozen=True)
class ServerState:
    """The server's model, momentum and buffer after some updates.

    ``buffer_sum`` holds the weighted deltas, ``buffer_count`` how many
    updates are in it, ``buffer_norm`` what the sum is divided by at a step
    (the count, or the example total with ``weight_by_examples``).
    """

    version: int
    params: Mapping[str, NDArray]
    momentum: Mapping[str, FloatArray] = field(default_factory=dict)
    buffer_sum: Mapping[str, FloatArray] = field(default_factory=dict)
    buffer_count: int = 0
    buffer_norm: float = 0.0


def initial_state(params: StateArrays) -> ServerState:
    """Version 0 of ``params`` with an empty buffer and zero momentum."""
    return ServerState(version=0, params={k: np.array(v) for k, v in params.items()})


def _floating_keys(params: StateArrays) -> list[str]:
    return [k for k, v in params.items() if np.issubdtype(v.dtype, np.floating)]


@dataclass(frozen=True)
class UpdateRecord:
    """What happened to one client update (one row of the event log).

    ``trained_on_version`` is the version the client downloaded;
    ``staleness`` is ``version_at_arrival - trained_on_version``;
    ``outcome`` is ``applied`` (entered the buffer, so it is part of the
    step that makes ``version_after`` or the next one), ``dropped`` (too
    stale), ``failed`` (error reply), ``timed-out`` (no reply in time) or
    ``abandoned`` (still out when the run ended). ``server_step`` says this
    arrival filled the buffer and produced ``version_after``.
    """

    node_id: int
    trained_on_version: int
    staleness: int | None
    sent_ns: int | None
    arrival_ns: int | None
    outcome: Outcome
    weight: float
    version_after: int
    server_step: bool
    num_examples: int = 0
    message_id: str = ""
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The record as a plain dict for the event log."""
        return asdict(self)


def receive_update(
    state: ServerState,
    config: FedBuffConfig,
    *,
    node_id: int,
    trained_on_version: int,
    delta: StateArrays,
    num_examples: int = 1,
    arrival_ns: int | None = None,
    sent_ns: int | None = None,
) -> tuple[ServerState, UpdateRecord]:
    """Fold one client update into the server state.

    Returns the new state and the update's record. The update is dropped
    (state unchanged) if its staleness exceeds ``config.max_staleness``;
    otherwise it enters the buffer with weight ``s(tau)`` (times
    ``num_examples`` with ``weight_by_examples``) and, if the buffer now holds
    ``config.buffer_size`` updates, the server steps and the version grows by 1.
    """
    staleness = state.version - trained_on_version
    if staleness < 0:
        raise ValueError(
            f"update from node {node_id} claims version {trained_on_version}, newer"
            f" than the server's {state.version}"
        )
    common = {
        "node_id": node_id,
        "trained_on_version": trained_on_version,
        "staleness": staleness,
        "sent_ns": sent_ns,
        "arrival_ns": arrival_ns,
        "num_examples": num_examples,
    }
    if config.max_staleness is not None and staleness > config.max_staleness:
        record = UpdateRecord(
            **common,  # type: ignore[arg-type]
            outcome="dropped",
            weight=0.0,
            version_after=state.version,
            server_step=False,
            reason=f"staleness {staleness} > max_staleness {config.max_staleness}",
        )
        return state, record
    weight = staleness_weight(staleness, config.staleness_exponent)
    scale = weight * num_examples if config.weight_by_examples else weight
    norm_increment = float(num_examples) if config.weight_by_examples else 1.0
    buffer_sum = dict(state.buffer_sum)
    for key in _floating_keys(state.params):
        contribution = scale * np.asarray(delta[key], dtype=np.float64)
        previous = buffer_sum.get(key)
        buffer_sum[key] = contribution if previous is None else previous + contribution
    state = replace(
        state,
        buffer_sum=buffer_sum,
        buffer_count=state.buffer_count + 1,
        buffer_norm=state.buffer_norm + norm_increment,
    )
    stepped = state.buffer_count >= config.buffer_size
    if stepped:
        mean = {k: v / state.buffer_norm for k, v in state.buffer_sum.items()}
        params, momentum = server_step(
            state.params,
            state.momentum,
            mean,
            config.server_learning_rate,
            config.server_momentum,
        )
        state = ServerState(version=state.version + 1, params=params, momentum=momentum)
    record = UpdateRecord(
        **common,  # type: ignore[arg-type]
        outcome="applied",
        weight=weight,
        version_after=state.version,
        server_step=stepped,
    )
    return state, record


# --- the Grid loop -----------------------------------------------------------


@dataclass(frozen=True)
class _InFlight:
    node_id: int
    version: int
    sent_ns: int


class MessagePulls:
    """Pull every in-flight reply on its own thread, so one slow upload blocks no other.

    Flower's ``Grid.pull_messages`` returns a reply as soon as the SuperNode
    has registered it, then fetches its arrays object by object, retrying with
    a backoff of up to 10 s until the upload is complete. One call for all
    in-flight ids therefore holds every fast node's reply until the slowest
    upload has finished: with one node on a 1 Mbit/s uplink, the Ethernet
    nodes' replies arrived together with the straggler's, 30 s late, and
    asynchrony was lost. Here each id has its own pull (a daemon thread, so a
    pull stuck on a dead node never holds up the process's exit).
    """

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self._running: set[str] = set()
        self._results: queue.SimpleQueue[tuple[str, list[Message] | Exception]] = (
            queue.SimpleQueue()
        )

    def _pull(self, message_id: str) -> None:
        try:
            out: list[Message] | Exception = list(
                self._grid.pull_messages([message_id])
            )
        except Exception as err:  # noqa: BLE001 - reported by poll(), then retried
            out = err
        self._results.put((message_id, out))

    def poll(self, message_ids: Iterable[str], wait_s: float) -> list[Message]:
        """Start a pull for each id without one; return replies that came in
        within ``wait_s`` (a pull still running carries over to the next poll)."""
        for message_id in message_ids:
            if message_id not in self._running:
                self._running.add(message_id)
                threading.Thread(
                    target=self._pull,
                    args=(message_id,),
                    name=f"fedbuff-pull-{message_id[:8]}",
                    daemon=True,
                ).start()
        replies: list[Message] = []
        deadline = time.monotonic() + wait_s
        while self._running:
            try:
                message_id, out = self._results.get(
                    timeout=max(0.0, deadline - time.monotonic())
                )
            except queue.Empty:
                break
            self._running.discard(message_id)
            if isinstance(out, Exception):
                log(
                    WARNING,
                    "fedbuff: pulling %s failed (%s); retrying",
                    message_id,
                    out,
                )
                continue
            replies.extend(out)
        return replies


def _numpy_state(arrays: ArrayRecord) -> dict[str, NDArray]:
    return {key: array.numpy() for key, array in arrays.items()}


def _array_record(state: StateArrays) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in state.items()})


class FedBuff:
    """FedBuff on a Flower Grid; ``start`` mirrors ``Strategy.start``.

    Parameters
    ----------
    config
        The FedBuff parameters.
    on_update
        Called with every :class:`UpdateRecord` as it happens (event log).
    poll_interval_s
        Sleep between pulls that brought nothing.
    max_wall_s
        The run stops after this long even if ``num_rounds`` versions are not
        reached (a dead federation must not hang a campaign).
    arrayrecord_key, configrecord_key, weighted_by_key
        Record keys, as in Flower's FedAvg.
    clock_ns, sleep
        Injected for tests; default ``time.time_ns`` and ``time.sleep``.
    refresh
        Called as ``refresh(base, delta, current, staleness)`` on every update
        before it enters the buffer; returns ``(delta, refreshed, reason)``. A
        refreshed update enters as fresh (weight ``s(0)``); its record keeps
        its true staleness and says why (strategies/staleness.py).
    """

    def __init__(
        self,
        config: FedBuffConfig | None = None,
        *,
        on_update: Callable[[UpdateRecord], None] | None = None,
        poll_interval_s: float = 0.5,
        max_wall_s: float = 3600.0,
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
        weighted_by_key: str = "num-examples",
        clock_ns: Callable[[], int] = time.time_ns,
        sleep: Callable[[float], None] = time.sleep,
        refresh: Callable[
            [StateArrays, StateArrays, StateArrays, int],
            tuple[StateArrays, bool, str],
        ]
        | None = None,
    ) -> None:
        self.config = config or FedBuffConfig()
        self.on_update = on_update
        self.poll_interval_s = poll_interval_s
        self.max_wall_s = max_wall_s
        self.arrayrecord_key = arrayrecord_key
        self.configrecord_key = configrecord_key
        self.weighted_by_key = weighted_by_key
        self.clock_ns = clock_ns
        self.sleep = sleep
        self.refresh = refresh
        self.records: list[UpdateRecord] = []
        self._last_sent: dict[int, int] = {}

    def _emit(self, record: UpdateRecord) -> None:
        self.records.append(record)
        if self.on_update is not None:
            self.on_update(record)

    def _dispatch(
        self,
        grid: Grid,
        state: ServerState,
        in_flight: dict[str, _InFlight],
        train_config: ConfigRecord,
    ) -> None:
        """Give the current model to idle nodes until ``concurrency`` are busy."""
        busy = {job.node_id for job in in_flight.values()}
        idle = [n for n in grid.get_node_ids() if n not in busy]
        # Least recently used first, so every node gets its turn.
        idle.sort(key=lambda n: (self._last_sent.get(n, -1), n))
        free = self.config.concurrency - len(in_flight)
        if free <= 0 or not idle:
            return
        arrays = _array_record(state.params)
        for node_id in idle[:free]:
            config = ConfigRecord(dict(train_config))
            config["server-round"] = state.version
            config[VERSION_KEY] = state.version
            message = Message(
                RecordDict(
                    {self.arrayrecord_key: arrays, self.configrecord_key: config}
                ),
                dst_node_id=node_id,
                message_type=MessageType.TRAIN,
                group_id=str(state.version),
            )
            sent_ns = self.clock_ns()
            ids = [i for i in grid.push_messages([message]) if i]
            if not ids:
                log(WARNING, "fedbuff: push to node %s failed; will retry", node_id)
                continue
            in_flight[ids[0]] = _InFlight(node_id, state.version, sent_ns)
            self._last_sent[node_id] = sent_ns

    def _receive(
        self,
        reply: Message,
        job: _InFlight,
        state: ServerState,
        snapshots: Mapping[int, StateArrays],
    ) -> ServerState:
        """Fold one reply into ``state`` and emit its record."""
        arrival_ns = self.clock_ns()
        message_id = reply.metadata.reply_to_message_id
        if reply.has_error():
            self._emit(
                UpdateRecord(
                    node_id=job.node_id,
                    trained_on_version=job.version,
                    staleness=state.version - job.version,
                    sent_ns=job.sent_ns,
                    arrival_ns=arrival_ns,
                    outcome="failed",
                    weight=0.0,
                    version_after=state.version,
                    server_step=False,
                    message_id=message_id,
                    reason=str(reply.error.reason),
                )
            )
            return state
        content = reply.content
        local = _numpy_state(content.array_records[self.arrayrecord_key])
        base = snapshots[job.version]
        delta = {
            k: np.asarray(local[k], np.float64) - np.asarray(base[k], np.float64)
            for k in _floating_keys(base)
        }
        metrics = next(iter(content.metric_records.values()), MetricRecord())
        num_examples = int(metrics.get(self.weighted_by_key, 1))  # type: ignore[arg-type]
        staleness = state.version - job.version
        refreshed, reason = False, ""
        if self.refresh is not None and staleness > 0:
            new_delta, refreshed, reason = self.refresh(
                base, delta, state.params, staleness
            )
            delta = {k: np.asarray(v, np.float64) for k, v in new_delta.items()}
        state, record = receive_update(
            state,
            self.config,
            node_id=job.node_id,
            trained_on_version=state.version if refreshed else job.version,
            delta=delta,
            num_examples=num_examples,
            arrival_ns=arrival_ns,
            sent_ns=job.sent_ns,
        )
        if refreshed:
            record = replace(
                record, trained_on_version=job.version, staleness=staleness
            )
        self._emit(replace(record, message_id=message_id, reason=reason))
        return state

    def _expire(
        self, in_flight: dict[str, _InFlight], state: ServerState, timeout_s: float
    ) -> None:
        """Give up on updates older than ``timeout_s``: their nodes become idle."""
        now = self.clock_ns()
        for message_id, job in list(in_flight.items()):
            if now - job.sent_ns > timeout_s * 1e9:
                del in_flight[message_id]
                self._emit(
                    UpdateRecord(
                        node_id=job.node_id,
                        trained_on_version=job.version,
                        staleness=None,
                        sent_ns=job.sent_ns,
                        arrival_ns=None,
                        outcome="timed-out",
                        weight=0.0,
                        version_after=state.version,
                        server_step=False,
                        message_id=message_id,
                        reason=f"no reply within {timeout_s} s",
                    )
                )

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
    ) -> Result:
        """Run until the model reaches version ``num_rounds`` (or ``max_wall_s``).

        ``timeout`` bounds each update (send to reply); ``evaluate_fn`` is
        called on version 0 and on every new version. ``evaluate_config`` is
        accepted for signature compatibility; FedBuff runs no client-side
        evaluation.
        """
        del evaluate_config
        train_config = train_config or ConfigRecord()
        result = Result()
        state = initial_state(_numpy_state(initial_arrays))
        snapshots: dict[int, StateArrays] = {0: state.params}
        in_flight: dict[str, _InFlight] = {}
        if evaluate_fn is not None:
            metrics = evaluate_fn(0, initial_arrays)
            if metrics is not None:
                result.evaluate_metrics_serverapp[0] = metrics
        stop_ns = self.clock_ns() + int(self.max_wall_s * 1e9)
        pulls = MessagePulls(grid)
        log(INFO, "fedbuff: %s, target version %s", self.config, num_rounds)
        # Flower's round markers (the simulation runner and campaign status read
        # them): "round" v + 1 is the making of version v + 1.
        log(INFO, "[ROUND 1/%s]", num_rounds)
        while state.version < num_rounds:
            if self.clock_ns() > stop_ns:
                log(
                    WARNING,
                    "fedbuff: max_wall_s %s reached at version %s",
                    self.max_wall_s,
                    state.version,
                )
                break
            self._dispatch(grid, state, in_flight, train_config)
            replies = pulls.poll(list(in_flight), PULL_WAIT_S) if in_flight else []
            for reply in replies:
                job = in_flight.pop(reply.metadata.reply_to_message_id, None)
                if job is None:
                    continue  # not ours, or already timed out
                if state.version >= num_rounds:
                    self._emit(_abandoned(job, state, reply, self.clock_ns()))
                    continue
                before = state.version
                state = self._receive(reply, job, state, snapshots)
                if state.version != before:
                    if state.version < num_rounds:
                        log(INFO, "[ROUND %s/%s]", state.version + 1, num_rounds)
                    snapshots[state.version] = state.params
                    arrays = _array_record(state.params)
                    result.arrays = arrays
                    if evaluate_fn is not None:
                        metrics = evaluate_fn(state.version, arrays)
                        if metrics is not None:
                            result.evaluate_metrics_serverapp[state.version] = metrics
            self._expire(in_flight, state, timeout)
            live = {job.version for job in in_flight.values()} | {state.version}
            for version in [v for v in snapshots if v not in live]:
                del snapshots[version]
            if not replies:
                self.sleep(self.poll_interval_s)
        for message_id, job in in_flight.items():
            self._emit(
                replace(_abandoned(job, state, None, None), message_id=message_id)
            )
        result.arrays = _array_record(state.params)
        log(INFO, "Strategy execution finished (fedbuff, version %s)", state.version)
        return result


def _abandoned(
    job: _InFlight, state: ServerState, reply: Message | None, arrival_ns: int | None
) -> UpdateRecord:
    """Record an update the run no longer needs (target version reached)."""
    return UpdateRecord(
        node_id=job.node_id,
        trained_on_version=job.version,
        staleness=None if reply is None else state.version - job.version,
        sent_ns=job.sent_ns,
        arrival_ns=arrival_ns,
        outcome="abandoned",
        weight=0.0,
        version_after=state.version,
        server_step=False,
        message_id="" if reply is None else reply.metadata.reply_to_message_id,
        reason="the run reached its target version first",
    )


def summarize(records: Iterable[UpdateRecord]) -> dict[str, int]:
    """Count records per outcome (for logs and reports)."""
    counts: dict[str, int] = {}
    for record in records:
        counts[record.outcome] = counts.get(record.outcome, 0) + 1
    return counts
