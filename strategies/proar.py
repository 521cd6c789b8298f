"""PROAR-PFed: personalised FL over a SIMULATED over-the-air (OTA) uplink with RIS.

THIS IS A CHANNEL SIMULATION, NOT REAL RADIO. The clients' updates travel
over ordinary Flower messages (on the emulated cluster, over its real links);
the strategy then passes them through a software model of analog
over-the-air aggregation before it uses them (:func:`ota_aggregate`):

* every client i, every round, gets a Rayleigh-fading direct channel
  h_d ~ CN(0, 1) and its OWN reconfigurable intelligent surface (RIS) of N
  elements, a cascade c_n = sqrt(ris_gain) g_n r_n with g_n, r_n ~ CN(0, 1);
* the RIS phases are set per user to align every cascaded path with the
  direct path (:func:`effective_channel`), so
  |h| = |h_d| + sum_n |c_n| (N = 0: the direct path alone);
* power control is truncated channel inversion: a client whose |h|^2 is
  below ``truncation`` stays silent; the others pre-scale their update
  b_i = sqrt(eta) w_i / h_est_i, with eta the largest common scale that keeps
  every transmitter within power P = 1 (w_i: example weights; h_est_i the
  server's estimate, with relative error variance ``estimation_error``);
* the server receives y = sum_i h_i b_i delta_i + z, z ~ CN(0, sigma^2),
  sigma^2 = 10^(-snr_db / 10), and estimates the weighted mean update as
  Re(y) / (sqrt(eta) sum_i w_i).

So a better channel (more RIS elements) allows a larger eta, and less of the
noise reaches the model; fewer clients are truncated.

Personalisation is multi-task learning with a shared body and a personal
head (FedRep/FedPer style, our reading of "a global part and a personal
part"): the classifier (the model's last parameterised layer,
:func:`personal_keys`) stays on the node in ``context.state`` and never
travels; the rest is the global part, aggregated over the air. The paper's
Ditto-like regulariser and its per-round adaptation of power, local
iterations and RIS phases by optimisation are not reproduced: phases are
aligned per user, power is truncated inversion, local iterations fixed.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from logging import INFO
from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import Array, ArrayRecord, Message, MetricRecord
from flwr.common.logger import log
from torch import nn

from instrumentation.schema import EventKind, EventSink
from strategies.client_side import ClientSide, plain_model, sgd
from strategies.fedbn import SharedKeysOnly
from strategies.settings_iii import OTAConfig

Complex = npt.NDArray[np.complex128]
Real = npt.NDArray[np.float64]


def personal_keys(model: nn.Module) -> frozenset[str]:
    """State-dict keys of the model's last parameterised layer (its classifier)."""
    last = ""
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            last = name
    if not last:
        raise ValueError("personal_keys: the model has no parameterised layer")
    module = dict(model.named_modules())[last]
    return frozenset(f"{last}.{k}" for k in module.state_dict())


def _complex_normal(
    rng: np.random.Generator, shape: int | tuple[int, ...], variance: float = 1.0
) -> Complex:
    scale = math.sqrt(variance / 2)
    out: Complex = rng.normal(0, scale, shape) + 1j * rng.normal(0, scale, shape)
    return out


def draw_channels(
    clients: int, config: OTAConfig, rng: np.random.Generator
) -> tuple[Complex, Complex]:
    """Direct channels (clients,) and RIS cascades (clients, N): Rayleigh fading."""
    direct = _complex_normal(rng, clients)
    n = config.ris_elements
    cascade = (
        _complex_normal(rng, (clients, n))
        * _complex_normal(rng, (clients, n))
        * math.sqrt(config.ris_gain)
    )
    return direct, cascade


def effective_channel(
    direct: Complex, cascade: Complex, *, aligned: bool = True
) -> Complex:
    """h = h_d + sum_n c_n e^{j theta_n}, the phases per user.

    ``aligned``: theta_n = arg h_d - arg c_n, every path adds in phase with
    the direct one, |h| = |h_d| + sum |c_n| (the best a passive RIS can do).
    Otherwise: random phases (an unconfigured RIS, for comparison).
    """
    if cascade.shape[1] == 0:
        return direct.copy()
    if aligned:
        phase = np.exp(1j * np.angle(direct))
        out: Complex = phase * (np.abs(direct) + np.abs(cascade).sum(1))
        return out
    rng = np.random.default_rng(0)
    theta = rng.uniform(0, 2 * np.pi, cascade.shape)
    random: Complex = direct + (cascade * np.exp(1j * theta)).sum(1)
    return random


@dataclass(frozen=True)
class OTARound:
    """What one simulated over-the-air aggregation did."""

    estimate: Real | None  # the weighted mean update as received (None: silence)
    transmitted: int
    truncated: int
    eta: float
    noise_std: float  # of the noise left in the estimate, per entry
    channel_power: tuple[float, ...]


