"""RealFM: a mechanism that pays devices, in accuracy and rewards, to contribute data.

RealFM (Bornstein et al., "Towards Realistic Mechanisms That Incentivize
Federated Participation and Contribution"). Each device ``i`` has a marginal
cost ``cost_i`` per data point and a payoff scale ``c_i``; its utility for a
model of accuracy ``a`` trained on ``m`` of its points is::

    a(m)   = max(0, a_opt - (sqrt(2 k (2 + ln(m / k))) + 4) / sqrt(m))
    phi(a) = 1 / (1 - a) ** 2 - 1                 (non-linear payoff)
    u_i(m) = c_i * phi(a(m)) - cost_i * m

Alone, device ``i`` contributes ``b_local_i = argmax u_i`` (0 when no ``m``
gives positive utility). The server knows the accuracy ``a_fed`` a federation
of the contributed data reaches, and offers each device the accuracy
``a_local_i + gamma_i(b)`` for a contribution ``b >= b_local_i``. ``gamma``
solves the second-order expansion of the payoff against the added cost::

    c_i * (phi'(a_local) gamma + phi''(a_local) gamma^2 / 2) = cost_i * (b - b_local)

so the extra data pays for itself (phi's higher derivatives are all positive,
so the true payoff is larger still). The device contributes as much as the
offer can grow, until it reaches ``a_fed``: ``b_fed_i`` solves
``a_local_i + gamma_i(b) = a_fed``, which here has a closed form
(:func:`federated_contribution`). ``a_fed`` is the accuracy of everyone's
``b_fed`` pooled: a fixed point, iterated from the pooled ``b_local`` (ours;
the reference code takes ``a_fed`` as given). Without the iteration a device
that holds the whole federation's local data would gain nothing. The
linear-payoff mechanism it is compared with uses ``phi(a) = a`` throughout.

The server's own utility is ``p_s * phi(a(sum_i b_i))``; it passes a share
``reward_share`` of what the extra contributions earn it back to the devices,
in proportion to each one's extra data. That part (the server's payoff and
the reward rule) is ours: the paper's server utility is of the same form but
its reward rule is not restated here.

What travels besides weights: a device's declared ``cost`` and ``payoff``
scalars (a ``query.realfm`` reply) and the contribution the server sets (the
train config's ``realfm-contribution``); the node then trains on that many of
its samples. :func:`equilibrium` is the arithmetic (pure); :class:`RealFM`
runs it in a Flower FedAvg.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from logging import INFO
from typing import Any, Literal

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log

Payoff = Literal["nonlinear", "linear"]

# The query a server sends before round 1 and the record a node answers with.
COST_QUERY = "query.realfm"
COST_RECORD = "realfm"
COST_KEY = "realfm-cost"
PAYOFF_KEY = "realfm-payoff"
# The train config key that sets how many samples a node trains on.
CONTRIBUTION_KEY = "realfm-contribution"


@dataclass(frozen=True)
class AccuracyModel:
    """The paper's accuracy bound ``a(m)``: ceiling ``a_opt`` and complexity ``k``."""

    a_opt: float = 0.95
    k: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.a_opt < 1 or not self.k > 0:
            raise ValueError(f"need 0 < a_opt < 1 and k > 0, got {self}")

    def accuracy(self, m: float) -> float:
        """``a(m)``; 0 for fewer points than the bound can say anything about."""
        if m <= self.k:
            return 0.0
        gap = (math.sqrt(2 * self.k * (2 + math.log(m / self.k))) + 4) / math.sqrt(m)
        return max(0.0, self.a_opt - gap)


def payoff(a: float, kind: Payoff = "nonlinear") -> float:
    """``phi(a)``: ``1/(1-a)^2 - 1`` (RealFM) or ``a`` (linear)."""
    return a if kind == "linear" else 1.0 / (1.0 - a) ** 2 - 1.0


def _payoff_derivatives(a: float, kind: Payoff) -> tuple[float, float]:
    if kind == "linear":
        return 1.0, 0.0
    return 2.0 / (1.0 - a) ** 3, 6.0 / (1.0 - a) ** 4


