"""System figures: CPU and NIC throughput per host, the server's bytes over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.figures import (
    DIRECTION_LINESTYLES,
    host_colours,
    natural_key,
    network_colours,
    save_figure,
)
from analysis.summary import network_order

# Points a time series is drawn through at most (means of equal runs beyond that).
_MAX_SERIES_POINTS = 1500


def _thinned(frame: pd.DataFrame, x: str) -> pd.DataFrame:
    """At most :data:`_MAX_SERIES_POINTS` rows: means over equal runs of rows."""
    if len(frame) <= _MAX_SERIES_POINTS:
        return frame
    bins = np.arange(len(frame)) * _MAX_SERIES_POINTS // len(frame)
    numeric = frame.select_dtypes("number")
    return numeric.groupby(bins).mean().sort_values(x)


def _thinned_rates(frame: pd.DataFrame) -> pd.DataFrame:
    """At most :data:`_MAX_SERIES_POINTS` intervals, each the bytes of its runs.

    A merged interval spans its first start to its last end; its rate is the
    mean of the rates weighted by their durations (bytes over time).
    """
    if len(frame) <= _MAX_SERIES_POINTS:
        return frame
    bins = np.arange(len(frame)) * _MAX_SERIES_POINTS // len(frame)
    seconds = (frame["end_s"] - frame["start_s"]).to_numpy(dtype=float)
    work = pd.DataFrame(
        {
            "start_s": frame["start_s"].to_numpy(dtype=float),
            "end_s": frame["end_s"].to_numpy(dtype=float),
            "megabits": frame["mbit_s"].to_numpy(dtype=float) * seconds,
            "seconds": seconds,
        }
    ).groupby(bins)
    merged = work.agg(
        start_s=("start_s", "min"),
        end_s=("end_s", "max"),
        megabits=("megabits", "sum"),
        seconds=("seconds", "sum"),
    )
    merged["mbit_s"] = merged["megabits"] / merged["seconds"].where(
        merged["seconds"] > 0
    )
    return merged.reset_index(drop=True)


def system_timeline(
    cpu: pd.DataFrame,
    nic: pd.DataFrame,
    title: str,
    path: Path,
    marks_s: list[float] | None = None,
) -> tuple[Path, Path]:
    """CPU % and NIC throughput per host over one run's time, two stacked panels.

    ``cpu`` has columns ``host, t_s, cpu_percent`` (mean over cores); ``nic``
    has ``host, device, direction`` (``sent``/``recv``), ``start_s, end_s,
    mbit_s`` (one row per sampling interval, drawn as steps; sent solid,
    received dashed). A host has one colour in both panels. ``marks_s`` draws
    dotted vertical lines (e.g. round starts) inside the sampled span. Raises
    ValueError when both tables are empty.
    """
    if cpu.empty and nic.empty:
        raise ValueError(f"cannot draw {path.name}: no CPU or NIC samples")
    colours = host_colours([*cpu["host"].unique(), *nic["host"].unique()])
    fig = Figure(figsize=(7.0, 4.8))
    top, bottom = fig.subplots(2, 1, sharex=True)
    for host in sorted(cpu["host"].unique(), key=natural_key):
        sel = _thinned(cpu[cpu["host"] == host].sort_values("t_s"), "t_s")
        top.plot(sel["t_s"], sel["cpu_percent"], color=colours[host], label=host)
    for (host, device, direction), sel in nic.groupby(
        ["host", "device", "direction"], sort=True
    ):
        sel = _thinned_rates(sel.sort_values("start_s"))
        xs = np.append(sel["start_s"].to_numpy(dtype=float), sel["end_s"].iloc[-1])
        ys = np.append(sel["mbit_s"].to_numpy(dtype=float), sel["mbit_s"].iloc[-1])
        bottom.step(
            xs,
            ys,
            where="post",
            color=colours[str(host)],
            linestyle=DIRECTION_LINESTYLES.get(str(direction), ":"),
            label=f"{host} {device} {direction}",
        )
    times = np.concatenate(
        [cpu["t_s"].to_numpy(float), nic[["start_s", "end_s"]].to_numpy(float).ravel()]
    )
    first, last = float(times.min()), float(times.max())
    marks = [m for m in marks_s or [] if first <= m <= last]
    if marks:
        # One collection per panel: hundreds of rounds as single lines are slow.
        for ax in (top, bottom):
            ax.vlines(
                marks,
                0.0,
                1.0,
                transform=ax.get_xaxis_transform(),
                colors="#999999",
                linestyles=":",
                linewidth=0.8,
            )
    top.set_ylabel("CPU (% of a core, mean over cores)")
    top.set_title(title)
    bottom.set_ylabel("NIC throughput (Mbit/s)")
    bottom.set_xlabel("seconds since the run's first sample")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return save_figure(fig, path)


def bytes_over_time(nic: pd.DataFrame, path: Path) -> tuple[Path, Path]:
    """Cumulative bytes and throughput of the server's busiest NIC per network.

    ``nic`` has ``network, direction, start_s, end_s, mbit_s`` (one run per
    network, seconds since its first sample); sent solid, received dashed, one
    colour per network. Raises ValueError when ``nic`` is empty.
    """
    if nic.empty:
        raise ValueError(f"cannot draw {path.name}: no NIC samples")
    networks = network_order(nic["network"])
    colours = network_colours(networks)
    fig = Figure(figsize=(7.0, 4.8))
    top, bottom = fig.subplots(2, 1, sharex=True)
    for (network, direction), sel in nic.groupby(["network", "direction"], sort=True):
        sel = _thinned_rates(sel.sort_values("start_s"))
        duration = (sel["end_s"] - sel["start_s"]).to_numpy(dtype=float)
        megabytes = np.cumsum(sel["mbit_s"].to_numpy(dtype=float) * duration / 8.0)
        style = DIRECTION_LINESTYLES.get(str(direction), ":")
        label = f"{network} {direction}"
        top.plot(
            sel["end_s"],
            megabytes,
            color=colours[str(network)],
            linestyle=style,
            label=label,
        )
        xs = np.append(sel["start_s"].to_numpy(dtype=float), sel["end_s"].iloc[-1])
        ys = np.append(sel["mbit_s"].to_numpy(dtype=float), sel["mbit_s"].iloc[-1])
        bottom.step(
            xs,
            ys,
            where="post",
            color=colours[str(network)],
            linestyle=style,
            label=label,
        )
    top.set_ylabel("cumulative bytes (MB)")
    top.set_title(
        "Server NIC: bytes and throughput over time (solid sent, dashed received)"
    )
    bottom.set_ylabel("throughput (Mbit/s)")
    bottom.set_xlabel("seconds since the run's first sample")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return save_figure(fig, path)
