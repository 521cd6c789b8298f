"""FedSpine's parameters as a typed, checked dataclass (no torch, no Flower).

In its own module, beside :mod:`strategies.settings`, so that a campaign file
is checked without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BanditPolicy = Literal["ucb", "fixed"]
BANDIT_POLICIES: tuple[BanditPolicy, ...] = ("ucb", "fixed")
GainMetric = Literal["accuracy", "loss"]
GAIN_METRICS: tuple[GainMetric, ...] = ("accuracy", "loss")
Normalise = Literal["max", "decay", "gain"]
NORMALISATIONS: tuple[Normalise, ...] = ("max", "decay", "gain")
# The LoRA slots every FedSpine model carries (the app builds the model before
# it sees the strategy's parameters): a device of rank r trains the first r.
LORA_SLOTS = 8


@dataclass(frozen=True)
class FedSpineConfig:
    """A FedSpine server's parameters (Yao et al. 2025; values are ours).

    Parameters
    ----------
    ratios
        The pruning ratios the bandit may hand a device: the share of each
        block's MLP channels the device drops (lowest importance first).
    ranks
        The LoRA ranks it may hand a device; the global LoRA has the largest.
    policy
        ``ucb``: a discounted UCB bandit per device picks an arm (ratio, rank)
        each round; ``fixed``: every device gets ``fixed_ratio`` and
        ``fixed_rank`` (the baseline).
    exploration
        UCB's exploration weight ``c`` (rewards are normalised per round).
    discount
        UCB's discount per round of a device's past counts and rewards
        (1 = plain UCB; below 1 forgets as the gains shrink).
    pace_quantile
        The reward is gain / max(seconds, pace), the pace being this quantile
        of the OTHER devices' reported seconds this round (1: the slowest, so
        that max(seconds, pace) is the synchronous round time): a device
        faster than the pace is rewarded for its gain alone, a slower one per
        second.
    gain
        ``accuracy`` or ``loss``: the device's gain on its held-out share,
        after minus before training (loss: before minus after).
    normalise
        ``max``: rewards are divided by the largest seen so far; ``decay``: by
        the largest with each past round discounted by ``discount`` (gains
        shrink as the model converges, and this keeps late rewards on the
        scale of the exploration bonus); ``gain``: each gain is first divided
        by its round's mean gain (the fall of all gains as the model converges
        cancels; the seconds are left alone), then as ``max``.
    target_sparsity
        The share of MLP channels pruned from the global model when it is
        evaluated (the same for every policy).
    """

    ratios: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    ranks: tuple[int, ...] = (2, 4, 8)
    policy: BanditPolicy = "ucb"
    fixed_ratio: float = 0.5
    fixed_rank: int = 4
    exploration: float = 0.1
    discount: float = 0.9
    pace_quantile: float = 1.0
    gain: GainMetric = "accuracy"
    normalise: Normalise = "max"
    target_sparsity: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.ratios or not all(0 <= r < 1 for r in self.ratios):
            raise ValueError(
                f"fedspine ratios must be one or more numbers in [0, 1), got"
                f" {self.ratios!r}"
            )
        if not self.ranks or not all(
            int(r) == r and 1 <= r <= LORA_SLOTS for r in self.ranks
        ):
            raise ValueError(
                f"fedspine ranks must be one or more whole numbers in 1..{LORA_SLOTS},"
                f" got {self.ranks!r}"
            )
        if self.policy not in BANDIT_POLICIES:
            raise ValueError(
                f"fedspine policy must be one of {', '.join(BANDIT_POLICIES)},"
                f" got {self.policy!r}"
            )
        if self.normalise not in NORMALISATIONS:
            raise ValueError(
                f"fedspine normalise must be one of {', '.join(NORMALISATIONS)},"
                f" got {self.normalise!r}"
            )
        if self.gain not in GAIN_METRICS:
            raise ValueError(
                f"fedspine gain must be one of {', '.join(GAIN_METRICS)},"
                f" got {self.gain!r}"
            )
        if self.policy == "fixed" and (
            self.fixed_ratio not in self.ratios or self.fixed_rank not in self.ranks
        ):
            raise ValueError(
                f"fedspine fixed_ratio {self.fixed_ratio!r} and fixed_rank"
                f" {self.fixed_rank!r} must be among ratios {self.ratios} and ranks"
                f" {self.ranks}"
            )
        if self.exploration < 0 or not 0 < self.discount <= 1:
            raise ValueError(
                f"fedspine exploration must be >= 0 and discount in (0, 1], got"
                f" {self.exploration!r} and {self.discount!r}"
            )
        if not 0 <= self.pace_quantile <= 1 or not 0 <= self.target_sparsity < 1:
            raise ValueError(
                f"fedspine pace_quantile must be in [0, 1] and target_sparsity in"
                f" [0, 1), got {self.pace_quantile!r} and {self.target_sparsity!r}"
            )

    @property
    def max_rank(self) -> int:
        """The global LoRA's rank: the largest a device may get."""
        return max(self.ranks)

    @property
    def arms(self) -> tuple[tuple[float, int], ...]:
        """Every (pruning ratio, LoRA rank) the bandit chooses from."""
        return tuple((p, r) for p in self.ratios for r in self.ranks)