def device_utility(
    m: float,
    cost: float,
    scale: float,
    model: AccuracyModel,
    kind: Payoff = "nonlinear",
    accuracy: float | None = None,
) -> float:
    """``c * phi(a) - cost * m``, with ``a = a(m)`` unless ``accuracy`` is given."""
    a = model.accuracy(m) if accuracy is None else accuracy
    return scale * payoff(a, kind) - cost * m


def local_optimum(
    cost: float,
    scale: float,
    model: AccuracyModel,
    kind: Payoff = "nonlinear",
    max_points: float = 1e9,
) -> int:
    """``b_local``: the contribution maximising a device's own utility (0 if none pays).

    A log-spaced grid finds the best region, a golden-section search refines
    it (the utility is smooth and single-peaked where accuracy is positive).
    """
    if not cost > 0 or not scale > 0:
        raise ValueError(f"cost and payoff must be > 0, got {cost!r}, {scale!r}")
    grid = np.geomspace(max(model.k * 1.01, 1.0), max_points, 4000)
    values = [device_utility(float(m), cost, scale, model, kind) for m in grid]
    best = int(np.argmax(values))
    lo = math.log(grid[max(best - 1, 0)])
    hi = math.log(grid[min(best + 1, len(grid) - 1)])
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        x1, x2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        u1 = device_utility(math.exp(x1), cost, scale, model, kind)
        u2 = device_utility(math.exp(x2), cost, scale, model, kind)
        if u1 < u2:
            lo = x1
        else:
            hi = x2
    m = math.exp((lo + hi) / 2)
    if device_utility(m, cost, scale, model, kind) <= 0:
        return 0
    return int(m)


def shaped_gain(
    b: float, b_local: float, a_local: float, cost: float, scale: float, kind: Payoff
) -> float:
    """``gamma(b)``: the accuracy the server adds for ``b - b_local`` extra points."""
    extra = cost * max(0.0, b - b_local) / scale
    d1, d2 = _payoff_derivatives(a_local, kind)
    if d2 == 0:
        return extra / d1
    return (-d1 + math.sqrt(d1 * d1 + 2 * d2 * extra)) / d2


def federated_contribution(
    a_local: float,
    a_fed: float,
    b_local: float,
    cost: float,
    scale: float,
    kind: Payoff,
) -> float:
    """``b_fed``: where the shaped offer reaches ``a_fed`` (else ``b_local``)."""
    gap = max(0.0, a_fed - a_local)
    d1, d2 = _payoff_derivatives(a_local, kind)
    return b_local + scale * (d1 * gap + d2 * gap * gap / 2) / cost


@dataclass(frozen=True)
class Device:
    """A device's declared marginal cost per data point and payoff scale."""

    cost: float
    payoff: float = 1.0

    def __post_init__(self) -> None:
        if not self.cost > 0 or not self.payoff > 0:
            raise ValueError(f"a device needs cost > 0 and payoff > 0, got {self}")


@dataclass(frozen=True)
class DeviceOutcome:
    """One device under a mechanism: contributions, accuracies and utilities."""

    cost: float
    payoff: float
    b_local: int
    b_fed: int
    a_local: float
    a_offered: float
    utility_local: float
    utility_fed: float
    reward: float


