"""Strategies III settings: MAS and PROAR-PFed (typed, frozen, torch-free).

A campaign file's check builds these from its parameters, so this module
imports neither Flower nor torch.
"""

from __future__ import annotations

from dataclasses import dataclass

# MAS's tasks on the digits, in head order (strategies.mas.TASKS repeats them).
MAS_TASKS = ("class", "parity", "ge5", "round", "recon")


@dataclass(frozen=True)
class MASConfig:
    """A MAS server's parameters (merge, then split; values are ours).

    Parameters
    ----------
    merge_rounds
        R1: rounds the tasks train merged (one encoder); clients measure task
        affinities in the last of them, and the split happens after it.
    groups
        Number of task groups the split makes (1 = never split: all-in-one;
        5 = one group per task).
    affinity_batches
        Minibatches a client averages its look-ahead affinities over.
    mode
        ``mas`` (merge then split), ``merged`` (all-in-one throughout) or
        ``independent`` (one encoder per task from round 1), the baselines.
    """

    merge_rounds: int = 1
    groups: int = 2
    affinity_batches: int = 4
    mode: str = "mas"

    def __post_init__(self) -> None:
        if self.merge_rounds < 1:
            raise ValueError(f"merge_rounds must be >= 1, got {self.merge_rounds!r}")
        if not 1 <= self.groups <= len(MAS_TASKS):
            raise ValueError(
                f"groups must be in 1..{len(MAS_TASKS)}, got {self.groups!r}"
            )
        if self.affinity_batches < 1:
            raise ValueError(
                f"affinity_batches must be >= 1, got {self.affinity_batches!r}"
            )
        if self.mode not in ("mas", "merged", "independent"):
            raise ValueError(
                f"mode must be mas, merged or independent, got {self.mode!r}"
            )


@dataclass(frozen=True)
class OTAConfig:
    """PROAR-PFed's simulated over-the-air uplink (a channel model, not radio).

    Parameters
    ----------
    snr_db
        Transmit SNR P / sigma^2 at the receiver, in dB (P = 1).
    ris_elements
        N, the elements of each user's own RIS (0: direct path only).
    ris_gain
        Mean power of one cascaded RIS path relative to the direct path.
    truncation
        Truncated channel inversion: a client whose effective channel power
        |h|^2 is below this does not transmit this round.
    estimation_error
        Variance of the server's channel-estimate error (relative to |h|^2).
    seed
        Seeds the channel draws (one draw per client per round).
    """

    snr_db: float = 10.0
    ris_elements: int = 16
    ris_gain: float = 0.05
    truncation: float = 0.05
    estimation_error: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ris_elements < 0:
            raise ValueError(f"ris_elements must be >= 0, got {self.ris_elements!r}")
        if not self.ris_gain >= 0 or not self.truncation >= 0:
            raise ValueError(
                f"ris_gain and truncation must be >= 0, got {self.ris_gain!r},"
                f" {self.truncation!r}"
            )
        if not self.estimation_error >= 0:
            raise ValueError(
                f"estimation_error must be >= 0, got {self.estimation_error!r}"
            )
