"""Summaries of the phase table: per node and round, round times, medians, study ratios.

Every function takes the phase table of docs/events.md (one or many runs) and
returns a new DataFrame; nothing here reads files or plots. docs/report.md
defines each number.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from analysis.phases import CLIENT_PHASES, PHASES

RUN_KEYS = ["campaign", "run_id", "network", "strategy", "repetition"]
NODE_ROUND_KEYS = [*RUN_KEYS, "round", "node", "phase"]
NODE_PHASES = ("downlink", "training", "evaluation", "uplink")
TRANSFER_PHASES = ("downlink", "uplink")
# Networks the study compares, in the order figures and tables show them.
KNOWN_NETWORKS = ("ethernet", "wifi", "5g")
_LABELS = {"ethernet": "Ethernet", "wifi": "WiFi", "5g": "5G"}


def network_order(names: Iterable[str]) -> list[str]:
    """Networks sorted as Ethernet, WiFi, 5G (case-insensitive) first, then by name."""
    unique = sorted(set(names))
    known = {n.lower(): i for i, n in enumerate(KNOWN_NETWORKS)}
    return sorted(unique, key=lambda n: (known.get(n.lower(), len(known)), n))


def per_node_round(df: pd.DataFrame) -> pd.DataFrame:
    """Seconds per (run, round, node, phase), summed over message types.

    The uplink of a round is the train reply's uplink plus the evaluate reply's;
    ``bytes`` is summed likewise (null when no row carried bytes) and
    ``messages`` counts the rows summed. ``complete`` is False for a downlink
    or uplink sum that misses a message the node handled (its capture was not
    matched), since that sum would understate the phase; medians skip those.
    """
    grouped = df.groupby(NODE_ROUND_KEYS, sort=True, observed=True, dropna=False)
    out = grouped.agg(
        duration_s=("duration_s", "sum"),
        bytes=("bytes", lambda s: s.sum(min_count=1)),
        messages=("duration_s", "size"),
    ).reset_index()
    out["bytes"] = out["bytes"].astype("Int64")
    handled = (
        df[df["phase"].isin(CLIENT_PHASES)]
        .groupby([*RUN_KEYS, "round", "node"], observed=True)
        .size()
        .rename("handled")
        .reset_index()
    )
    out = out.merge(handled, on=[*RUN_KEYS, "round", "node"], how="left")
    transfer = out["phase"].isin(TRANSFER_PHASES)
    out["complete"] = ~transfer | (out["messages"] >= out["handled"].fillna(0))
    return out.drop(columns="handled")


def _node_completeness(df: pd.DataFrame) -> pd.DataFrame:
    """Per (run, round, node): does every stamped message have a downlink and uplink."""
    client = df[df["phase"].isin(NODE_PHASES)]
    counts = (
        client.groupby([*RUN_KEYS, "round", "node", "phase"], observed=True)
        .size()
        .unstack("phase", fill_value=0)
        .reindex(columns=list(NODE_PHASES), fill_value=0)
    )
    computed = counts["training"] + counts["evaluation"]
    complete = (
        (computed > 0)
        & (counts["downlink"] == computed)
        & (counts["uplink"] == computed)
    )
    return complete.rename("node_complete").reset_index()


def round_times(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, round): the slowest node and the round time.

    ``slowest_node_s`` is the largest, over the round's nodes, of a node's
    downlink + training + evaluation + uplink (both message types);
    ``slowest_uplink_s`` is that node's uplink; ``aggregation_s`` is the
    server's aggregation (NaN when not recorded); ``round_s`` is
    ``slowest_node_s + aggregation_s`` (missing terms count as 0). ``complete``
    is True when every node's messages all have a downlink and an uplink and
    the aggregation was recorded: only complete rounds go into study ratios.
    """
    keys = [*RUN_KEYS, "round"]
    per_node = per_node_round(df)
    client = per_node[per_node["phase"].isin(NODE_PHASES)]
    totals = client.groupby([*keys, "node"], observed=True)["duration_s"].sum()
    uplinks = (
        client[client["phase"] == "uplink"]
        .groupby([*keys, "node"], observed=True)["duration_s"]
        .sum()
    )
    nodes = pd.DataFrame({"node_s": totals}).join(uplinks.rename("uplink_s"))
    nodes = nodes.reset_index().merge(
        _node_completeness(df), on=[*keys, "node"], how="left"
    )
    nodes["uplink_s"] = nodes["uplink_s"].fillna(0.0)
    nodes["node_complete"] = nodes["node_complete"].fillna(False).astype(bool)
    nodes = nodes.sort_values(
        [*keys, "node_s", "node"], ascending=[*[True] * 6, False, True]
    )
    slowest = nodes.groupby(keys, observed=True, sort=True).agg(
        slowest_node=("node", "first"),
        slowest_node_s=("node_s", "first"),
        slowest_uplink_s=("uplink_s", "first"),
        nodes=("node", "size"),
        nodes_complete=("node_complete", "all"),
    )
    aggregation = (
        per_node[per_node["phase"] == "aggregation"]
        .groupby(keys, observed=True)["duration_s"]
        .sum()
        .rename("aggregation_s")
    )
    out = slowest.join(aggregation, how="outer").reset_index()
    out["nodes"] = out["nodes"].fillna(0).astype("int64")
    out["round_s"] = out["slowest_node_s"].fillna(0.0) + out["aggregation_s"].fillna(
        0.0
    )
    out["complete"] = (
        out["nodes_complete"].fillna(False).astype(bool) & out["aggregation_s"].notna()
    )
    columns = [
        *keys,
        "nodes",
        "slowest_node",
        "slowest_node_s",
        "slowest_uplink_s",
        "aggregation_s",
        "round_s",
        "complete",
    ]
    return out[columns].sort_values(keys).reset_index(drop=True)