@dataclass(frozen=True)
class Equilibrium:
    """Every device's outcome and the server's, under one payoff kind.

    ``a_pooled`` is the accuracy of everyone's local optima pooled (the
    server's utility without the mechanism), ``a_fed`` the accuracy the
    mechanism offers, ``a_trained`` the accuracy of the data it gets.
    """

    kind: Payoff
    devices: tuple[DeviceOutcome, ...]
    a_pooled: float
    a_fed: float
    a_trained: float
    server_utility_local: float
    server_utility_fed: float

    @property
    def total_local(self) -> int:
        """Data the devices would contribute on their own."""
        return sum(d.b_local for d in self.devices)

    @property
    def total_fed(self) -> int:
        """Data the mechanism gets out of them."""
        return sum(d.b_fed for d in self.devices)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for logs and JSON."""
        out = asdict(self)
        out["total_local"], out["total_fed"] = self.total_local, self.total_fed
        return out


def equilibrium(
    devices: Sequence[Device],
    model: AccuracyModel = AccuracyModel(),
    kind: Payoff = "nonlinear",
    server_payoff: float = 1.0,
    reward_share: float = 0.1,
    max_iterations: int = 200,
) -> Equilibrium:
    """The mechanism's outcome for ``devices`` (see the module docstring)."""
    if not 0 <= reward_share < 1:
        raise ValueError(f"reward_share must be in [0, 1), got {reward_share!r}")
    locals_ = [local_optimum(d.cost, d.payoff, model, kind) for d in devices]
    a_pooled = model.accuracy(sum(locals_))

    def contributions_at(a_fed: float) -> list[tuple[Device, int, float, int]]:
        out = []
        for device, b_local in zip(devices, locals_, strict=True):
            a_local = model.accuracy(b_local)
            b_fed = federated_contribution(
                a_local, a_fed, b_local, device.cost, device.payoff, kind
            )
            out.append((device, b_local, a_local, math.ceil(b_fed)))
        return out

    # The offer is what the federation reaches on the data it gets: a fixed
    # point, approached from the pooled local optima (a(m) saturates, so the
    # iteration converges in tens of steps).
    a_fed = a_pooled
    for _ in range(max_iterations):
        contributions = contributions_at(a_fed)
        a_next = model.accuracy(sum(c[3] for c in contributions))
        if abs(a_next - a_fed) < 1e-7:
            break
        a_fed = a_next
    contributions = contributions_at(a_fed)
    total_fed = sum(c[3] for c in contributions)
    a_trained = model.accuracy(total_fed)
    server_local = server_payoff * payoff(a_pooled, kind)
    earned = server_payoff * payoff(a_trained, kind) - server_local
    extra = sum(b_fed - b_local for _, b_local, _, b_fed in contributions)
    outcomes = []
    for device, b_local, a_local, b_fed in contributions:
        reward = reward_share * earned * (b_fed - b_local) / extra if extra else 0.0
        # Data points are whole: b_fed is rounded up, the offer capped at a_fed.
        offered = min(
            a_fed,
            a_local
            + shaped_gain(b_fed, b_local, a_local, device.cost, device.payoff, kind),
        )
        outcomes.append(
            DeviceOutcome(
                cost=device.cost,
                payoff=device.payoff,
                b_local=b_local,
                b_fed=b_fed,
                a_local=a_local,
                a_offered=offered,
                utility_local=device_utility(
                    b_local, device.cost, device.payoff, model, kind
                ),
                utility_fed=device_utility(
                    b_fed, device.cost, device.payoff, model, kind, accuracy=offered
                )
                + reward,
                reward=reward,
            )
        )
    return Equilibrium(
        kind=kind,
        devices=tuple(outcomes),
        a_pooled=a_pooled,
        a_fed=a_fed,
        a_trained=a_trained,
        server_utility_local=server_local,
        server_utility_fed=server_local + (1 - reward_share) * earned,
    )


# --- the node's half ----------------------------------------------------------


def declared_device(node_config: Mapping[str, object], default: Device) -> Device:
    """The cost and payoff a node declares in its node config (else ``default``)."""
    try:
        cost = float(node_config.get(COST_KEY, default.cost))  # type: ignore[arg-type]
        scale = float(node_config.get(PAYOFF_KEY, default.payoff))  # type: ignore[arg-type]
        return Device(cost, scale)
    except (TypeError, ValueError):
        return default


def cost_reply(node_config: Mapping[str, object]) -> RecordDict:
    """A node's answer to a cost query: its declared scalars (0: declares none)."""
    cost = node_config.get(COST_KEY, 0.0)
    scale = node_config.get(PAYOFF_KEY, 0.0)
    try:
        values = {COST_KEY: float(cost), PAYOFF_KEY: float(scale)}  # type: ignore[arg-type]
    except (TypeError, ValueError):
        values = {COST_KEY: 0.0, PAYOFF_KEY: 0.0}
    return RecordDict({COST_RECORD: ConfigRecord(dict(values))})


def contribution(config: Mapping[str, object], available: int) -> int:
    """How many of its ``available`` samples a node trains on (all if not set)."""
    value = config.get(CONTRIBUTION_KEY)
    if value is None:
        return available
    used: int = max(1, min(available, int(value)))  # type: ignore[call-overload]
    return used


# --- the server's half --------------------------------------------------------


