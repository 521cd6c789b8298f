"""One vectorised pass over the phase table: analysis/summary.py's tables at scale.

:mod:`analysis.summary` defines every summary (and stays the reference: a test
checks that both give the same tables). Its pandas group-bys over nine string
keys cost seconds per call on a million phase rows, and each summary recomputes
them. :func:`rollup` instead integer-codes runs, nodes and phases once and sums
seconds, row counts and clock uncertainty into a (node round x phase) matrix
with ``np.bincount``; :class:`Rollup` derives the node rounds, round times,
median samples and the report's tables from that matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from analysis.summary import (
    ANATOMY_COLUMNS,
    COMPUTE_PHASES,
    GAP_PHASES,
    LEGACY_PHASES,
    MESSAGE_PHASES,
    NODE_PHASES,
    PHASE_ORDER,
    RUN_KEYS,
    SERVER_NODE,
    _find_network,
    _sort_network_phase,
    network_order,
    phase_order,
    round_time_summary,
)

_SAMPLE_COLUMNS = [*RUN_KEYS, "round", "node", "phase", "duration_s", "uncertainty_s"]
_LABELS = {"ethernet": "Ethernet", "wifi": "WiFi", "5g": "5G"}


def _codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


@dataclass(frozen=True)
class Rollup:
    """Per (run, round, node) x phase: seconds, rows and clock uncertainty.

    Row ``i`` of the matrices is the node round ``(run[i], round[i], node[i])``
    (codes into ``runs``, ``nodes``); column ``j`` is ``phases[j]``. ``rows``
    counts phase-table rows (a phase has one per message); ``uncertainty`` is
    NaN where no row carried one.
    """

    runs: pd.DataFrame
    nodes: np.ndarray
    phases: np.ndarray
    run: np.ndarray
    round: np.ndarray
    node: np.ndarray
    seconds: np.ndarray
    rows: np.ndarray
    uncertainty: np.ndarray
    rounds_per_network: pd.Series

    def column(self, phase: str) -> int | None:
        """Column of ``phase``, None when the table has no row of it."""
        hits = np.flatnonzero(self.phases == phase)
        return int(hits[0]) if len(hits) else None

    def _count(self, phases: tuple[str, ...] | list[str]) -> np.ndarray:
        cols = [c for p in phases if (c := self.column(p)) is not None]
        return self.rows[:, cols].sum(axis=1) if cols else np.zeros(len(self.run))

    def _sum(self, phases: tuple[str, ...] | list[str]) -> np.ndarray:
        cols = [c for p in phases if (c := self.column(p)) is not None]
        return self.seconds[:, cols].sum(axis=1) if cols else np.zeros(len(self.run))

    @cached_property
    def is_server(self) -> np.ndarray:
        """Node rounds of the server's own timer (node ``server``)."""
        return np.asarray(self.nodes[self.node] == SERVER_NODE)

    @cached_property
    def handled(self) -> np.ndarray:
        """Messages each node round handled (training and evaluation rows)."""
        return self._count(COMPUTE_PHASES)

    @cached_property
    def cell_complete(self) -> np.ndarray:
        """summary.per_node_round's ``complete`` of every (node round, phase) cell."""
        per_message = np.isin(self.phases, MESSAGE_PHASES)[None, :]
        enough = self.rows >= self.handled[:, None]
        unresolved = (self.phases == "unresolved")[None, :]
        return np.asarray((~per_message | enough) & ~unresolved)

    @cached_property
    def tiled(self) -> np.ndarray:
        """Node rounds with a derived phase of the round anatomy."""
        return self._count(GAP_PHASES) > 0

    @cached_property
    def node_complete(self) -> np.ndarray:
        """Every message has a downlink and an uplink, nothing unresolved."""
        computed = self.handled
        return np.asarray(
            (computed > 0)
            & (self._count(["downlink"]) == computed)
            & (self._count(["uplink"]) == computed)
            & (self._count(["unresolved"]) == 0)
        )

    @cached_property
    def node_s(self) -> np.ndarray:
        """summary.node_rounds' ``node_s``: tiled phases, else the four node phases."""
        return np.where(
            self.tiled, self._sum(list(PHASE_ORDER)), self._sum(list(NODE_PHASES))
        )

    def _labels(self, index: np.ndarray) -> pd.DataFrame:
        runs = self.runs.iloc[self.run[index]].reset_index(drop=True)
        runs["round"] = self.round[index]
        runs["node"] = self.nodes[self.node[index]]
        return pd.DataFrame(runs)

    def node_rounds(self) -> pd.DataFrame:
        """summary.node_rounds: per (run, round, node), server left out."""
        index = np.flatnonzero(~self.is_server)
        out = self._labels(index)
        out["tiled"] = self.tiled[index]
        out["node_s"] = self.node_s[index]
        out["uplink_s"] = self._sum(["uplink"])[index]
        out["node_complete"] = self.node_complete[index]
        return out

    def _cells(self, mask: np.ndarray) -> pd.DataFrame:
        """Sample rows of the (node round, phase) cells where ``mask`` holds."""
        index, column = np.nonzero(mask)
        out = self._labels(index)
        out["phase"] = self.phases[column]
        out["duration_s"] = self.seconds[index, column]
        out["uncertainty_s"] = self.uncertainty[index, column]
        return out

    def node_samples(self) -> pd.DataFrame:
        """summary._node_phase_samples: per node round and phase, server left out.

        The frame is computed once and shared: do not modify it.
        """
        return self._node_samples

    @cached_property
    def _node_samples(self) -> pd.DataFrame:
        present = self.rows > 0
        nodes = ~self.is_server
        full = nodes & self.tiled & self.node_complete
        partial = (nodes & ~full)[:, None] & present & self.cell_complete
        network = self.runs["network"].to_numpy()[self.run]
        grid = np.zeros_like(present)
        for name in set(network[full]):
            members = full & (network == name)
            seen = present[members].any(axis=0)
            grid[np.ix_(members, seen)] = True
        out = self._cells(partial | grid)
        absent = out["duration_s"].isna() | ~self._present_at(partial | grid)
        out.loc[absent, ["duration_s", "uncertainty_s"]] = 0.0
        return out[_SAMPLE_COLUMNS]

    def _present_at(self, mask: np.ndarray) -> np.ndarray:
        index, column = np.nonzero(mask)
        return np.asarray(self.rows[index, column] > 0)

    def server_samples(self) -> pd.DataFrame:
        """summary._server_samples: the server's aggregation per (run, round)."""
        column = self.column("aggregation")
        mask = np.zeros_like(self.rows, dtype=bool)
        if column is not None:
            mask[:, column] = self.is_server & (self.rows[:, column] > 0)
        return self._cells(mask)[_SAMPLE_COLUMNS]

    def phase_samples(self) -> pd.DataFrame:
        """summary._phase_samples: node phases but aggregation, plus the server's.

        The frame is computed once and shared: do not modify it.
        """
        return self._phase_samples

    @cached_property
    def _phase_samples(self) -> pd.DataFrame:
        nodes = self.node_samples()
        parts = [nodes[nodes["phase"] != "aggregation"], self.server_samples()]
        return pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)

    def round_times(self) -> pd.DataFrame:
        """summary.round_times: per (run, round) the slowest node and round time.

        The frame is computed once and shared: do not modify it.
        """
        return self._round_times

    @cached_property
    def _round_times(self) -> pd.DataFrame:
        nodes = np.flatnonzero(~self.is_server)
        name_rank = np.argsort(np.argsort(self.nodes.astype(str)))
        order = nodes[
            np.lexsort(
                (
                    name_rank[self.node[nodes]],
                    -self.node_s[nodes],
                    self.round[nodes],
                    self.run[nodes],
                )
            )
        ]
        key = self.run[order] * (int(self.round.max()) + 1) + self.round[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else key
        first = order[starts]
        group = np.cumsum(np.r_[True, key[1:] != key[:-1]]) - 1 if len(key) else key
        count = np.bincount(group) if len(key) else np.zeros(0, dtype=int)

        def every(values: np.ndarray) -> np.ndarray:
            summed = np.bincount(group, weights=values[order].astype(float))
            return np.asarray(summed == count)

        def some(values: np.ndarray) -> np.ndarray:
            summed = np.bincount(group, weights=values[order].astype(float))
            return np.asarray(summed > 0)

        out = self._labels(first)[[*RUN_KEYS, "round"]]
        out["nodes"] = count
        out["slowest_node"] = self.nodes[self.node[first]]
        out["slowest_node_s"] = self.node_s[first]
        out["slowest_uplink_s"] = self._sum(["uplink"])[first]
        out["tiled"] = some(self.tiled)
        out["nodes_complete"] = every(self.node_complete)
        out["all_tiled"] = every(self.tiled)
        out = out.merge(
            self._server_aggregation(), on=[*RUN_KEYS, "round"], how="outer"
        )
        for flag in ("tiled", "nodes_complete", "all_tiled"):
            out[flag] = out[flag].astype("boolean").fillna(False).astype(bool)
        out["nodes"] = out["nodes"].fillna(0).astype("int64")
        server_term = out["aggregation_s"].fillna(0.0).where(~out["tiled"], 0.0)
        out["round_s"] = out["slowest_node_s"].fillna(0.0) + server_term
        out["complete"] = (
            out["nodes_complete"]
            & out["aggregation_s"].notna()
            & (~out["tiled"] | out["all_tiled"])
        )
        columns = [
            *RUN_KEYS,
            "round",
            "nodes",
            "slowest_node",
            "slowest_node_s",
            "slowest_uplink_s",
            "aggregation_s",
            "round_s",
            "tiled",
            "complete",
        ]
        keys = [*RUN_KEYS, "round"]
        return out[columns].sort_values(keys).reset_index(drop=True)

    def _server_aggregation(self) -> pd.DataFrame:
        """The server's aggregation seconds per (run, round) it recorded one."""
        rows = self.server_samples()
        return rows[[*RUN_KEYS, "round"]].assign(
            aggregation_s=rows["duration_s"].astype("float64")
        )

    def round_time_table(self, stragglers: pd.DataFrame | None = None) -> pd.DataFrame:
        """summary.round_time_table: per network, medians over complete rounds."""
        return round_time_summary(self.round_times(), stragglers)

    def median_phase_table(self) -> pd.DataFrame:
        """summary.median_phase_table: median seconds per network and phase."""
        samples = self.phase_samples()
        medians = samples.pivot_table(
            index="network", columns="phase", values="duration_s", aggfunc="median"
        )
        medians = medians.reindex(
            columns=phase_order({*LEGACY_PHASES, *self.phases.tolist()})
        )
        medians["n"] = (
            self.rounds_per_network.reindex(medians.index).fillna(0).astype("int64")
        )
        medians = medians.reindex(network_order(medians.index))
        medians.index.name = "network"
        medians.columns.name = None
        return medians

    def phase_stats(self) -> pd.DataFrame:
        """summary.phase_stats: n, median, p95, mean seconds per network and phase."""
        samples = self.phase_samples()
        grouped = samples.groupby(["network", "phase"], observed=True)["duration_s"]
        out = pd.DataFrame(
            {
                "n": grouped.size(),
                "median_s": grouped.median(),
                "p95_s": grouped.quantile(0.95),
                "mean_s": grouped.mean(),
            }
        ).reset_index()
        return _sort_network_phase(out)

    def anatomy_table(self) -> pd.DataFrame:
        """summary.anatomy_table: median seconds per phase and share of the round."""
        nodes = self.node_samples()
        with_node_aggregation = set(
            nodes.loc[nodes["phase"] == "aggregation", "network"]
        )
        server = self.server_samples()
        server = server[~server["network"].isin(with_node_aggregation)]
        parts = [p for p in (nodes, server) if len(p)]
        if not parts:
            return pd.DataFrame(columns=ANATOMY_COLUMNS)
        used = pd.concat(parts, ignore_index=True)
        grouped = used.groupby(["network", "phase"], observed=True)
        out = grouped.agg(
            n=("duration_s", "size"),
            median_s=("duration_s", "median"),
            median_uncertainty_s=("uncertainty_s", "median"),
        ).reset_index()
        rounds = self.round_time_table()["median_round_s"]
        out["median_round_s"] = out["network"].map(rounds).astype("float64")
        positive = out["median_round_s"] > 0
        out["share"] = (out["median_s"] / out["median_round_s"]).where(positive)
        return _sort_network_phase(out)[ANATOMY_COLUMNS]

    def study_ratios(self) -> pd.DataFrame:
        """summary.study_ratios: 5G uplink over Ethernet's and WiFi's, uplink share."""
        samples = self.phase_samples()
        uplink_rows = samples[samples["phase"] == "uplink"]
        uplink = uplink_rows.groupby("network")["duration_s"].median()
        rows: list[dict[str, object]] = []
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
        rounds = self.round_times()
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


def rollup(df: pd.DataFrame) -> Rollup:
    """Sum a phase table into its (node round x phase) matrices (:class:`Rollup`)."""
    run, run_ids = _codes(df["run_id"])
    first_rows = pd.Series(np.arange(len(df))).groupby(run).first().to_numpy()
    runs = df[RUN_KEYS].iloc[first_rows].reset_index(drop=True)
    node, nodes = _codes(df["node"])
    phase, phases = _codes(df["phase"])
    round_ = df["round"].to_numpy(dtype=np.int64)
    span = int(round_.max()) + 1 if len(round_) else 1
    key = (run * span + round_) * max(len(nodes), 1) + node
    unique, index = np.unique(key, return_inverse=True)
    width = max(len(phases), 1)
    flat = index * width + phase
    size = len(unique) * width
    seconds = np.bincount(
        flat, weights=df["duration_s"].to_numpy(float), minlength=size
    )
    rows = np.bincount(flat, minlength=size)
    raw = df["uncertainty_s"].to_numpy(dtype=float, na_value=np.nan)
    known = ~np.isnan(raw)
    uncertainty = np.bincount(flat[known], weights=raw[known], minlength=size)
    carried = np.bincount(flat[known], minlength=size)
    uncertainty = np.where(carried > 0, uncertainty, np.nan)
    per_run = df[["network", "run_id", "round"]].drop_duplicates()
    return Rollup(
        runs=runs,
        nodes=nodes,
        phases=phases,
        run=unique // max(len(nodes), 1) // span,
        round=unique // max(len(nodes), 1) % span,
        node=unique % max(len(nodes), 1),
        seconds=seconds.reshape(-1, width),
        rows=rows.reshape(-1, width),
        uncertainty=uncertainty.reshape(-1, width),
        rounds_per_network=per_run.groupby("network").size(),
    )
