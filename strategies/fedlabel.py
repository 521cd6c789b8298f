"""FedLabel (Cho, Joshi and Dimitriadis, ICCV 2023): semi-supervised FL, limited labels.

Each client holds a few labelled samples and many unlabelled ones; the server
is plain FedAvg and nothing but weights travels. A client keeps its own LOCAL
model between rounds in ``context.state`` (:data:`LOCAL_MODEL_KEY`) and, every
round, trains two models on its data: the received global model (which it
sends back) and its local model. For each unlabelled sample:

1. the local model and the received (frozen) global model both look at a
   weakly augmented view; whichever is more confident (max softmax
   probability) gives the pseudo-label, kept only if that confidence reaches
   ``threshold`` (:func:`select_pseudo_labels`);
2. both trained models learn the pseudo-label on a strongly augmented view
   (FixMatch-style), beside the supervised loss on the labelled samples;
3. where the two teachers agree on the label, a global-local consistency term
   (symmetric KL between the two trained models' outputs on the strong view,
   weight ``consistency_weight``) pulls them together
   (:func:`consistency_loss`).

The baselines use the same loop: ``teacher: global`` pseudo-labels with the
received global model only and trains the global model only (FedAvg +
FixMatch with a global teacher); ``teacher: none`` trains on the labelled
samples only. Which samples are labelled: the first ``label_fraction`` of the
node's training samples (at least one), the same every round.

Augmentations work at any image size, by fractions of the side: weak is a
shift of up to 1/8 of the side plus pixel noise (std 0.1); strong is a
rotation of up to 25 degrees, a zoom of 0.8-1.2, a shift of up to 1/4 of the
side, noise (std 0.3) and a cut-out square of 1/4 of the side (on 8x8 digits:
1 pixel shifts against 2 pixel shifts, a 2x2 hole).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from flwr.app import ArrayRecord, RecordDict
from torch import nn

from strategies.client_side import ClientSide, LocalTraining, plain_model
from strategies.registry import fedlabel_config
from strategies.settings import FedLabelConfig
from workloads.training import TrainResult

# The context.state entry under which a node keeps its local model.
LOCAL_MODEL_KEY = "fedlabel-local-model"
WEAK_SHIFT = 1 / 8
WEAK_NOISE = 0.1
STRONG_SHIFT = 1 / 4
STRONG_NOISE = 0.3
STRONG_DEGREES = 25.0
STRONG_ZOOM = 0.2
CUTOUT = 1 / 4


def _affine(
    x: torch.Tensor,
    generator: torch.Generator,
    shift: float,
    degrees: float = 0.0,
    zoom: float = 0.0,
) -> torch.Tensor:
    """Random rotation, zoom and shift per image; borders repeat the edge pixels."""
    n = len(x)

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    angle = uniform(-degrees, degrees) * math.pi / 180
    scale = 1 + uniform(-zoom, zoom)
    # affine_grid works in [-1, 1]: a shift of s of the side is 2s.
    tx, ty = uniform(-2 * shift, 2 * shift), uniform(-2 * shift, 2 * shift)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def weak_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A small shift (up to 1/8 of the side) and light pixel noise."""
    shifted = _affine(x, generator, WEAK_SHIFT)
    noise = torch.randn(x.shape, generator=generator) * WEAK_NOISE
    return shifted + noise