class RealFM(FedAvg):
    """FedAvg whose nodes each train on the contribution the mechanism set.

    Before round 1 the server asks every node for its declared cost and
    payoff (``query.realfm``); a node that declares none gets one of
    ``costs`` (cyclically, in node-id order) and ``payoff``. The mechanism
    (:func:`equilibrium`) fixes each node's ``b_fed``, sent in every train
    config as ``realfm-contribution``. ``on_equilibrium`` receives the
    mechanism's outcome once (the event log's ``metrics``).
    """

    def __init__(
        self,
        costs: Sequence[float] = (1e-4,),
        payoff: float = 1.0,
        a_opt: float = 0.95,
        k: float = 1.0,
        server_payoff: float = 1.0,
        reward_share: float = 0.1,
        kind: Payoff = "nonlinear",
        query_timeout_s: float = 30.0,
        on_equilibrium: Any = None,
        **fedavg: Any,
    ) -> None:
        super().__init__(**fedavg)
        self.costs = tuple(float(c) for c in costs)
        self.default_payoff = float(payoff)
        self.model = AccuracyModel(a_opt, k)
        self.server_payoff = server_payoff
        self.reward_share = reward_share
        self.kind: Payoff = kind
        self.query_timeout_s = query_timeout_s
        self.on_equilibrium = on_equilibrium
        self.contributions: dict[int, int] = {}
        self.outcome: Equilibrium | None = None

    def ask_devices(self, grid: Grid, node_ids: Iterable[int]) -> dict[int, Device]:
        """Every node's declared :class:`Device` (one query each; defaults fill in)."""
        ids = sorted(node_ids)
        queries = [
            Message(
                RecordDict({"config": ConfigRecord({"want": COST_KEY})}),
                dst_node_id=node_id,
                message_type=COST_QUERY,
            )
            for node_id in ids
        ]
        declared: dict[int, Device] = {}
        for reply in grid.send_and_receive(queries, timeout=self.query_timeout_s):
            if reply.has_error() or COST_RECORD not in reply.content:
                continue
            record = reply.content.config_records[COST_RECORD]
            cost, scale = float(record[COST_KEY]), float(record[PAYOFF_KEY])  # type: ignore[arg-type]
            if cost > 0:
                declared[int(reply.metadata.src_node_id)] = Device(
                    cost, scale if scale > 0 else self.default_payoff
                )
        undeclared = 0
        for node_id in ids:
            if node_id not in declared:
                cost = self.costs[undeclared % len(self.costs)]
                declared[node_id] = Device(cost, self.default_payoff)
                undeclared += 1
        return declared

    def settle(self, devices: Mapping[int, Device]) -> Equilibrium:
        """Run the mechanism over ``devices``; remember each node's ``b_fed``."""
        ids = sorted(devices)
        outcome = equilibrium(
            [devices[n] for n in ids],
            self.model,
            self.kind,
            self.server_payoff,
            self.reward_share,
        )
        self.contributions = {
            n: d.b_fed for n, d in zip(ids, outcome.devices, strict=True)
        }
        self.outcome = outcome
        for node_id, device in zip(ids, outcome.devices, strict=True):
            log(
                INFO,
                "RealFM: node %s cost %.3g -> b_local %s, b_fed %s",
                node_id,
                device.cost,
                device.b_local,
                device.b_fed,
            )
        if self.on_equilibrium is not None:
            self.on_equilibrium(outcome)
        return outcome

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's train messages, each carrying its node's contribution."""
        messages = list(super().configure_train(server_round, arrays, config, grid))
        unknown = [m.metadata.dst_node_id for m in messages]
        if any(n not in self.contributions for n in unknown):
            self.settle(self.ask_devices(grid, grid.get_node_ids()))
        # FedAvg's messages share one RecordDict: give each node its own config.
        out = []
        for message in messages:
            node_id = message.metadata.dst_node_id
            node_config = ConfigRecord(
                dict(message.content.config_records[self.configrecord_key])
            )
            node_config[CONTRIBUTION_KEY] = self.contributions[node_id]
            content = RecordDict(
                {
                    self.arrayrecord_key: message.content.array_records[
                        self.arrayrecord_key
                    ],
                    self.configrecord_key: node_config,
                }
            )
            out.append(
                Message(
                    content,
                    dst_node_id=node_id,
                    message_type=message.metadata.message_type,
                    group_id=message.metadata.group_id,
                )
            )
        return out
