"""ECDF figures: transfer seconds per message, each phase's seconds per node round."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.figures import (
    MESSAGE_LINESTYLES,
    network_colours,
    save_figure,
)
from analysis.summary import network_order

# Points an ECDF is drawn through at most (quantiles of the data beyond that).
_MAX_CURVE_POINTS = 400


def _ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step points of the ECDF, starting at 0 at the smallest value."""
    ordered = np.sort(values)
    fractions = np.arange(1, len(ordered) + 1) / len(ordered)
    return np.concatenate([ordered[:1], ordered]), np.concatenate([[0.0], fractions])


def transfer_ecdf(df: pd.DataFrame, phase: str, path: Path) -> tuple[Path, Path]:
    """ECDF of one transfer phase's seconds per message, one colour per network.

    Each sample is one downlink or uplink row of the phase table (one Flower
    message); the train message is drawn solid, the evaluate message dashed.
    Raises ValueError when the table has no row of ``phase``.
    """
    if phase not in ("downlink", "uplink"):
        raise ValueError(f"transfer_ecdf draws downlink or uplink, not {phase!r}")
    rows = df.loc[df["phase"] == phase, ["network", "message_type", "duration_s"]]
    if rows.empty:
        raise ValueError(
            f"cannot draw {path.name}: the phase table has no {phase} rows"
        )
    networks = network_order(rows["network"].unique())
    colours = network_colours(networks)
    fig = Figure(figsize=(6.0, 3.6))
    ax = fig.add_subplot()
    for network in networks:
        for message_type, style in MESSAGE_LINESTYLES.items():
            sel = rows[
                (rows["network"] == network) & (rows["message_type"] == message_type)
            ]
            if sel.empty:
                continue
            xs, ys = _curve_points(sel["duration_s"].to_numpy(dtype=float))
            ax.step(
                xs,
                ys,
                where="post",
                color=colours[network],
                linestyle=style,
                label=f"{network} ({message_type}, n={len(sel)})",
            )
    positive = rows["duration_s"][rows["duration_s"] > 0]
    # Ethernet and 5G differ by one to two orders of magnitude: keep both readable.
    if len(positive) and positive.max() / positive.min() > 50:
        ax.set_xscale("log")
    ax.set_xlabel(f"{phase} time per message (s)")
    ax.set_ylabel("fraction of messages")
    ax.set_ylim(0.0, 1.02)
    ax.set_title(f"ECDF of {phase} time")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return save_figure(fig, path)


def _curve_points(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ECDF step points, thinned to quantiles when there are many values."""
    if len(values) <= _MAX_CURVE_POINTS:
        return _ecdf(values)
    fractions = np.linspace(0.0, 1.0, _MAX_CURVE_POINTS)
    return np.quantile(values, fractions), fractions


def phase_ecdfs(
    samples: pd.DataFrame, phases: list[str], path: Path
) -> tuple[Path, Path]:
    """ECDF of a node's seconds per round in each phase: one panel per phase.

    ``samples`` has ``network``, ``quantity`` (phase) and ``value`` (seconds)
    columns (:func:`analysis.study.study_samples`); one colour per network.
    Above :data:`_MAX_CURVE_POINTS` samples a curve is drawn through that many
    quantiles. Raises ValueError when no phase of ``phases`` has samples.
    """
    quantities = set(samples["quantity"].unique())
    present = [p for p in phases if p in quantities]
    if not present:
        raise ValueError(f"cannot draw {path.name}: no samples of {phases}")
    networks = network_order(samples["network"].unique())
    colours = network_colours(networks)
    columns = 4
    rows_n = int(np.ceil(len(present) / columns))
    fig = Figure(figsize=(9.0, 0.8 + 2.3 * rows_n))
    axes = fig.subplots(rows_n, columns, squeeze=False).ravel()
    wanted = samples[samples["quantity"].isin(present)]
    groups = {
        (str(q), str(n)): v.dropna().to_numpy(dtype=float)
        for (q, n), v in wanted.groupby(["quantity", "network"], observed=True)["value"]
    }
    for ax, phase in zip(axes, present, strict=False):
        for network in networks:
            values = groups.get((phase, network), np.empty(0))
            if len(values) == 0:
                continue
            xs, ys = _curve_points(values)
            ax.step(xs, ys, where="post", color=colours[network], label=network)
        ax.set_title(phase)
        ax.set_xlabel("seconds")
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("fraction of node rounds")
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[len(present) :]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colours[n], label=n) for n in networks]
    fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 1.0),
        ncols=len(handles),
        frameon=False,
    )
    # Fixed spacing: a layout engine would measure every label of ten panels again.
    height = 0.8 + 2.3 * rows_n
    fig.subplots_adjust(
        left=0.08,
        right=0.98,
        bottom=0.5 / height,
        top=1.0 - 0.75 / height,
        wspace=0.3,
        hspace=0.75,
    )
    return save_figure(fig, path)
