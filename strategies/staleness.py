"""Stale updates made fresh by gradient inversion, for FedBuff and deadline rounds.

"Tackling the Unlimited Staleness in Federated Learning with Intertwined Data
and Device Heterogeneities" (Wang et al.): when a slow client holds data the
others lack, weighting its stale update down (or dropping it) loses that data.
Instead the server estimates the client's data from the stale update and
computes a fresh update from the estimate:

1. **Invert.** Learn a small synthetic set ``(x, soft y)`` such that local
   training from the model the client started from (``base``) on it
   reproduces the client's update ``delta``: minimise
   ``1 - cos(delta_hat(x, y), delta)`` over ``x`` and the label logits,
   differentiating through ``steps`` unrolled steps of gradient descent
   (``torch.func.functional_call``).
2. **Refresh.** Run the same local training from the *current* model on the
   synthetic set; the fresh update is that direction, scaled to the norm of the
   client's real update (the unrolled steps stand in for the client's own
   optimiser, whose step sizes the server does not know).
3. **Fall back.** If the inversion does not reproduce the stale update
   (cosine below ``min_cosine``), the raw stale update is used, as plain
   FedBuff would.

Heavy, and only on the server: :class:`Refresher` times every inversion
(``seconds``) so its cost is logged. :func:`FedBuff` takes a refresher
(``strategies/fedbuff.py``, ``refresh=``) for updates at least
``min_staleness`` versions old; synchronous rounds with a deadline use
:meth:`Refresher.refresh` on the late updates (bench/methods_staleness.py).
The synthetic data never leaves the server and nothing extra travels.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.func import functional_call

NDArray = npt.NDArray[np.generic]
StateArrays = Mapping[str, NDArray]
Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class InversionConfig:
    """How the server inverts an update.

    Parameters
    ----------
    num_samples
        Synthetic samples per inversion.
    steps
        Unrolled local steps of gradient descent per simulated update.
    local_lr
        Step size of the simulated local training.
    iterations
        Optimiser iterations on the synthetic set.
    inversion_lr
        Adam's step size on the synthetic inputs and label logits.
    min_cosine
        Below this cosine between the simulated and the real update the
        inversion is judged to have failed and the raw update is used.
    min_staleness
        Updates fewer versions old than this are used as they are.
    seed
        Seed of the synthetic set's initial draw.
    """

    num_samples: int = 32
    steps: int = 3
    local_lr: float = 0.1
    iterations: int = 150
    inversion_lr: float = 0.05
    min_cosine: float = 0.5
    min_staleness: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.num_samples, self.steps, self.iterations) < 1:
            raise ValueError(
                f"num_samples, steps and iterations must be >= 1, got {self}"
            )
        if not self.local_lr > 0 or not self.inversion_lr > 0:
            raise ValueError(f"local_lr and inversion_lr must be > 0, got {self}")
        if not -1 <= self.min_cosine <= 1 or self.min_staleness < 0:
            raise ValueError(
                f"min_cosine must be in [-1, 1] and min_staleness >= 0, got {self}"
            )


def _flat(tensors: Mapping[str, torch.Tensor], keys: list[str]) -> torch.Tensor:
    return torch.cat([tensors[k].reshape(-1) for k in keys])


def simulated_update(
    model: nn.Module,
    start: Tensors,
    x: torch.Tensor,
    soft_labels: torch.Tensor,
    steps: int,
    lr: float,
    create_graph: bool = False,
) -> Tensors:
    """``steps`` of full-batch gradient descent from ``start``; returns the delta."""
    # Gradients are taken with respect to the parameters, so they must track them.
    params = {
        k: v if v.requires_grad else v.detach().requires_grad_(True)
        for k, v in start.items()
    }
    for _ in range(steps):
        logits = functional_call(model, params, (x,))
        loss = -(soft_labels * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        grads = torch.autograd.grad(
            loss, list(params.values()), create_graph=create_graph
        )
        params = {
            k: p - lr * g for (k, p), g in zip(params.items(), grads, strict=True)
        }
    return {k: params[k] - start[k].detach() for k in start}


@dataclass(frozen=True)
class Inversion:
    """A synthetic set and how well it reproduces the stale update."""

    x: torch.Tensor
    soft_labels: torch.Tensor
    cosine: float
    seconds: float


def invert(
    model: nn.Module,
    base: Tensors,
    delta: Tensors,
    input_shape: tuple[int, ...],
    num_classes: int,
    config: InversionConfig,
) -> Inversion:
    """Synthetic data whose simulated update from ``base`` points along ``delta``."""
    start_ns = time.monotonic_ns()
    keys = list(base)
    target = _flat(delta, keys).detach()
    target = target / (target.norm() + 1e-12)
    gen = torch.Generator().manual_seed(config.seed)
    x = torch.randn((config.num_samples, *input_shape), generator=gen)
    x.requires_grad_(True)
    logits = torch.zeros(config.num_samples, num_classes, requires_grad=True)
    optimizer = torch.optim.Adam([x, logits], lr=config.inversion_lr)
    start = {k: v.detach() for k, v in base.items()}
    cosine = -1.0
    for _ in range(config.iterations):
        optimizer.zero_grad()
        simulated = simulated_update(
            model,
            start,
            x,
            F.softmax(logits, dim=1),
            config.steps,
            config.local_lr,
            create_graph=True,
        )
        flat = _flat(simulated, keys)
        similarity = (flat @ target) / (flat.norm() + 1e-12)
        (1 - similarity).backward()
        optimizer.step()
        cosine = float(similarity.detach())
    return Inversion(
        x.detach(),
        F.softmax(logits.detach(), dim=1),
        cosine,
        (time.monotonic_ns() - start_ns) / 1e9,
    )


@dataclass(frozen=True)
class Refreshed:
    """What the server did with one stale update."""

    delta: Mapping[str, NDArray]
    used_inversion: bool
    cosine: float
    seconds: float


class Refresher:
    """Turns stale updates into fresh ones for one model architecture.

    ``model`` is a template (its own weights are never used);
    ``input_shape`` is one sample's shape, ``num_classes`` the output width.
    Keys of the state that are not floating-point parameters of ``model``
    (buffers, counters) keep the client's raw delta.
    """

    def __init__(
        self,
        model: nn.Module,
        input_shape: tuple[int, ...],
        num_classes: int,
        config: InversionConfig | None = None,
        on_refresh: Callable[[Refreshed, int], None] | None = None,
    ) -> None:
        self.model = model
        self.input_shape = input_shape
        self.num_classes = num_classes
        self.config = config or InversionConfig()
        self.on_refresh = on_refresh
        self.params = [name for name, _ in model.named_parameters()]
        self.seconds: list[float] = []

    def _tensors(self, state: StateArrays) -> Tensors:
        return {
            k: torch.as_tensor(np.asarray(state[k], dtype=np.float32))
            for k in self.params
        }

    def refresh(
        self,
        base: StateArrays,
        delta: StateArrays,
        current: StateArrays,
        staleness: int,
    ) -> Refreshed:
        """The fresh update for ``delta``, computed on ``base``, given ``current``."""
        raw = {k: np.asarray(v, dtype=np.float64) for k, v in delta.items()}
        if staleness < self.config.min_staleness:
            return Refreshed(raw, False, 1.0, 0.0)
        start_ns = time.monotonic_ns()
        inversion = invert(
            self.model,
            self._tensors(base),
            self._tensors(delta),
            self.input_shape,
            self.num_classes,
            self.config,
        )
        if inversion.cosine < self.config.min_cosine:
            out = Refreshed(
                raw, False, inversion.cosine, (time.monotonic_ns() - start_ns) / 1e9
            )
        else:
            fresh = simulated_update(
                self.model,
                self._tensors(current),
                inversion.x,
                inversion.soft_labels,
                self.config.steps,
                self.config.local_lr,
            )
            norm_real = float(_flat(self._tensors(delta), self.params).norm())
            norm_fresh = float(_flat(fresh, self.params).detach().norm()) + 1e-12
            scale = norm_real / norm_fresh
            refreshed = dict(raw)
            for k in self.params:
                refreshed[k] = fresh[k].detach().numpy().astype(np.float64) * scale
            out = Refreshed(
                refreshed,
                True,
                inversion.cosine,
                (time.monotonic_ns() - start_ns) / 1e9,
            )
        self.seconds.append(out.seconds)
        if self.on_refresh is not None:
            self.on_refresh(out, staleness)
        return out


def fedbuff_refresh(
    refresher: Refresher,
) -> Callable[
    [StateArrays, StateArrays, StateArrays, int], tuple[StateArrays, bool, str]
]:
    """FedBuff's ``refresh`` hook: invert updates ``min_staleness`` or more old."""

    def refresh(
        base: StateArrays, delta: StateArrays, current: StateArrays, staleness: int
    ) -> tuple[StateArrays, bool, str]:
        if staleness < refresher.config.min_staleness:
            return delta, False, ""
        out = refresher.refresh(base, delta, current, staleness)
        verdict = "refreshed" if out.used_inversion else "inversion failed, raw"
        return (
            out.delta,
            out.used_inversion,
            f"{verdict}: cosine {out.cosine:.3f}, inversion {out.seconds:.3f} s",
        )

    return refresh