def ota_aggregate(
    updates: Sequence[Real],
    weights: Sequence[float],
    config: OTAConfig,
    rng: np.random.Generator,
) -> OTARound:
    """The weighted mean of ``updates`` as the server receives it over the air.

    See the module docstring for the model. Every client's update power is
    its mean square entry (sent as side information). With every client
    truncated the round brings nothing (``estimate`` is None).
    """
    if len(updates) != len(weights) or not updates:
        raise ValueError(
            f"ota_aggregate needs one weight per update, got {len(updates)} updates"
            f" and {len(weights)} weights"
        )
    total = float(sum(weights))
    w = np.asarray(weights, np.float64) / total
    direct, cascade = draw_channels(len(updates), config, rng)
    h = effective_channel(direct, cascade)
    power = np.abs(h) ** 2
    error = _complex_normal(rng, len(h)) * np.sqrt(config.estimation_error * power)
    h_est = h + error
    active = [i for i in range(len(h)) if power[i] >= config.truncation]
    if not active:
        return OTARound(None, 0, len(h), 0.0, math.inf, tuple(power))
    # Largest eta with |b_i|^2 * mean(delta_i^2) <= P = 1 for every transmitter.
    eta = min(
        np.abs(h_est[i]) ** 2
        / (w[i] ** 2 * max(float(np.mean(updates[i] ** 2)), 1e-30))
        for i in active
    )
    sigma = math.sqrt(10 ** (-config.snr_db / 10))
    received = np.zeros_like(updates[0], dtype=np.float64)
    for i in active:
        gain = math.sqrt(eta) * w[i] * (h[i] / h_est[i])
        received += gain.real * updates[i]
    received += rng.normal(0, sigma / math.sqrt(2), received.shape)
    scale = math.sqrt(eta) * float(w[active].sum())
    return OTARound(
        received / scale,
        len(active),
        len(h) - len(active),
        float(eta),
        sigma / math.sqrt(2) / scale,
        tuple(float(p) for p in power),
    )


def flatten(state: Mapping[str, Any], keys: Sequence[str]) -> Real:
    """``keys`` of ``state`` as one float64 vector."""
    return np.concatenate([np.asarray(state[k], np.float64).ravel() for k in keys])


def unflatten(
    vector: Real, like: Mapping[str, Any], keys: Sequence[str]
) -> dict[str, Real]:
    """Inverse of :func:`flatten`, shapes and dtypes from ``like``."""
    out, start = {}, 0
    for k in keys:
        ref = np.asarray(like[k])
        out[k] = vector[start : start + ref.size].reshape(ref.shape).astype(ref.dtype)
        start += ref.size
    return out


class PROARPFed(SharedKeysOnly):
    """FedAvg's round loop; the global part aggregated over a simulated OTA uplink.

    ``local_keys`` (the personal head) are neither sent nor aggregated; with
    none, this is OTA-FedAvg.
    """

    def __init__(
        self,
        config: OTAConfig,
        local_keys: Collection[str],
        sink: EventSink | None = None,
        **fedavg: Any,
    ) -> None:
        super().__init__(local_keys, **fedavg)
        self.config = config
        self.sink = sink

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Pass the valid replies' updates through the simulated channel."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid or self._global is None:
            return None, None
        base = {k: v.numpy() for k, v in self._global.items()}
        keys = sorted(
            k
            for k, v in base.items()
            if k not in self.local_keys and np.issubdtype(v.dtype, np.floating)
        )
        start = flatten(base, keys)
        updates, weights = [], []
        for reply in valid:
            arrays = next(iter(reply.content.array_records.values()))
            metrics = next(iter(reply.content.metric_records.values()))
            state = {k: v.numpy() for k, v in arrays.items()}
            updates.append(flatten(state, keys) - start)
            weights.append(float(metrics[self.weighted_by_key]))  # type: ignore[arg-type]
        rng = np.random.default_rng([self.config.seed, server_round])
        result = ota_aggregate(updates, weights, self.config, rng)
        merged = dict(self._global.items())
        if result.estimate is not None:
            new = unflatten(start + result.estimate, base, keys)
            merged.update({k: Array(v) for k, v in new.items()})
        log(
            INFO,
            "PROAR-PFed aggregate_train (simulated channel): %s of %s transmitted,"
            " noise std %.3g, SNR %s dB, N %s",
            result.transmitted,
            len(updates),
            result.noise_std,
            self.config.snr_db,
            self.config.ris_elements,
        )
        noise = result.noise_std
        if self.sink is not None:
            self.sink.append(
                EventKind.METRICS,
                round=server_round,
                scope="ota",
                values={
                    "transmitted": result.transmitted,
                    "truncated": result.truncated,
                    "noise-std": noise if math.isfinite(noise) else 0.0,
                    "channel-power": list(result.channel_power),
                },
            )
        metrics_out = self.train_metrics_aggr_fn(
            [reply.content for reply in valid], self.weighted_by_key
        )
        return ArrayRecord(merged), metrics_out


CLIENT_SIDE = ClientSide(
    "plain-personal-head",
    build_model=plain_model,
    build_optimizer=sgd,
    local_keys=personal_keys,
)
