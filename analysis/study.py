"""The study table: per network and strategy, phase and round times with bootstrap CIs.

For every (network, strategy) and every phase of the round anatomy, the round
time (the slowest node's) and the uplink share of the round, the table gives the
median and p95 with a percentile bootstrap confidence interval; a second table
gives the ratios of those medians between networks (e.g. 5G uplink / Ethernet
uplink) with their own intervals. The bootstrap resamples the *units the
measurements are grouped in*: first repetitions (runs), then rounds within each
drawn run (a two-stage cluster bootstrap), so node rounds of one round stay
together and the spread between runs counts. Samples are those of
:mod:`analysis.summary` (per (run, round, node) seconds of a phase; aggregation:
the server's timer), so the point estimates equal its medians. docs/report.md
defines every column.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.rollup import Rollup, rollup
from analysis.summary import network_order, phase_order

ROUND_QUANTITY = "round"
UPLINK_SHARE_QUANTITY = "uplink_share"
STUDY_COLUMNS = [
    "network",
    "strategy",
    "quantity",
    "unit",
    "n",
    "rounds",
    "runs",
    "median",
    "median_low",
    "median_high",
    "p95",
    "p95_low",
    "p95_high",
]
RATIO_COLUMNS = [
    "strategy",
    "quantity",
    "numerator",
    "denominator",
    "ratio",
    "ratio_low",
    "ratio_high",
]
_UNIT_KEYS = ["run_id", "round"]


@dataclass(frozen=True)
class BootstrapConfig:
    """How the confidence intervals are drawn.

    ``resamples`` draws (fewer when ``resamples x samples`` would exceed
    ``max_cells``, never fewer than ``min_resamples``), a ``confidence``
    percentile interval, a fixed ``seed`` so a report is reproducible.
    """

    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    max_cells: int = 4_000_000
    min_resamples: int = 200

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(
                f"BootstrapConfig.confidence must lie in (0, 1), got {self.confidence}"
            )
        if self.resamples < 1 or self.min_resamples < 1:
            raise ValueError("BootstrapConfig: resamples must be at least 1")

    def draws_for(self, samples: int) -> int:
        """Resamples to draw for a statistic over ``samples`` values."""
        budget = self.max_cells // max(samples, 1)
        return max(min(self.resamples, budget), min(self.min_resamples, self.resamples))


@dataclass(frozen=True)
class Study:
    """The study table, the ratio table and the settings they were computed with."""

    table: pd.DataFrame
    ratios: pd.DataFrame
    warmup_rounds: int
    confidence: float
    draws: dict[tuple[str, str, str], np.ndarray] = field(repr=False)


def unit_weights(
    units: pd.DataFrame, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Bootstrap multiplicities of each unit (row of ``units``), shape (B, U).

    ``units`` has a ``run_id`` column (one row per (run, round)). Each draw picks
    as many runs as there are, with replacement, then, for every run drawn, as
    many of its rounds as it has, with replacement: a unit's weight is how often
    it was picked.
    """
    run_codes, runs = pd.factorize(units["run_id"], sort=True)
    by_run = np.argsort(run_codes, kind="stable")  # unit rows grouped by run
    sizes = np.bincount(run_codes, minlength=len(runs))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    picked = rng.integers(0, len(runs), size=(resamples, len(runs)))
    counts = sizes[picked][..., None]  # rounds of each drawn run
    slots = np.arange(int(sizes.max()))[None, None, :]
    rounds = np.floor(rng.random((*picked.shape, slots.shape[2])) * counts)
    valid = slots < counts
    unit = by_run[(starts[picked][..., None] + rounds.astype(np.int64))[valid]]
    draw = np.broadcast_to(np.arange(resamples)[:, None, None], valid.shape)[valid]
    flat = np.bincount(draw * len(units) + unit, minlength=resamples * len(units))
    return flat.reshape(resamples, len(units)).astype(np.int32)