def strong_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rotation, zoom, a larger shift, heavy noise and a cut-out square."""
    moved = _affine(x, generator, STRONG_SHIFT, STRONG_DEGREES, STRONG_ZOOM)
    moved = moved + torch.randn(x.shape, generator=generator) * STRONG_NOISE
    side_h, side_w = x.shape[-2], x.shape[-1]
    hole_h, hole_w = max(1, round(side_h * CUTOUT)), max(1, round(side_w * CUTOUT))
    top = torch.randint(0, side_h - hole_h + 1, (len(x),), generator=generator)
    left = torch.randint(0, side_w - hole_w + 1, (len(x),), generator=generator)
    rows = torch.arange(side_h)[None, :, None]
    cols = torch.arange(side_w)[None, None, :]
    hole = (
        (rows >= top[:, None, None])
        & (rows < (top + hole_h)[:, None, None])
        & (cols >= left[:, None, None])
        & (cols < (left + hole_w)[:, None, None])
    )
    background = x.amin(dim=(1, 2, 3), keepdim=True)
    return torch.where(hole[:, None], background, moved)


@dataclass(frozen=True, eq=False)
class PseudoLabels:
    """Per unlabelled sample: the label, whether it is used, who gave it, agreement."""

    labels: torch.Tensor
    mask: torch.Tensor
    from_local: torch.Tensor
    agree: torch.Tensor


def select_pseudo_labels(
    local_logits: torch.Tensor | None, global_logits: torch.Tensor, threshold: float
) -> PseudoLabels:
    """The more confident model's label per sample, kept if confident enough.

    ``local_logits`` None means the global model alone pseudo-labels. A tie
    goes to the global model. ``agree`` marks samples both label the same.
    """
    global_conf, global_label = F.softmax(global_logits, dim=1).max(dim=1)
    if local_logits is None:
        no = torch.zeros_like(global_label, dtype=torch.bool)
        return PseudoLabels(global_label, global_conf >= threshold, no, no)
    local_conf, local_label = F.softmax(local_logits, dim=1).max(dim=1)
    from_local = local_conf > global_conf
    labels = torch.where(from_local, local_label, global_label)
    confidence = torch.maximum(local_conf, global_conf)
    return PseudoLabels(
        labels, confidence >= threshold, from_local, local_label == global_label
    )


def consistency_loss(
    a_logits: torch.Tensor, b_logits: torch.Tensor, where: torch.Tensor
) -> torch.Tensor:
    """Symmetric KL between two models' outputs, averaged over ``where`` (else 0)."""
    if not bool(where.any()):
        return a_logits.sum() * 0.0
    log_a = F.log_softmax(a_logits[where], dim=1)
    log_b = F.log_softmax(b_logits[where], dim=1)
    kl_ab = F.kl_div(log_b, log_a, log_target=True, reduction="batchmean")
    kl_ba = F.kl_div(log_a, log_b, log_target=True, reduction="batchmean")
    return 0.5 * (kl_ab + kl_ba)