def round_time_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per network: rounds, complete rounds, median and p95 round seconds.

    Medians and p95 are over complete rounds only (see :func:`round_times`);
    NaN when a network has none.
    """
    rounds = round_times(df)
    complete = rounds[rounds["complete"]]
    out = pd.DataFrame(
        {
            "rounds": rounds.groupby("network").size(),
            "complete_rounds": complete.groupby("network").size(),
            "median_round_s": complete.groupby("network")["round_s"].median(),
            "p95_round_s": complete.groupby("network")["round_s"].quantile(0.95),
        }
    )
    out["rounds"] = out["rounds"].fillna(0).astype("int64")
    out["complete_rounds"] = out["complete_rounds"].fillna(0).astype("int64")
    out = out.reindex(network_order(out.index))
    out.index.name = "network"
    return out


def _phase_samples(df: pd.DataFrame) -> pd.DataFrame:
    """Complete per (run, round, node, phase) seconds, aggregation included."""
    samples = per_node_round(df)
    return samples.loc[samples["complete"], [*NODE_ROUND_KEYS, "duration_s"]]


def median_phase_table(df: pd.DataFrame) -> pd.DataFrame:
    """Median seconds per network (rows) and phase (columns), plus ``n`` rounds.

    A cell is the median over (run, round, node) of :func:`per_node_round`'s
    complete seconds for that phase (aggregation: over (run, round)); NaN when
    the phase was never recorded on that network. ``n`` counts the (run, round)
    pairs.
    """
    samples = _phase_samples(df)
    medians = samples.pivot_table(
        index="network", columns="phase", values="duration_s", aggfunc="median"
    )
    medians = medians.reindex(columns=list(PHASES))
    rounds = (
        df[["network", "run_id", "round"]].drop_duplicates().groupby("network").size()
    )
    medians["n"] = rounds.reindex(medians.index).fillna(0).astype("int64")
    medians = medians.reindex(network_order(medians.index))
    medians.index.name = "network"
    medians.columns.name = None
    return medians


def phase_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Long table per (network, phase): ``n`` samples, median, p95 and mean seconds."""
    samples = _phase_samples(df)
    grouped = samples.groupby(["network", "phase"], observed=True)["duration_s"]
    out = grouped.agg(
        n="size",
        median_s="median",
        p95_s=lambda s: s.quantile(0.95),
        mean_s="mean",
    ).reset_index()
    networks = {n: i for i, n in enumerate(network_order(out["network"]))}
    phases = {p: i for i, p in enumerate(PHASES)}
    order = out["network"].map(networks) * len(PHASES) + out["phase"].map(phases)
    return (
        out.assign(_o=order).sort_values("_o").drop(columns="_o").reset_index(drop=True)
    )


def _find_network(names: Iterable[str], wanted: str) -> str | None:
    matches = sorted(n for n in names if n.lower() == wanted)
    return matches[0] if matches else None


def _uplink_medians(df: pd.DataFrame) -> pd.Series:
    samples = _phase_samples(df)
    uplink = samples[samples["phase"] == "uplink"]
    return uplink.groupby("network", observed=True)["duration_s"].median()


def study_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """The study's headline numbers, one row each: ``metric``, ``network``, ``value``.

    - ``5G uplink / Ethernet uplink`` and ``5G uplink / WiFi uplink``: ratio of
      the medians over (run, round, node) of the per-round uplink seconds (train
      and evaluate replies summed). Omitted when either network is absent or the
      denominator is 0.
    - ``uplink share of the round`` (one row per network): median over complete
      (run, round) of the round's slowest node's uplink seconds divided by the
      round time (see :func:`round_times`).
    """
    rows: list[dict[str, object]] = []
    uplink = _uplink_medians(df)
    fiveg = _find_network(uplink.index, "5g")
    for other_key in ("ethernet", "wifi"):
        other = _find_network(uplink.index, other_key)
        if fiveg is None or other is None or not uplink[other] > 0:
            continue
        rows.append(
            {
                "metric": f"5G uplink / {_LABELS[other_key]} uplink",
                "network": f"{fiveg} / {other}",
                "value": float(uplink[fiveg] / uplink[other]),
                "definition": "ratio of median per-round uplink seconds per node",
            }
        )
    rounds = round_times(df)
    rounds = rounds[rounds["complete"] & (rounds["round_s"] > 0)]
    share = (
        (rounds["slowest_uplink_s"] / rounds["round_s"])
        .groupby(rounds["network"])
        .median()
    )
    for network in network_order(share.index):
        rows.append(
            {
                "metric": "uplink share of the round",
                "network": network,
                "value": float(share[network]),
                "definition": "median over rounds of slowest node's uplink / round",
            }
        )
    return pd.DataFrame(rows, columns=["metric", "network", "value", "definition"])