def weighted_quantiles(
    values: np.ndarray,
    unit_index: np.ndarray,
    weights: np.ndarray,
    quantiles: tuple[float, ...],
) -> np.ndarray:
    """Quantiles of ``values`` under each row of unit ``weights``: shape (B, Q).

    A value counts as often as its unit (``unit_index``) was drawn; the
    quantile is the smallest value whose weighted ECDF reaches q (inverse CDF).
    """
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    # Block sums first, then a cumulative sum inside the one block that holds
    # the quantile: two passes over the (draws x values) weights instead of four.
    block = 64
    size = -(-len(values) // block) * block
    picked = np.zeros((weights.shape[0], size), dtype=np.int32)
    picked[:, : len(values)] = weights[:, unit_index[order]]
    blocks = picked.reshape(weights.shape[0], -1, block)
    before = np.cumsum(blocks.sum(axis=2, dtype=np.int64), axis=1)
    totals = before[:, -1:]
    rows = np.arange(weights.shape[0])
    out = np.empty((weights.shape[0], len(quantiles)))
    for j, q in enumerate(quantiles):
        target = np.maximum(q * totals, 1)
        hit = np.minimum((before < target).sum(axis=1), blocks.shape[1] - 1)
        start = np.where(hit > 0, before[rows, hit - 1], 0)
        inside = start[:, None] + np.cumsum(blocks[rows, hit], axis=1)
        position = hit * block + (inside < target).sum(axis=1)
        out[:, j] = ordered[np.minimum(position, len(ordered) - 1)]
    return out


def _row(
    key: tuple[str, str, str],
    values: np.ndarray,
    unit_index: np.ndarray,
    weights: np.ndarray,
    units: pd.DataFrame,
    confidence: float,
) -> tuple[dict[str, object], np.ndarray]:
    """The study row of one (network, strategy, quantity) and its median draws.

    ``unit_index`` maps each value to its row of ``units`` (the network and
    strategy's (run, round) pairs) and ``weights`` are those units' bootstrap
    multiplicities, shared by every quantity of the network and strategy.
    """
    draws = weighted_quantiles(values, unit_index, weights, (0.5, 0.95))
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1.0 - tail], axis=0)
    used = units.iloc[np.unique(unit_index)]
    network, strategy, quantity = key
    row: dict[str, object] = {
        "network": network,
        "strategy": strategy,
        "quantity": quantity,
        "unit": "share" if quantity == UPLINK_SHARE_QUANTITY else "s",
        "n": len(values),
        "rounds": len(used),
        "runs": used["run_id"].nunique(),
        "median": float(np.median(values)),
        "median_low": float(low[0]),
        "median_high": float(high[0]),
        "p95": float(np.quantile(values, 0.95)),
        "p95_low": float(low[1]),
        "p95_high": float(high[1]),
    }
    return row, draws[:, 0]


