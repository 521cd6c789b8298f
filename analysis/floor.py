"""The floor of a round (links plus compute) and how far the round lies above it.

The **floor** of a (run, round) is what the network and the devices alone would
cost: the floor node's downlink + training + evaluation + uplink seconds (train
and evaluate messages summed; on the wire where the capture saw the transfer,
else the SuperNode's log window) plus the server's aggregation timer. The
**floor node** is the node whose four phases add up to the most seconds (ties:
first by name); it is not the round's straggler (the busiest node, which also
counts client start-up and reply hand-off: Flower's cost, not the floor's).

:func:`floor_table` gives per network and strategy, for one launch mode: the
median round time and median floor over the complete rounds, their ratio
(``round_over_floor``, a ratio of medians) and Flower's share of the round
(:data:`analysis.summary.PHASE_CLASSES` ``flower``: dispatch_wait,
client_startup, reply_handoff, pickup_wait, server_other, as a share of all
node-round seconds, :func:`analysis.summary.phase_shares`). The launch mode is
a campaign's (manifest.json); :func:`launch_of` reads it. docs/report.md
defines every column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.summary import (
    NODE_KEYS,
    NODE_PHASES,
    RUN_KEYS,
    SERVER_NODE,
    phase_shares,
    round_times,
    sort_by_network,
)

STOCK = "stock"
FLOOR_CLASS = "flower"
FLOOR_COLUMNS = [
    "network",
    "strategy",
    "mode",
    "levers",
    "rounds",
    "median_round_s",
    "median_floor_s",
    "round_over_floor",
    "flower_share",
]
ROUND_FLOOR_COLUMNS = [
    *RUN_KEYS,
    "round",
    "floor_node",
    "floor_node_s",
    "aggregation_s",
    "floor_s",
    "round_s",
    "complete",
]


@dataclass(frozen=True)
class Launch:
    """A campaign's launch mode and the levers it turned on, as its manifest says."""

    mode: str = STOCK
    levers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.mode:
            raise ValueError("Launch.mode must be a non-empty name, e.g. 'stock'")

    @property
    def label(self) -> str:
        """``stock`` or ``low-latency: lever-a, lever-b``."""
        return f"{self.mode}: {', '.join(self.levers)}" if self.levers else self.mode


def _levers(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return ()


def launch_of(manifest: Mapping[str, Any]) -> Launch:
    """The launch mode a manifest records; ``stock`` with no lever when it has none.

    Read, in this order: a top-level ``launch`` string with ``launch_levers``
    (a list); a top-level ``launch`` object ``{"launch"|"mode": ..., "levers":
    [...]}``; the same two shapes inside ``manifest["campaign"]``. Anything
    else (an older manifest, a malformed value) counts as stock.
    """
    campaign = manifest.get("campaign")
    for source in (manifest, campaign if isinstance(campaign, Mapping) else {}):
        value = source.get("launch")
        if isinstance(value, str) and value:
            return Launch(value, _levers(source.get("launch_levers")))
        if isinstance(value, Mapping):
            mode = value.get("launch", value.get("mode"))
            if isinstance(mode, str) and mode:
                return Launch(mode, _levers(value.get("levers")))
    return Launch()


def round_floors(df: pd.DataFrame, rounds: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (run, round): the floor node, its seconds, the floor, the round.

    ``floor_node_s`` is the floor node's downlink + training + evaluation +
    uplink seconds, ``floor_s`` = ``floor_node_s + aggregation_s`` (the server's
    timer; NaN when either is missing). ``round_s`` and ``complete`` come from
    ``rounds`` (:func:`analysis.summary.round_times`, computed when not given).
    """
    keys = [*RUN_KEYS, "round"]
    if rounds is None:
        rounds = round_times(df)
    work = df[(df["node"] != SERVER_NODE) & df["phase"].isin(NODE_PHASES)]
    per_node = (
        work.groupby(NODE_KEYS, observed=True, sort=True)["duration_s"]
        .sum()
        .rename("floor_node_s")
        .reset_index()
        .sort_values(
            [*keys, "floor_node_s", "node"],
            ascending=[*[True] * len(keys), False, True],
        )
    )
    top = per_node.groupby(keys, observed=True, sort=True).agg(
        floor_node=("node", "first"), floor_node_s=("floor_node_s", "first")
    )
    out = rounds[[*keys, "aggregation_s", "round_s", "complete"]].merge(
        top.reset_index(), on=keys, how="left"
    )
    out["floor_s"] = out["floor_node_s"] + out["aggregation_s"]
    return out[ROUND_FLOOR_COLUMNS].sort_values(keys).reset_index(drop=True)


def flower_share(df: pd.DataFrame) -> float:
    """Flower's waiting and start-up as a share of all tiled node-round seconds.

    NaN when the table has no tiled node round (nothing to share out).
    """
    shares = phase_shares(df, pd.Series(dtype="float64"))
    total = float(shares["seconds"].sum()) if len(shares) else 0.0
    if not total > 0:
        return float("nan")
    flower = shares.loc[shares["phase_class"] == FLOOR_CLASS, "seconds"].sum()
    return float(flower) / total


def floor_table(
    df: pd.DataFrame,
    launch: Launch | None = None,
    warmup_rounds: int = 0,
    rounds: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per network and strategy: median round, median floor, ratio, Flower's share.

    Medians are over complete rounds after ``warmup_rounds`` (as the study's
    round time) that have a floor; ``round_over_floor`` = median round / median
    floor. ``flower_share`` is over every tiled node round after the warm-up
    (:func:`flower_share`). ``mode`` and ``levers`` (comma-joined) are
    ``launch``'s (default stock). ``rounds`` is
    :func:`analysis.summary.round_times` of ``df`` when the caller has it.
    """
    launch = launch or Launch()
    kept = df[df["round"] > warmup_rounds]
    floors = round_floors(df, rounds)
    floors = floors[
        (floors["round"] > warmup_rounds)
        & floors["complete"]
        & (floors["round_s"] > 0)
        & floors["floor_s"].notna()
    ]
    rows = []
    for (network, strategy), group in floors.groupby(["network", "strategy"]):
        median_round = float(group["round_s"].median())
        median_floor = float(group["floor_s"].median())
        subset = kept[(kept["network"] == network) & (kept["strategy"] == strategy)]
        rows.append(
            {
                "network": network,
                "strategy": strategy,
                "mode": launch.mode,
                "levers": ", ".join(launch.levers),
                "rounds": len(group),
                "median_round_s": median_round,
                "median_floor_s": median_floor,
                "round_over_floor": median_round / median_floor
                if median_floor > 0
                else float("nan"),
                "flower_share": flower_share(subset),
            }
        )
    out = pd.DataFrame(rows, columns=FLOOR_COLUMNS)
    return sort_by_network(out) if len(out) else out