def _masked_ce(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy on masked samples, divided by the batch size (FixMatch)."""
    per_sample = F.cross_entropy(logits, labels, reduction="none")
    return (per_sample * mask.float()).sum() / max(1, len(labels))


@dataclass(frozen=True)
class RoundStats:
    """A FedLabel client round: loss, accuracy on labelled data, pseudo-label use."""

    loss: float
    accuracy: float
    steps: int
    pseudo_used: float
    from_local: float
    agree: float


def _teacher_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits: torch.Tensor = model(x)
    model.train(was_training)
    return logits


def train_round(
    model: nn.Module,
    local: nn.Module | None,
    labelled: tuple[torch.Tensor, torch.Tensor],
    unlabelled: torch.Tensor,
    config: FedLabelConfig,
    *,
    lr: float,
    momentum: float = 0.9,
    epochs: int = 1,
    batch_size: int = 32,
    seed: int = 0,
) -> RoundStats:
    """One client round: train ``model`` (sent back) and ``local`` in place.

    ``local`` is needed with ``teacher: fedlabel`` and ignored otherwise. An
    epoch is one pass over the unlabelled samples in batches of
    ``batch_size``, each with a batch of labelled samples drawn with
    replacement, whatever the teacher (``none`` ignores the unlabelled batch),
    so that every method takes the same number of steps.
    """
    x_l, y_l = labelled
    if len(x_l) == 0:
        raise ValueError("a FedLabel client needs at least one labelled sample")
    if config.teacher == "fedlabel" and local is None:
        raise ValueError("teacher 'fedlabel' needs the client's local model")
    use_local = config.teacher == "fedlabel"
    generator = torch.Generator().manual_seed(seed)
    teacher = copy.deepcopy(model).eval() if config.teacher != "none" else None
    trained = [model, local] if use_local and local is not None else [model]
    params = [p for m in trained for p in m.parameters()]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum)
    for m in trained:
        m.train()
    # Every method takes the same steps: one per batch of unlabelled samples,
    # each with a batch of labelled samples drawn with replacement.
    sweep = len(unlabelled) if len(unlabelled) else len(x_l)
    totals = {"loss": 0.0, "correct": 0, "seen": 0, "used": 0, "local": 0, "agree": 0}
    steps = 0
    for _ in range(epochs):
        order = torch.randperm(sweep, generator=generator)
        for start in range(0, sweep, batch_size):
            batch = order[start : start + batch_size]
            pick = torch.randint(0, len(x_l), (len(batch),), generator=generator)
            xb, yb = x_l[pick], y_l[pick]
            optimizer.zero_grad(set_to_none=True)
            weak_l = weak_augment(xb, generator)
            logits = model(weak_l)
            loss = F.cross_entropy(logits, yb)
            totals["correct"] += int((logits.argmax(1) == yb).sum())
            totals["seen"] += len(yb)
            if teacher is not None and len(unlabelled):
                xu = unlabelled[batch]
                weak_u, strong_u = (
                    weak_augment(xu, generator),
                    strong_augment(xu, generator),
                )
                local_logits = (
                    _teacher_logits(local, weak_u) if use_local and local else None
                )
                chosen = select_pseudo_labels(
                    local_logits, _teacher_logits(teacher, weak_u), config.threshold
                )
                out = model(strong_u)
                loss = loss + config.unlabelled_weight * _masked_ce(
                    out, chosen.labels, chosen.mask
                )
                totals["used"] += int(chosen.mask.sum())
                if use_local and local is not None:
                    loss = loss + F.cross_entropy(local(weak_l), yb)
                    out_local = local(strong_u)
                    loss = loss + config.unlabelled_weight * _masked_ce(
                        out_local, chosen.labels, chosen.mask
                    )
                    loss = loss + config.consistency_weight * consistency_loss(
                        out, out_local, chosen.agree & chosen.mask
                    )
                    totals["local"] += int((chosen.from_local & chosen.mask).sum())
                    totals["agree"] += int((chosen.agree & chosen.mask).sum())
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            steps += 1
            totals["loss"] += loss.item() * len(batch)
    unlabelled_seen = max(1, epochs * len(unlabelled)) if teacher is not None else 1
    return RoundStats(
        loss=totals["loss"] / max(1, epochs * sweep),
        accuracy=totals["correct"] / max(1, totals["seen"]),
        steps=steps,
        pseudo_used=totals["used"] / unlabelled_seen,
        from_local=totals["local"] / unlabelled_seen,
        agree=totals["agree"] / unlabelled_seen,
    )


def split_labelled(
    x: torch.Tensor, y: torch.Tensor, label_fraction: float
) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The first ``label_fraction`` of the samples keep labels (>= 1), not the rest."""
    count = min(len(x), max(1, math.ceil(label_fraction * len(x))))
    return (x[:count], y[:count]), x[count:]


def local_model(model: nn.Module, state: RecordDict) -> tuple[nn.Module, bool]:
    """The node's local model from ``context.state``, else a copy of ``model``."""
    local = copy.deepcopy(model)
    if LOCAL_MODEL_KEY not in state.array_records:
        return local, False
    kept = state.array_records[LOCAL_MODEL_KEY].to_torch_state_dict()
    if set(kept) != set(local.state_dict()):
        raise ValueError(
            f"context.state[{LOCAL_MODEL_KEY!r}] holds another model's keys; a node"
            " must keep the same model (strategy, model, model-width) within a run"
        )
    local.load_state_dict(kept)
    return local, True


def fedlabel_train(
    model: nn.Module, task: LocalTraining
) -> tuple[TrainResult, dict[str, float | int]]:
    """The app's FedLabel client round: the hook of :data:`CLIENT_SIDE`."""
    config = fedlabel_config(task.parameters)
    labelled, unlabelled = split_labelled(task.x, task.y, config.label_fraction)
    local: nn.Module | None = None
    restored = False
    if config.teacher == "fedlabel":
        local, restored = local_model(model, task.state)
    stats = train_round(
        model,
        local,
        labelled,
        unlabelled,
        config,
        lr=task.optimizer.lr,
        momentum=task.optimizer.momentum,
        epochs=task.epochs,
        batch_size=task.batch_size,
        seed=task.seed,
    )
    if local is not None:
        task.state[LOCAL_MODEL_KEY] = ArrayRecord(
            {k: v.detach().clone() for k, v in local.state_dict().items()}
        )
    result = TrainResult(
        loss=stats.loss,
        accuracy=stats.accuracy,
        num_examples=len(task.x),
        steps=stats.steps,
    )
    return result, {
        "labelled-samples": len(labelled[1]),
        "pseudo-label-share": stats.pseudo_used,
        "pseudo-from-local-share": stats.from_local,
        "teachers-agree-share": stats.agree,
        "local-state-restored": int(restored),
    }


CLIENT_SIDE = ClientSide("plain", build_model=plain_model, local_train=fedlabel_train)
