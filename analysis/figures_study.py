"""Study figures: medians with intervals, straggler heatmaps, convergence curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.figures import (
    natural_key,
    network_colours,
    save_figure,
)
from analysis.summary import network_order

STRATEGY_LINESTYLES = ("-", "--", ":", "-.")


def strategy_linestyles(strategies: list[str]) -> dict[str, str]:
    """A fixed line style per strategy, in name order."""
    ordered = sorted(set(strategies))
    return {
        s: STRATEGY_LINESTYLES[i % len(STRATEGY_LINESTYLES)]
        for i, s in enumerate(ordered)
    }


def study_bars(
    table: pd.DataFrame,
    quantities: list[str],
    path: Path,
    interval: str = "bootstrap confidence interval",
) -> tuple[Path, Path]:
    """Median per network (bars) with an interval (error bars), one panel each.

    ``table`` is :func:`analysis.study.study_table`'s ``table``; the error bars
    span ``median_low`` to ``median_high`` (``interval`` names them in the
    title, e.g. a range when there are too few rounds for a CI). One panel per
    quantity in ``quantities`` present in it (e.g. downlink, uplink, round),
    one bar group per strategy. Error bars are black on a white halo, so they
    show on every bar colour. Raises ValueError when none is present.
    """
    present = [q for q in quantities if q in set(table["quantity"])]
    if not present:
        raise ValueError(
            f"cannot draw {path.name}: the study table has none of {quantities}"
        )
    networks = network_order(table["network"])
    colours = network_colours(networks)
    strategies = sorted(set(table["strategy"]))
    fig = Figure(figsize=(2.6 * len(present) + 1.2, 3.6), layout="constrained")
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    width = 0.8 / max(len(networks), 1)
    for ax, quantity in zip(axes, present, strict=True):
        rows = table[table["quantity"] == quantity]
        for i, network in enumerate(networks):
            sel = rows[rows["network"] == network].set_index("strategy")
            sel = sel.reindex(strategies)
            x = np.arange(len(strategies)) + (i - (len(networks) - 1) / 2) * width
            median = sel["median"].to_numpy(dtype=float)
            errors = np.vstack(
                [
                    median - sel["median_low"].to_numpy(dtype=float),
                    sel["median_high"].to_numpy(dtype=float) - median,
                ]
            )
            ax.bar(x, median, width, color=colours[network], label=network)
            yerr = np.clip(np.nan_to_num(errors), 0, None)
            for colour, line in (("#FFFFFF", 3.6), ("#000000", 1.4)):
                ax.errorbar(
                    x,
                    median,
                    yerr=yerr,
                    fmt="none",
                    ecolor=colour,
                    elinewidth=line,
                    capsize=4,
                    capthick=line,
                    zorder=3,
                )
        ax.set_xticks(np.arange(len(strategies)), strategies)
        ax.set_xlabel("strategy")
        unit = "share of the round" if quantity == "uplink_share" else "seconds"
        ax.set_ylabel(f"median ({unit})")
        ax.set_title(quantity)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.suptitle(f"Median per network with {interval}")
    return save_figure(fig, path)


def straggler_heatmap(
    leads: pd.DataFrame, stragglers: pd.DataFrame, title: str, path: Path
) -> tuple[Path, Path]:
    """Node x round heatmap of each node's lead over its round's median node (s).

    ``leads`` is :func:`analysis.stragglers.node_leads` of one network and
    strategy; columns are its (run, round) pairs in order, rows its nodes in
    natural name order; each round's straggler (``stragglers``' rows) carries a
    white dot. Colour-blind safe sequential map (cividis). Raises ValueError
    when ``leads`` is empty.
    """
    if leads.empty:
        raise ValueError(f"cannot draw {path.name}: no node rounds")
    columns = leads[["repetition", "run_id", "round"]].drop_duplicates()
    columns = columns.sort_values(["repetition", "run_id", "round"])
    position = {
        (r, n): i
        for i, (r, n) in enumerate(
            zip(columns["run_id"], columns["round"], strict=True)
        )
    }
    nodes = sorted(leads["node"].unique(), key=natural_key)
    row = {node: i for i, node in enumerate(nodes)}
    grid = np.full((len(nodes), len(columns)), np.nan)
    x = [position[(r, n)] for r, n in zip(leads["run_id"], leads["round"], strict=True)]
    grid[leads["node"].map(row).to_numpy(), np.asarray(x, dtype=int)] = leads["lead_s"]
    fig = Figure(figsize=(min(3.0 + 0.35 * len(columns), 8.5), 2.4 + 0.3 * len(nodes)))
    ax = fig.add_subplot()
    image = ax.imshow(grid, aspect="auto", cmap="cividis", interpolation="nearest")
    marks = stragglers[stragglers["run_id"].isin(set(columns["run_id"]))]
    if len(marks) <= 2000:
        ax.scatter(
            [
                position[(r, n)]
                for r, n in zip(marks["run_id"], marks["round"], strict=True)
            ],
            marks["straggler"].map(row).to_numpy(dtype=float),
            s=12,
            color="#FFFFFF",
            edgecolors="#000000",
            linewidths=0.5,
            label="the round's straggler",
        )
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.3), frameon=False)
    ax.set_yticks(range(len(nodes)), nodes)
    ax.set_ylabel("node")
    ticks = _column_ticks(columns)
    ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks])
    ax.set_xlabel("round (r<k>: repetition k)")
    ax.set_title(title)
    colourbar = fig.colorbar(image, ax=ax)
    colourbar.set_label("lead (s)")
    return save_figure(fig, path)


def _column_ticks(columns: pd.DataFrame, most: int = 16) -> list[tuple[int, str]]:
    labels = [
        f"r{rep}:{rnd}"
        for rep, rnd in zip(columns["repetition"], columns["round"], strict=True)
    ]
    step = max(1, int(np.ceil(len(labels) / most)))
    return [(i, labels[i]) for i in range(0, len(labels), step)]


def convergence_figure(
    metrics: pd.DataFrame, target: float | None, path: Path
) -> tuple[Path, Path]:
    """Accuracy and loss against round and against wall-clock time, 2 x 2 panels.

    ``metrics`` is :func:`analysis.convergence.read_metrics`'s table: thin lines
    per run, a thick line per (network, strategy) median (colour per network,
    line style per strategy); ``target`` draws a dotted line on the accuracy
    panels. Raises ValueError when ``metrics`` has no accuracy and no loss.
    """
    if metrics.empty or metrics[["accuracy", "loss"]].isna().all().all():
        raise ValueError(f"cannot draw {path.name}: no accuracy or loss recorded")
    networks = network_order(metrics["network"])
    colours = network_colours(networks)
    styles = strategy_linestyles(list(metrics["strategy"]))
    fig = Figure(figsize=(8.2, 6.0), layout="constrained")
    axes = fig.subplots(2, 2)
    panels = (
        (axes[0][0], "round", "accuracy"),
        (axes[0][1], "elapsed_s", "accuracy"),
        (axes[1][0], "round", "loss"),
        (axes[1][1], "elapsed_s", "loss"),
    )
    grouped = metrics.groupby(["network", "strategy", "round"], sort=True)
    medians = grouped[["accuracy", "loss", "elapsed_s"]].median().reset_index()
    for ax, x, y in panels:
        for (network, strategy, _), run in metrics.groupby(
            ["network", "strategy", "run_id"]
        ):
            run = run.sort_values("round")
            ax.plot(
                run[x],
                run[y],
                color=colours[str(network)],
                linestyle=styles[str(strategy)],
                alpha=0.3,
                linewidth=0.8,
            )
        for (network, strategy), curve in medians.groupby(["network", "strategy"]):
            ax.plot(
                curve[x],
                curve[y],
                color=colours[str(network)],
                linestyle=styles[str(strategy)],
                linewidth=2.2,
                marker="o" if len(curve) <= 30 else None,
                markersize=3,
                label=f"{network}, {strategy} (median)",
            )
        if y == "accuracy" and target is not None:
            ax.axhline(
                target,
                color="#666666",
                linestyle=":",
                linewidth=1.0,
                label=f"target {target:.3f}",
            )
        ax.set_xlabel(
            "round" if x == "round" else "wall-clock time since the first dispatch (s)"
        )
        ax.set_ylabel(
            "accuracy (fraction correct)"
            if y == "accuracy"
            else "loss (model's loss value)"
        )
        ax.grid(alpha=0.3)
    handles, labels = axes[0][1].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncols=3,
        frameon=False,
    )
    fig.suptitle(
        "Convergence: per run (thin) and median per network and strategy (thick)"
    )
    return save_figure(fig, path)
