"""Summaries of the phase table: per node and round, round times, medians, anatomy.

Every function takes the phase table of docs/events.md (one or many runs) and
returns a new DataFrame; nothing here reads files or plots. docs/report.md
defines each number.

Two generations of phase table are read. A *tiled* node round (it has rows of
the round anatomy's derived phases, e.g. ``dispatch_wait``; analysis/anatomy.py
makes them) covers the node's round without gaps, from the server's first dispatch
to its last pickup, so its round time is the sum of its phases. An untiled node
round (an older table, or a round the tiling could not resolve) only has
downlink, training, evaluation and uplink; its round time is their sum, and the
round adds the server's aggregation. Columns a table lacks (``uncertainty_s``,
``message_id``) give NaN, never an error.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

RUN_KEYS = ["campaign", "run_id", "network", "strategy", "repetition"]
NODE_KEYS = [*RUN_KEYS, "round", "node"]
NODE_ROUND_KEYS = [*NODE_KEYS, "phase"]
# The round anatomy, in time order: one message on one node from dispatch to
# pickup, then what the server does between that node's messages of a round.
PHASE_ORDER = (
    "dispatch_wait",
    "downlink",
    "client_startup",
    "training",
    "evaluation",
    "reply_handoff",
    "uplink",
    "pickup_wait",
    "aggregation",
    "server_other",
    "unresolved",
)
# One line each, as docs/anatomy.md defines them.
PHASE_DEFINITIONS = {
    "dispatch_wait": "dispatch → downlink start: the instruction waits at the "
    "SuperLink until the SuperNode's poll picks it up",
    "downlink": "the instruction on the wire (captured payload bytes), else the "
    "SuperNode's receive log window",
    "client_startup": "downlink end → handler start: the SuperNode hands off, the "
    "flwr-clientapp process starts and imports the app",
    "training": "the app's train handler, stamped by the client mod",
    "evaluation": "the app's evaluate handler, stamped by the client mod",
    "reply_handoff": "handler end → uplink start: the reply goes back to the "
    "SuperNode, which serialises it",
    "uplink": "the reply on the wire (captured payload bytes), else the "
    "SuperNode's send log window",
    "pickup_wait": "uplink end → pickup: the reply waits at the SuperLink until "
    "the ServerApp pulls it (Flower's poll)",
    "aggregation": "the part of the gap between this node's messages that the "
    "server's aggregation timer covers (node server: the timer itself)",
    "server_other": "the rest of that gap: waiting for the other nodes' replies, "
    "configure_evaluate, server-side bookkeeping",
    "unresolved": "a stretch whose inner instants are unknown (e.g. no downlink "
    "matched): exact in total, not split into phases",
}
# Phases the tiling derives from the instants around them: their presence marks a
# tiled node round (analysis/anatomy.py GAP_PHASES).
GAP_PHASES = (
    "dispatch_wait",
    "client_startup",
    "reply_handoff",
    "pickup_wait",
    "server_other",
    "unresolved",
)
# Phases that are waiting on Flower's polling or on other nodes, not work.
WAITING_PHASES = ("dispatch_wait", "pickup_wait", "server_other")
# Phases every message has once: a per-round sum missing one understates the phase.
MESSAGE_PHASES = (
    "dispatch_wait",
    "downlink",
    "client_startup",
    "reply_handoff",
    "uplink",
    "pickup_wait",
)
COMPUTE_PHASES = ("training", "evaluation")
TRANSFER_PHASES = ("downlink", "uplink")
# An untiled node's round time, and the columns every median table shows.
NODE_PHASES = ("downlink", "training", "evaluation", "uplink")
LEGACY_PHASES = (*NODE_PHASES, "aggregation")
SERVER_NODE = "server"
# Networks the study compares, in the order figures and tables show them.
KNOWN_NETWORKS = ("ethernet", "wifi", "5g")
_LABELS = {"ethernet": "Ethernet", "wifi": "WiFi", "5g": "5G"}


def network_order(names: Iterable[str]) -> list[str]:
    """Networks sorted as Ethernet, WiFi, 5G (case-insensitive) first, then by name."""
    unique = sorted(set(names))
    known = {n.lower(): i for i, n in enumerate(KNOWN_NETWORKS)}
    return sorted(unique, key=lambda n: (known.get(n.lower(), len(known)), n))


def phase_order(names: Iterable[str]) -> list[str]:
    """Phases in :data:`PHASE_ORDER`, then any phase it does not know by name."""
    present = set(names)
    return [p for p in PHASE_ORDER if p in present] + sorted(present - {*PHASE_ORDER})


def tiled_runs(df: pd.DataFrame) -> set[str]:
    """Run ids with at least one tiled node round (see the module docstring)."""
    return set(df.loc[df["phase"].isin(GAP_PHASES), "run_id"])


def _uncertainty(df: pd.DataFrame) -> pd.Series:
    if "uncertainty_s" in df.columns:
        return df["uncertainty_s"].astype("float64")
    return pd.Series(float("nan"), index=df.index, dtype="float64")


def per_node_round(df: pd.DataFrame) -> pd.DataFrame:
    """Seconds per (run, round, node, phase), summed over message types.

    The uplink of a round is the train reply's uplink plus the evaluate reply's;
    ``bytes`` and ``uncertainty_s`` are summed likewise (null when no row carried
    one; summed clock uncertainties bound the sum's) and ``messages`` counts the
    rows summed. ``complete`` is False for a sum of a per-message phase
    (:data:`MESSAGE_PHASES`, e.g. downlink) that misses a message the node
    handled (not matched, or an ``unresolved`` stretch in its place), since that
    sum would understate the phase; medians skip those, and ``unresolved`` sums,
    which are no phase. Rows of node ``server`` (the server's aggregation timer)
    stay apart under that node name.
    """
    rows = df.assign(uncertainty_s=_uncertainty(df))
    grouped = rows.groupby(NODE_ROUND_KEYS, sort=True, observed=True, dropna=False)
    out = pd.DataFrame(
        {
            "duration_s": grouped["duration_s"].sum(),
            "bytes": grouped["bytes"].sum(min_count=1),
            "uncertainty_s": grouped["uncertainty_s"].sum(min_count=1),
            "messages": grouped.size(),
        }
    ).reset_index()
    out["bytes"] = out["bytes"].astype("Int64")
    out["uncertainty_s"] = out["uncertainty_s"].astype("float64")
    handled = (
        df[df["phase"].isin(COMPUTE_PHASES)]
        .groupby(NODE_KEYS, observed=True)
        .size()
        .rename("handled")
        .reset_index()
    )
    out = out.merge(handled, on=NODE_KEYS, how="left")
    per_message = out["phase"].isin(MESSAGE_PHASES)
    out["complete"] = (~per_message | (out["messages"] >= out["handled"].fillna(0))) & (
        out["phase"] != "unresolved"
    )
    return out.drop(columns="handled")


def node_rounds(df: pd.DataFrame) -> pd.DataFrame:
    """Per (run, round, node), server left out: round seconds, tiling, completeness.

    ``node_s`` is the sum of the node's phases when the node round is ``tiled``
    (it has derived phases, :data:`GAP_PHASES`), else downlink + training +
    evaluation + uplink. ``uplink_s`` is its uplink seconds. ``node_complete``
    is True when the node handled a message, every message has a downlink and
    an uplink, and no stretch is ``unresolved``.
    """
    nodes = df[df["node"] != SERVER_NODE]
    if nodes.empty:
        typed = {c: pd.Series(dtype=df[c].dtype) for c in NODE_KEYS}
        return pd.DataFrame(
            {
                **typed,
                "tiled": pd.Series(dtype=bool),
                "node_s": pd.Series(dtype="float64"),
                "uplink_s": pd.Series(dtype="float64"),
                "node_complete": pd.Series(dtype=bool),
            }
        )
    counts = (
        nodes.groupby([*NODE_KEYS, "phase"], observed=True)
        .size()
        .unstack("phase", fill_value=0)
        .reindex(columns=[*TRANSFER_PHASES, *COMPUTE_PHASES, *GAP_PHASES], fill_value=0)
    )
    computed = counts["training"] + counts["evaluation"]
    status = pd.DataFrame(
        {
            "tiled": counts[list(GAP_PHASES)].sum(axis=1) > 0,
            "node_complete": (computed > 0)
            & (counts["downlink"] == computed)
            & (counts["uplink"] == computed)
            & (counts["unresolved"] == 0),
        }
    )
    per = per_node_round(nodes).merge(status.reset_index(), on=NODE_KEYS, how="left")
    counted = per[
        (per["tiled"] & per["phase"].isin(PHASE_ORDER))
        | (~per["tiled"] & per["phase"].isin(NODE_PHASES))
    ]
    uplinks = counted[counted["phase"] == "uplink"]
    sums = pd.DataFrame(
        {
            "node_s": counted.groupby(NODE_KEYS, observed=True)["duration_s"].sum(),
            "uplink_s": uplinks.groupby(NODE_KEYS, observed=True)["duration_s"].sum(),
        }
    )
    out = status.join(sums, how="left").reset_index()
    out["node_s"] = out["node_s"].fillna(0.0)
    out["uplink_s"] = out["uplink_s"].fillna(0.0)
    return out[[*NODE_KEYS, "tiled", "node_s", "uplink_s", "node_complete"]]


def _server_aggregation(df: pd.DataFrame) -> pd.Series:
    server = df[(df["phase"] == "aggregation") & (df["node"] == SERVER_NODE)]
    grouped = server.groupby([*RUN_KEYS, "round"], observed=True)["duration_s"]
    return grouped.sum().rename("aggregation_s")


def _flag(values: pd.Series) -> pd.Series:
    """Booleans from a column an outer join may have filled with NaN (as False)."""
    return values.astype("boolean").fillna(False).astype(bool)


def round_times(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, round): the slowest node and the round time.

    A round is ``tiled`` when any of its node rounds is (see :func:`node_rounds`).
    ``slowest_node`` is the node with the most round seconds (ties: first by
    name), ``slowest_node_s`` its seconds and ``slowest_uplink_s`` its uplink.
    ``aggregation_s`` is the server's aggregation timer (node ``server``; NaN
    when not recorded). ``round_s`` is ``slowest_node_s`` in a tiled round (the
    aggregation lies inside every node's tiling), else ``slowest_node_s +
    aggregation_s`` (a missing term counts as 0). ``complete`` is True when every
    node round is complete, the aggregation was recorded and, in a tiled round,
    every node round is tiled: only complete rounds go into medians of round
    time and the study ratios.
    """
    keys = [*RUN_KEYS, "round"]
    nodes = node_rounds(df).sort_values(
        [*keys, "node_s", "node"], ascending=[*[True] * len(keys), False, True]
    )
    slowest = nodes.groupby(keys, observed=True, sort=True).agg(
        slowest_node=("node", "first"),
        slowest_node_s=("node_s", "first"),
        slowest_uplink_s=("uplink_s", "first"),
        nodes=("node", "size"),
        nodes_complete=("node_complete", "all"),
        tiled=("tiled", "any"),
        all_tiled=("tiled", "all"),
    )
    out = slowest.join(_server_aggregation(df), how="outer").reset_index()
    out["nodes"] = out["nodes"].fillna(0).astype("int64")
    out["tiled"] = _flag(out["tiled"])
    server_term = out["aggregation_s"].fillna(0.0).where(~out["tiled"], 0.0)
    out["round_s"] = out["slowest_node_s"].fillna(0.0) + server_term
    out["complete"] = (
        _flag(out["nodes_complete"])
        & out["aggregation_s"].notna()
        & (~out["tiled"] | _flag(out["all_tiled"]))
    )
    columns = [
        *keys,
        "nodes",
        "slowest_node",
        "slowest_node_s",
        "slowest_uplink_s",
        "aggregation_s",
        "round_s",
        "tiled",
        "complete",
    ]
    return out[columns].sort_values(keys).reset_index(drop=True)


def _most_often(values: pd.Series) -> str:
    counts = values.value_counts()
    top = counts[counts == counts.max()]
    return str(sorted(top.index)[0])


def round_time_table(
    df: pd.DataFrame, stragglers: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per network: rounds, complete rounds, median and p95 round seconds.

    Medians and p95 are over complete rounds only (see :func:`round_times`);
    NaN when a network has none. ``most_often_slowest`` is the node that was the
    slowest in most rounds (ties: first by name): with ``stragglers``
    (:func:`analysis.stragglers.straggler_rounds`) the report's one definition,
    the round's straggler (busiest node); without, the node with the most round
    seconds in most complete rounds.
    """
    return round_time_summary(round_times(df), stragglers)


def round_time_summary(
    rounds: pd.DataFrame, stragglers: pd.DataFrame | None = None
) -> pd.DataFrame:
    """:func:`round_time_table` from the rounds :func:`round_times` made."""
    complete = rounds[rounds["complete"]]
    by_network = complete.groupby("network")
    slowest = (
        by_network["slowest_node"].agg(_most_often)
        if stragglers is None
        else stragglers.groupby("network")["straggler"].agg(_most_often)
    )
    out = pd.DataFrame(
        {
            "rounds": rounds.groupby("network").size(),
            "complete_rounds": by_network.size(),
            "median_round_s": by_network["round_s"].median(),
            "p95_round_s": by_network["round_s"].quantile(0.95),
            "most_often_slowest": slowest,
        }
    )
    out["rounds"] = out["rounds"].fillna(0).astype("int64")
    out["complete_rounds"] = out["complete_rounds"].fillna(0).astype("int64")
    out = out.reindex(network_order(out.index))
    out.index.name = "network"
    return out


def sort_by_network(frame: pd.DataFrame, then: str = "strategy") -> pd.DataFrame:
    """Rows in network order (ethernet, wifi, 5g, then by name), then by ``then``."""
    order = {n: i for i, n in enumerate(network_order(frame["network"]))}
    return (
        frame.assign(_o=frame["network"].map(order))
        .sort_values(["_o", then])
        .drop(columns="_o")
        .reset_index(drop=True)
    )


_SAMPLE_COLUMNS = [*NODE_ROUND_KEYS, "duration_s", "uncertainty_s"]


def _node_phase_samples(df: pd.DataFrame) -> pd.DataFrame:
    """Per (run, round, node, phase) seconds a median may use; server left out.

    A complete tiled node round gives a sample of every phase its network's
    tiled rounds have, 0 s where it has no row (e.g. no ``server_other`` for the
    node whose reply the server waited for last). Other node rounds give their
    complete per-phase sums (:func:`per_node_round`).
    """
    per = per_node_round(df[df["node"] != SERVER_NODE])
    status = node_rounds(df)[[*NODE_KEYS, "tiled", "node_complete"]]
    per = per.merge(status, on=NODE_KEYS, how="left")
    full = _flag(per["tiled"]) & _flag(per["node_complete"])
    parts = [per.loc[~full & per["complete"], _SAMPLE_COLUMNS]]
    for _, group in per[full].groupby("network", sort=True):
        phases = pd.DataFrame({"phase": sorted(set(group["phase"]))})
        grid = group[NODE_KEYS].drop_duplicates().merge(phases, how="cross")
        filled = grid.merge(group[_SAMPLE_COLUMNS], on=NODE_ROUND_KEYS, how="left")
        absent = filled["duration_s"].isna()
        filled.loc[absent, ["duration_s", "uncertainty_s"]] = 0.0
        parts.append(filled[_SAMPLE_COLUMNS])
    return _stack(parts)


def _stack(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate sample tables (empty ones dropped, to keep dtypes)."""
    non_empty = [p for p in parts if len(p)]
    out = pd.concat(non_empty, ignore_index=True) if non_empty else parts[0]
    return out.astype({"duration_s": "float64", "uncertainty_s": "float64"})


def _server_samples(df: pd.DataFrame) -> pd.DataFrame:
    """The server's aggregation timer per (run, round), as samples."""
    per = per_node_round(df[df["node"] == SERVER_NODE])
    return per.loc[per["complete"] & (per["phase"] == "aggregation"), _SAMPLE_COLUMNS]


def _phase_samples(df: pd.DataFrame) -> pd.DataFrame:
    """Samples of the median tables: node phases plus the server's aggregation.

    Aggregation is the server's timer only (one sample per round): a tiled
    table's per-node aggregation rows are parts of that interval seen from each
    node.
    """
    nodes = _node_phase_samples(df)
    return _stack([nodes[nodes["phase"] != "aggregation"], _server_samples(df)])


def median_phase_table(df: pd.DataFrame) -> pd.DataFrame:
    """Median seconds per network (rows) and phase (columns), plus ``n`` rounds.

    A cell is the median over (run, round, node) of the node's complete seconds
    in that phase (a complete tiled node round counts an absent phase as 0 s;
    aggregation: the server's timer, over (run, round)); NaN when the phase was
    never recorded on that network. Columns are the five legacy phases plus
    every other phase present, in :data:`PHASE_ORDER`. ``n`` counts the (run,
    round) pairs.
    """
    samples = _phase_samples(df)
    medians = samples.pivot_table(
        index="network", columns="phase", values="duration_s", aggfunc="median"
    )
    medians = medians.reindex(columns=phase_order({*LEGACY_PHASES, *df["phase"]}))
    rounds = (
        df[["network", "run_id", "round"]].drop_duplicates().groupby("network").size()
    )
    medians["n"] = rounds.reindex(medians.index).fillna(0).astype("int64")
    medians = medians.reindex(network_order(medians.index))
    medians.index.name = "network"
    medians.columns.name = None
    return medians


def _sort_network_phase(out: pd.DataFrame) -> pd.DataFrame:
    networks = {n: i for i, n in enumerate(network_order(out["network"]))}
    phases = {p: i for i, p in enumerate(phase_order(out["phase"]))}
    order = out["network"].map(networks) * (len(phases) + 1) + out["phase"].map(phases)
    return (
        out.assign(_o=order).sort_values("_o").drop(columns="_o").reset_index(drop=True)
    )


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
    return _sort_network_phase(out)


ANATOMY_COLUMNS = [
    "network",
    "phase",
    "n",
    "median_s",
    "median_uncertainty_s",
    "median_round_s",
    "share",
]


def anatomy_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per network and phase: median seconds per (round, node) and share of the round.

    ``median_s`` is the median over (run, round, node) of the node's seconds in
    the phase (a complete tiled node round counts an absent phase as 0 s,
    other node rounds give their complete sums; node ``server`` is left out);
    where a network has no per-node aggregation rows (an untiled table) the
    server's aggregation per (run, round) stands in. ``median_uncertainty_s``
    is the median of the samples' summed clock uncertainty (NaN when not
    recorded). ``median_round_s`` is the network's median round time over
    complete rounds (:func:`round_time_table`) and ``share`` = ``median_s /
    median_round_s`` (NaN without complete rounds). Each median is taken on its
    own, so shares need not add up to 1. ``n`` counts the samples. Rows:
    networks in :func:`network_order`, phases in :data:`PHASE_ORDER`.
    """
    nodes = _node_phase_samples(df)
    with_node_aggregation = set(nodes.loc[nodes["phase"] == "aggregation", "network"])
    server = _server_samples(df)
    server = server[~server["network"].isin(with_node_aggregation)]
    used = _stack([nodes, server])
    if used.empty:
        return pd.DataFrame(columns=ANATOMY_COLUMNS)
    grouped = used.groupby(["network", "phase"], observed=True)
    out = grouped.agg(
        n=("duration_s", "size"),
        median_s=("duration_s", "median"),
        median_uncertainty_s=("uncertainty_s", "median"),
    ).reset_index()
    rounds = round_time_table(df)["median_round_s"]
    out["median_round_s"] = out["network"].map(rounds).astype("float64")
    positive = out["median_round_s"] > 0
    out["share"] = (out["median_s"] / out["median_round_s"]).where(positive)
    return _sort_network_phase(out)[ANATOMY_COLUMNS]


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


# What kind of time each phase is, for the report's shares of the round.
PHASE_CLASSES = {
    "dispatch_wait": "flower",
    "client_startup": "flower",
    "reply_handoff": "flower",
    "pickup_wait": "flower",
    "server_other": "flower",
    "downlink": "network",
    "uplink": "network",
    "training": "computation",
    "evaluation": "computation",
    "aggregation": "computation",
    "unresolved": "unresolved",
}
CLASS_LABELS = {
    "flower": "Flower's waiting and start-up",
    "network": "the network",
    "computation": "computation",
    "unresolved": "unresolved time",
}
SHARE_COLUMNS = [
    "network",
    "phase",
    "phase_class",
    "node_rounds",
    "seconds",
    "share",
    "median_round_s",
    "segment_s",
]


def phase_shares(df: pd.DataFrame, median_round_s: pd.Series) -> pd.DataFrame:
    """Per network and phase: its share of all tiled node-round seconds.

    Over every tiled node round of the network (server timer left out),
    ``share`` = the phase's seconds / all phases' seconds, so the shares of a
    network add up to 1, waits and start-up included. ``segment_s`` = ``share *
    median_round_s`` (the network's median round time, a Series by network):
    stacked, the segments add up to the median round. Untiled runs have no
    waits or start-up to share out and are left out.
    """
    tiled = df[df["run_id"].isin(tiled_runs(df)) & (df["node"] != SERVER_NODE)]
    if tiled.empty:
        return pd.DataFrame(columns=SHARE_COLUMNS)
    seconds = tiled.groupby(["network", "phase"], observed=True)["duration_s"].sum()
    out = seconds.rename("seconds").reset_index()
    totals = out.groupby("network")["seconds"].transform("sum")
    out["share"] = (out["seconds"] / totals.where(totals > 0)).astype("float64")
    keys = tiled[["network", "run_id", "round", "node"]].drop_duplicates()
    out["node_rounds"] = out["network"].map(keys.groupby("network").size())
    out["phase_class"] = out["phase"].map(PHASE_CLASSES).fillna("flower")
    out["median_round_s"] = out["network"].map(median_round_s).astype("float64")
    out["segment_s"] = out["share"] * out["median_round_s"]
    return _sort_network_phase(out)[SHARE_COLUMNS]


def class_shares(shares: pd.DataFrame) -> pd.DataFrame:
    """Per network (rows) and phase class (columns): share of the node rounds."""
    wide = shares.pivot_table(
        index="network", columns="phase_class", values="share", aggfunc="sum"
    )
    wide = wide.reindex(columns=[c for c in CLASS_LABELS if c in wide.columns])
    return wide.reindex(network_order(wide.index)).fillna(0.0)
