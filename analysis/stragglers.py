"""Stragglers: per round the slowest node, its lead and the phase that made it slow.

In a Flower round every node's round (first dispatch to last pickup) ends at about
the same poll, so round times cannot tell nodes apart. What the others wait for is
a node's *busy* time: its seconds in every phase but the waiting ones
(``dispatch_wait``, ``pickup_wait``, ``server_other``) and the server's
``aggregation``, i.e. downlink, client start-up, training, evaluation, reply
hand-off and uplink (an untiled round has only downlink, training, evaluation and
uplink). Per (run, round), :func:`straggler_rounds` names the busiest node, its
lead over the round's median node, the runner-up and the *cause*: the phase in
which it spent the most seconds more than the round's median node.
:func:`straggler_summary` says per network and strategy how often the same node
was the straggler.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.rollup import Rollup, rollup
from analysis.summary import PHASE_ORDER, sort_by_network

ROUND_KEYS = ["network", "strategy", "run_id", "repetition", "round"]
# Time a node waits (for Flower's polls, the others or the server) is not busy.
NOT_BUSY = ("dispatch_wait", "pickup_wait", "server_other", "aggregation")
# Nor is an unresolved stretch a phase that could be the cause.
NOT_A_CAUSE = (*NOT_BUSY, "unresolved")
# The most frequent straggler is "consistent" when it lagged in more than this
# share of a network's rounds (a strict majority), judged from at least
# MIN_ROUNDS_FOR_VERDICT rounds; with fewer, one round decides too much.
CONSISTENT_SHARE = 0.5
MIN_ROUNDS_FOR_VERDICT = 3


def _verdict(share: float, rounds: int) -> str:
    if rounds < MIN_ROUNDS_FOR_VERDICT:
        return "too few rounds to tell"
    return "consistent" if share > CONSISTENT_SHARE else "competing"


STRAGGLER_COLUMNS = [
    *ROUND_KEYS,
    "nodes",
    "straggler",
    "straggler_busy_s",
    "median_busy_s",
    "lead_s",
    "lead_share",
    "runner_up",
    "runner_up_gap_s",
    "cause_phase",
    "cause_excess_s",
]
SUMMARY_COLUMNS = [
    "network",
    "strategy",
    "rounds",
    "distinct_stragglers",
    "top_straggler",
    "top_rounds",
    "top_share",
    "second_straggler",
    "second_share",
    "verdict",
    "median_lead_s",
    "usual_cause",
]


def _rolled(df: pd.DataFrame, warmup_rounds: int, rolled: Rollup | None) -> Rollup:
    """The rollup of the rounds after the warm-up (``rolled`` when there is none)."""
    if warmup_rounds < 0:
        raise ValueError(f"warmup_rounds must be 0 or more, got {warmup_rounds}")
    if rolled is not None and warmup_rounds == 0:
        return rolled
    return rollup(df[df["round"] > warmup_rounds])


def node_leads(
    df: pd.DataFrame, warmup_rounds: int = 0, rolled: Rollup | None = None
) -> pd.DataFrame:
    """Per (run, round, node): ``busy_s`` and ``lead_s`` over the round's median node.

    Rounds up to ``warmup_rounds`` are left out; the heatmap draws this table.
    ``rolled`` is ``rollup(df)`` when the caller has it already.
    """
    rolled = _rolled(df, warmup_rounds, rolled)
    nodes = rolled.node_rounds()
    busy = [
        i
        for i, phase in enumerate(rolled.phases)
        if phase in PHASE_ORDER and phase not in NOT_BUSY
    ]
    seconds = rolled.seconds[:, np.asarray(busy, dtype=np.int64)].sum(axis=1)
    nodes["busy_s"] = seconds[~rolled.is_server]
    nodes = nodes[nodes["busy_s"] > 0]
    median = nodes.groupby(["run_id", "round"], observed=True)["busy_s"].transform(
        "median"
    )
    out = nodes[[*ROUND_KEYS, "node", "busy_s"]].copy()
    out["lead_s"] = nodes["busy_s"] - median
    return out.reset_index(drop=True)


def _causes(rolled: Rollup, leaders: pd.DataFrame) -> pd.DataFrame:
    """Per (run, round): the straggler's phase furthest above the median node's."""
    columns = [
        i
        for i, phase in enumerate(rolled.phases)
        if phase in PHASE_ORDER and phase not in NOT_A_CAUSE
    ]
    nodes = np.flatnonzero(~rolled.is_server)
    run_ids = rolled.runs["run_id"].to_numpy()[rolled.run[nodes]]
    index = pd.MultiIndex.from_arrays(
        [run_ids, rolled.round[nodes], rolled.nodes[rolled.node[nodes]]],
        names=["run_id", "round", "node"],
    )
    wide = pd.DataFrame(
        rolled.seconds[np.ix_(nodes, np.asarray(columns, dtype=np.int64))],
        index=index,
        columns=rolled.phases[columns],
    )
    empty = pd.DataFrame(
        {"cause_phase": pd.Series(dtype=str), "cause_excess_s": pd.Series(dtype=float)}
    )
    if wide.empty or not columns:
        return empty.reindex(leaders.index)
    median = wide.groupby(level=["run_id", "round"]).transform("median")
    excess = wide - median
    keys = pd.MultiIndex.from_frame(leaders[["run_id", "round", "straggler"]])
    values = excess.reindex(keys).to_numpy(dtype=float)
    best = np.where(np.isnan(values), -np.inf, values).argmax(axis=1)
    phases = np.asarray(excess.columns, dtype=object)
    return pd.DataFrame(
        {
            "cause_phase": phases[best],
            "cause_excess_s": values[np.arange(len(values)), best],
        },
        index=leaders.index,
    )


def straggler_rounds(
    df: pd.DataFrame, warmup_rounds: int = 0, rolled: Rollup | None = None
) -> pd.DataFrame:
    """One row per (run, round) with nodes: the straggler, its lead and the cause.

    ``lead_s`` = straggler's busy seconds minus the median node's,
    ``lead_share`` = that over the median; ``runner_up_gap_s`` = how far ahead
    of the second busiest node it was (NaN with one node). ``rolled`` is
    ``rollup(df)`` when the caller has it already.
    """
    rolled = _rolled(df, warmup_rounds, rolled)
    leads = node_leads(df, 0, rolled)
    if leads.empty:
        return pd.DataFrame(columns=STRAGGLER_COLUMNS)
    ordered = leads.sort_values(
        ["run_id", "round", "busy_s", "node"], ascending=[True, True, False, True]
    )
    grouped = ordered.groupby(["run_id", "round"], sort=True, observed=True)
    first = grouped.nth(0).set_index(["run_id", "round"])
    second = grouped.nth(1).set_index(["run_id", "round"])
    median = grouped["busy_s"].median()
    out = first[[k for k in ROUND_KEYS if k not in ("run_id", "round")]].copy()
    out["nodes"] = grouped.size()
    out["straggler"] = first["node"]
    out["straggler_busy_s"] = first["busy_s"]
    out["median_busy_s"] = median
    out["lead_s"] = out["straggler_busy_s"] - out["median_busy_s"]
    out["lead_share"] = out["lead_s"] / out["median_busy_s"].where(
        out["median_busy_s"] > 0
    )
    out["runner_up"] = second["node"].reindex(out.index)
    out["runner_up_gap_s"] = out["straggler_busy_s"] - second["busy_s"].reindex(
        out.index
    )
    out = out.reset_index()
    causes = _causes(rolled, out)
    out = pd.concat([out, causes], axis=1)
    return pd.DataFrame(
        out[STRAGGLER_COLUMNS]
        .sort_values(["network", "strategy", "repetition", "round"])
        .reset_index(drop=True)
    )


def straggler_summary(rounds: pd.DataFrame) -> pd.DataFrame:
    """Per network and strategy: how often each node was the straggler.

    ``verdict`` is ``consistent`` when the most frequent straggler lagged in more
    than :data:`CONSISTENT_SHARE` of the rounds, else ``competing`` (``too few
    rounds to tell`` below :data:`MIN_ROUNDS_FOR_VERDICT` rounds);
    ``usual_cause`` is the most frequent cause phase of the top straggler's rounds.
    """
    rows = []
    for (network, strategy), group in rounds.groupby(["network", "strategy"]):
        counts = group["straggler"].value_counts()
        counts = counts.sort_index().sort_values(ascending=False, kind="stable")
        top = str(counts.index[0])
        share = counts.iloc[0] / len(group)
        second = str(counts.index[1]) if len(counts) > 1 else ""
        mine = group[group["straggler"] == top]
        causes = mine["cause_phase"].value_counts()
        rows.append(
            {
                "network": network,
                "strategy": strategy,
                "rounds": len(group),
                "distinct_stragglers": len(counts),
                "top_straggler": top,
                "top_rounds": int(counts.iloc[0]),
                "top_share": float(share),
                "second_straggler": second,
                "second_share": float(counts.iloc[1] / len(group)) if second else 0.0,
                "verdict": _verdict(share, len(group)),
                "median_lead_s": float(group["lead_s"].median()),
                "usual_cause": str(causes.index[0]) if len(causes) else "",
            }
        )
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return sort_by_network(out)