def _network_rows(
    group: pd.DataFrame,
    network: str,
    strategy: str,
    config: BootstrapConfig,
    rng: np.random.Generator,
) -> Iterator[tuple[dict[str, object], np.ndarray]]:
    """The rows of one network and strategy: one weight draw for all quantities."""
    group = group[group["value"].notna()]
    if group.empty:
        return
    run_codes, run_ids = pd.factorize(group["run_id"], sort=True)
    rounds = group["round"].to_numpy(dtype=np.int64)
    span = int(rounds.max()) + 1
    unit_keys, unit_index = np.unique(run_codes * span + rounds, return_inverse=True)
    units = pd.DataFrame(
        {
            "run_id": np.asarray(run_ids, dtype=object)[unit_keys // span],
            "round": unit_keys % span,
        }
    )
    largest = int(group.groupby("quantity", observed=True).size().max())
    weights = unit_weights(units, config.draws_for(largest), rng)
    values = group["value"].to_numpy(dtype=float)
    quantities = group["quantity"].to_numpy()
    for quantity in pd.unique(quantities):
        mine = quantities == quantity
        yield _row(
            (network, strategy, str(quantity)),
            values[mine],
            unit_index[mine],
            weights,
            units,
            config.confidence,
        )


def study_samples(
    df: pd.DataFrame, warmup_rounds: int = 0, rolled: Rollup | None = None
) -> pd.DataFrame:
    """Long samples ``network, strategy, quantity, run_id, round, value``.

    Phases: a node's seconds per round (:mod:`analysis.summary`'s samples).
    ``round``: the round time of each complete round; ``uplink_share``: the
    slowest node's uplink seconds over the round time. Rounds up to
    ``warmup_rounds`` are left out. ``rolled`` is ``rollup(df)`` when the
    caller has it already.
    """
    if warmup_rounds < 0:
        raise ValueError(f"warmup_rounds must be 0 or more, got {warmup_rounds}")
    if rolled is None or warmup_rounds:
        rolled = rollup(df[df["round"] > warmup_rounds])
    phases = rolled.phase_samples()
    keys = ["network", "strategy", "run_id", "round"]
    parts = [
        pd.DataFrame(
            {
                **{k: phases[k] for k in keys},
                "quantity": phases["phase"],
                "value": phases["duration_s"],
            }
        )
    ]
    rounds = rolled.round_times()
    rounds = rounds[rounds["complete"] & (rounds["round_s"] > 0)]
    for quantity, value in (
        (ROUND_QUANTITY, rounds["round_s"]),
        (UPLINK_SHARE_QUANTITY, rounds["slowest_uplink_s"] / rounds["round_s"]),
    ):
        parts.append(
            pd.DataFrame(
                {**{k: rounds[k] for k in keys}, "quantity": quantity, "value": value}
            )
        )
    out = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    return out.astype({"network": str, "strategy": str, "quantity": str})


def quantity_order(quantities: set[str] | list[str]) -> list[str]:
    """Phases in the anatomy's order, then round time and uplink share."""
    extra = [ROUND_QUANTITY, UPLINK_SHARE_QUANTITY]
    return [
        *phase_order(set(quantities) - set(extra)),
        *(e for e in extra if e in quantities),
    ]


def _sorted(table: pd.DataFrame, by_strategy_first: bool = False) -> pd.DataFrame:
    if table.empty:
        return table
    networks = {n: i for i, n in enumerate(network_order(table["network"]))}
    quantities = {q: i for i, q in enumerate(quantity_order(list(table["quantity"])))}
    keys = table.assign(
        _n=table["network"].map(networks), _q=table["quantity"].map(quantities)
    )
    order = ["strategy", "_n", "_q"] if by_strategy_first else ["_n", "strategy", "_q"]
    return keys.sort_values(order).drop(columns=["_n", "_q"]).reset_index(drop=True)


def _ratios(
    table: pd.DataFrame,
    draws: dict[tuple[str, str, str], np.ndarray],
    confidence: float,
) -> pd.DataFrame:
    """Each later network's median over each earlier one's, per strategy, quantity."""
    rows = []
    tail = (1.0 - confidence) / 2
    networks = network_order(table["network"])
    for (strategy, quantity), group in table.groupby(["strategy", "quantity"]):
        if quantity == UPLINK_SHARE_QUANTITY:
            continue
        medians = dict(zip(group["network"], group["median"], strict=True))
        present = [n for n in networks if n in medians]
        for i, denominator in enumerate(present):
            for numerator in present[i + 1 :]:
                if not medians[denominator] > 0:
                    continue
                top = draws[(numerator, str(strategy), str(quantity))]
                bottom = draws[(denominator, str(strategy), str(quantity))]
                size = min(len(top), len(bottom))
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio_draws = top[:size] / bottom[:size]
                ratio_draws = ratio_draws[np.isfinite(ratio_draws)]
                low, high = (
                    np.quantile(ratio_draws, [tail, 1 - tail])
                    if len(ratio_draws)
                    else (np.nan, np.nan)
                )
                rows.append(
                    {
                        "strategy": strategy,
                        "quantity": quantity,
                        "numerator": numerator,
                        "denominator": denominator,
                        "ratio": medians[numerator] / medians[denominator],
                        "ratio_low": float(low),
                        "ratio_high": float(high),
                    }
                )
    out = pd.DataFrame(rows, columns=RATIO_COLUMNS)
    if out.empty:
        return out
    quantities = {q: i for i, q in enumerate(quantity_order(list(out["quantity"])))}
    order = {n: i for i, n in enumerate(networks)}
    return (
        out.assign(
            _q=out["quantity"].map(quantities),
            _d=out["denominator"].map(order),
            _n=out["numerator"].map(order),
        )
        .sort_values(["strategy", "_q", "_d", "_n"])
        .drop(columns=["_q", "_d", "_n"])
        .reset_index(drop=True)
    )


def study_table(
    df: pd.DataFrame,
    warmup_rounds: int = 0,
    config: BootstrapConfig | None = None,
    samples: pd.DataFrame | None = None,
) -> Study:
    """The study and ratio tables of a phase table (see the module docstring).

    Rounds up to ``warmup_rounds`` (e.g. 1: round 1 includes start-up effects)
    are left out of both. ``samples`` is ``study_samples(df, warmup_rounds)``
    when the caller has it already.
    """
    config = config or BootstrapConfig()
    rng = np.random.default_rng(config.seed)
    if samples is None:
        samples = study_samples(df, warmup_rounds)
    rows, draws = [], {}
    for (network, strategy), group in samples.groupby(
        ["network", "strategy"], sort=False, observed=True
    ):
        for row, median_draws in _network_rows(
            group, str(network), str(strategy), config, rng
        ):
            rows.append(row)
            key = (str(network), str(strategy), str(row["quantity"]))
            draws[key] = median_draws
    table = _sorted(pd.DataFrame(rows, columns=STUDY_COLUMNS))
    return Study(
        table=table,
        ratios=_ratios(table, draws, config.confidence),
        warmup_rounds=warmup_rounds,
        confidence=config.confidence,
        draws=draws,
    )


def find_ratio(
    ratios: pd.DataFrame, quantity: str, numerator: str, denominator: str
) -> pd.Series | None:
    """The ratio row of ``numerator / denominator`` (network names, any case)."""
    sel = ratios[
        (ratios["quantity"] == quantity)
        & (ratios["numerator"].str.lower() == numerator.lower())
        & (ratios["denominator"].str.lower() == denominator.lower())
    ]
    return None if sel.empty else sel.iloc[0]


# A confidence interval needs at least this many resampled units ((run, round)
# pairs); with fewer, the report gives the range of the samples instead.
MIN_INTERVAL_ROUNDS = 10


def has_interval(rounds: object) -> bool:
    """Whether a study row over ``rounds`` units has enough of them for an interval."""
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Real):
        return False
    return float(rounds) >= MIN_INTERVAL_ROUNDS


def sample_ranges(samples: pd.DataFrame) -> pd.DataFrame:
    """Per network, strategy and quantity: ``min`` and ``max`` of the samples."""
    grouped = samples.groupby(["network", "strategy", "quantity"], observed=True)
    return grouped["value"].agg(["min", "max"]).reset_index()
