"""Issue 20, item 2: FedSpine's bandit reaches a target sooner than a fixed arm.

In-process federated fine-tuning with the pieces of ``strategies/fedspine.py``.
Per seed, a tiny transformer (2 blocks, width 64) is pre-trained briefly as a
language model on generated text (``workloads.textcls.lm_corpus``), then
``--devices`` devices fine-tune it to classify generated sentences by topic,
each on its own style (non-IID). Every round each device receives the global
model, prunes its MLP channels at its pruning ratio, trains LoRA at its rank
plus the head (``spine_train``) and sends the update; the server merges them by
coverage (``SpineServer.aggregate``) and the global model is evaluated on a
fixed test set PRUNED AT THE SAME ``--sparsity`` for every policy.

Device heterogeneity is simulated: device classes have speed factors
(``--speeds``, default 4 fast at 1, 2 at 0.5, 2 at 0.2), and a device's round
time is ``work_per_example(ratio, rank) * examples / (speed * RATE)`` plus its
LoRA upload at ``speed`` MB/s. This simulated time is what the device reports
(the app reports its measured training seconds instead). A round lasts as long
as its slowest device (synchronous FL); the clock is the sum of round times.

Policies: every fixed (ratio, rank) of the grid for all devices, the UCB
bandit per device over the same grid, and (``--by-speed``, on by default) a
hand-set arm per speed class as a reference: the fastest class prunes least,
the slowest most, all at the largest rank. Measured: the simulated time to
reach ``--target`` accuracy (the first evaluated round at or above it), per
seed; a run stops there. The best fixed arm is the one with the smallest mean
time (a run that never reaches the target counts as the longest clock of any
run).

    .venv/bin/python -m bench.methods_fedspine [--seeds 0 1 2] [--rounds 120]
        [--target 0.78] [--lr 0.001] [--ratios 0 0.5 0.75] [--ranks 2 8]
        [--gain accuracy|loss] [--exploration 0.1] [--discount 0.9]
        [--normalise max|decay] [--no-by-speed]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from strategies.fedspine import (
    SpineServer,
    SpineUpdate,
    pretrain,
    spine_train,
)
from strategies.fedspine_model import (
    TinyTransformer,
    lora_numel,
    work_per_example,
)
from strategies.fedspine_settings import FedSpineConfig
from workloads import textcls

# One unit of speed trains this many multiply-adds per second.
RATE = 2.0e8
# Bytes per LoRA number on the wire (float32).
BYTES = 4


@dataclass(frozen=True)
class Run:
    """One policy on one seed: the clock and accuracy after each round."""

    policy: str
    clock: tuple[float, ...]
    accuracy: tuple[float, ...]
    arms: tuple[dict[int, tuple[float, int]], ...]

    def time_to(self, target: float) -> float | None:
        for clock, accuracy in zip(self.clock, self.accuracy, strict=True):
            if accuracy >= target:
                return clock
        return None


def device_seconds(ratio: float, rank: int, examples: int, speed: float) -> float:
    """Simulated round time of a device: compute / speed + LoRA upload."""
    compute = work_per_example(ratio, rank) * examples / (speed * RATE)
    upload = lora_numel(rank) * BYTES / (speed * 1e6)
    return compute + upload


def hand_set(
    speeds: Sequence[float], ratios: Sequence[float], ranks: Sequence[int]
) -> dict[int, tuple[float, int]]:
    """A fixed arm per node by speed: the fastest class prunes least, the
    slowest most, the classes between them in order; all at the largest rank."""
    classes = sorted(set(speeds), reverse=True)
    ordered = sorted(ratios)
    out = {}
    for node, speed in enumerate(speeds):
        level = classes.index(speed) / max(1, len(classes) - 1)
        out[node] = (ordered[round(level * (len(ordered) - 1))], max(ranks))
    return out


def run(
    config: FedSpineConfig,
    base: dict[str, torch.Tensor],
    data: Sequence[textcls.TextSplit],
    speeds: Sequence[float],
    test: tuple[torch.Tensor, torch.Tensor],
    rounds: int,
    lr: float,
    seed: int,
    stop_at: float,
    by_speed: dict[int, tuple[float, int]] | None = None,
) -> Run:
    """``rounds`` of FedSpine under ``config``; stops early at ``stop_at``.

    ``by_speed`` overrides the server's choice with a fixed arm per node.
    """
    server = SpineServer(config, {k: v.clone() for k, v in base.items()})
    clock, accuracy, arms = [], [], []
    now = 0.0
    model = TinyTransformer()
    for rnd in range(rounds):
        chosen = server.choose(range(len(data)))
        if by_speed is not None:
            chosen = dict(by_speed)
        updates = []
        for node, split in enumerate(data):
            model.load_state_dict(server.global_state)
            ratio, rank = chosen[node]
            result = spine_train(
                model,
                split.x_train,
                split.y_train,
                ratio,
                rank,
                lr=lr,
                seed=seed * 1000 + rnd * 31 + node,
            )
            seconds = device_seconds(
                ratio, rank, result.train.num_examples, speeds[node]
            )
            gain = (
                result.gain_accuracy if config.gain == "accuracy" else result.gain_loss
            )
            updates.append(
                SpineUpdate(
                    node,
                    {k: v.detach().clone() for k, v in model.state_dict().items()},
                    (ratio, rank),
                    result.train.num_examples,
                    gain,
                    seconds,
                )
            )
        server.aggregate(updates)
        now += max(u.seconds for u in updates)
        clock.append(now)
        accuracy.append(server.evaluate(*test))
        arms.append(chosen)
        if accuracy[-1] >= stop_at:
            break
    name = (
        "bandit"
        if config.policy == "ucb"
        else f"fixed p={config.fixed_ratio:g} r={config.fixed_rank}"
    )
    if by_speed is not None:
        name = "by speed (hand-set)"
    return Run(name, tuple(clock), tuple(accuracy), tuple(arms))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=120)
    parser.add_argument("--target", type=float, default=0.78)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.5, 0.75])
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 8])
    parser.add_argument(
        "--speeds", type=float, nargs="+", default=[1, 1, 1, 1, 0.5, 0.5, 0.2, 0.2]
    )
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--gain", default="accuracy")
    parser.add_argument("--exploration", type=float, default=0.1)
    parser.add_argument("--discount", type=float, default=0.9)
    parser.add_argument("--normalise", default="max")
    parser.add_argument(
        "--by-speed",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run a hand-set arm per speed class (a reference, not a method)",
    )
    parser.add_argument("--pretrain-steps", type=int, default=150)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.time()
    common = {
        "ratios": tuple(args.ratios),
        "ranks": tuple(args.ranks),
        "target_sparsity": args.sparsity,
        "gain": args.gain,
        "exploration": args.exploration,
        "discount": args.discount,
        "normalise": args.normalise,
    }
    configs = [FedSpineConfig(policy="ucb", **common)] + [
        FedSpineConfig(policy="fixed", fixed_ratio=p, fixed_rank=r, **common)
        for p in args.ratios
        for r in args.ranks
    ]
    test = textcls.test_set()
    budget = 0.0
    times: dict[str, list[float | None]] = {}
    finals: dict[str, list[float]] = {}
    bandit_arms: list[dict[int, tuple[float, int]]] = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        model = TinyTransformer()
        pretrain(model, textcls.lm_corpus(800, seed), args.pretrain_steps, 3e-3, seed)
        base = {k: v.detach().clone() for k, v in model.state_dict().items()}
        data = [
            textcls.node_data(i, len(args.speeds), args.samples, seed)
            for i in range(len(args.speeds))
        ]
        for config in configs:
            result = run(
                config,
                base,
                data,
                args.speeds,
                test,
                args.rounds,
                args.lr,
                seed,
                stop_at=args.target,
            )
            times.setdefault(result.policy, []).append(result.time_to(args.target))
            finals.setdefault(result.policy, []).append(result.accuracy[-1])
            budget = max(budget, result.clock[-1])
            if config.policy == "ucb":
                bandit_arms.extend(result.arms[-5:])
        if args.by_speed:
            result = run(
                configs[0],
                base,
                data,
                args.speeds,
                test,
                args.rounds,
                args.lr,
                seed,
                stop_at=args.target,
                by_speed=hand_set(args.speeds, args.ratios, args.ranks),
            )
            times.setdefault(result.policy, []).append(result.time_to(args.target))
            finals.setdefault(result.policy, []).append(result.accuracy[-1])
            budget = max(budget, result.clock[-1])
        print(f"seed {seed} done at {time.time() - started:.0f} s", file=sys.stderr)

    def mean_time(policy: str) -> float:
        return statistics.fmean(t if t is not None else budget for t in times[policy])

    print(
        f"target {args.target}, sparsity {args.sparsity}, speeds {args.speeds},"
        f" {args.rounds} rounds, seeds {args.seeds}, gain {args.gain}, lr {args.lr},"
        f" exploration {args.exploration}, discount {args.discount}, normalise"
        f" {args.normalise}"
    )
    print(
        "| policy | mean time to target (s) | reached | per seed (s) | final accuracy |"
    )
    print("|---|---:|---:|---|---:|")
    for policy in sorted(times, key=mean_time):
        per_seed = " ".join("-" if t is None else f"{t:.1f}" for t in times[policy])
        reached = sum(t is not None for t in times[policy])
        print(
            f"| {policy} | {mean_time(policy):.1f} | {reached}/{len(args.seeds)} |"
            f" {per_seed} | {statistics.fmean(finals[policy]):.3f} |"
        )
    fixed = [p for p in times if p.startswith("fixed")]
    best = min(fixed, key=mean_time)
    paired = [
        (b if b is not None else budget) - (f if f is not None else budget)
        for b, f in zip(times["bandit"], times[best], strict=True)
    ]
    print(
        f"\nbest fixed: {best}; bandit - best fixed per seed:"
        f" {' '.join(f'{d:+.1f}' for d in paired)} s (mean"
        f" {statistics.fmean(paired):+.1f} s; a run that misses the target counts"
        f" as {budget:.1f} s)"
    )
    by_speed: dict[float, list[tuple[float, int]]] = {}
    for arms in bandit_arms:
        for node, arm in arms.items():
            by_speed.setdefault(args.speeds[node], []).append(arm)
    for speed, arms_seen in sorted(by_speed.items()):
        ratio = statistics.fmean(a[0] for a in arms_seen)
        rank = statistics.fmean(a[1] for a in arms_seen)
        print(
            f"bandit's last 5 rounds before the target, devices of speed {speed:g}:"
            f" mean ratio {ratio:.2f}, mean rank {rank:.1f}"
        )
    print(f"wall {time.time() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
