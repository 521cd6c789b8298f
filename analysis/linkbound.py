"""Whether a transfer's time is the link's or the host's: floors, verdicts, busy time.

Each captured transfer (a row of ``transfers.csv``, :func:`analysis.wire.
reconcile_transfers`) spans ``wire_s`` from its first to its last payload byte;
``busy_s`` of it the link was busy (the packets followed each other as the link's
pace allows, instrumentation.link_pace.LinkPace) and ``gaps_s`` it was not (the
host or the protocol: Flower's per-object requests and back-offs,
serialisation, a busy CPU). Against the link's rate (a calibration when there is
one, else the inventory's profile):

- ``floor_s`` = wire bytes x 8 / rate: what the link alone needs;
- ``over_floor`` = ``wire_s / floor_s``;
- ``bound``: ``host`` when ``over_floor`` > :data:`HOST_BOUND_FACTOR` (the
  transfer took over twice what its link needs: the figure measures the host and
  Flower, not the link), ``link`` otherwise, ``small`` below
  :data:`MIN_BOUND_BYTES` (a few packets say nothing about a rate), ``""``
  without a rate or a wire measurement.

:func:`bound_table` sums this up per network and direction over model-sized
transfers, :func:`busy_samples` gives the study table its ``uplink_busy`` and
``downlink_busy`` quantities (a node round's link-busy seconds) and
:func:`physics_flags` names the pairs of networks whose order contradicts their
links' rates, with the cause.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.summary import network_order

HOST_BOUND_FACTOR = 2.0
# Model-sized messages: heartbeats, polls and evaluate replies are a few kB.
MIN_BOUND_BYTES = 100_000
BUSY_QUANTITIES = {"down": "downlink_busy", "up": "uplink_busy"}
BOUND_COLUMNS = ["rate_mbit", "rate_source", "floor_s", "over_floor", "bound"]
BOUND_TABLE_COLUMNS = [
    "network",
    "direction",
    "transfers",
    "rate_mbit",
    "rate_source",
    "median_bytes",
    "median_wire_s",
    "median_busy_s",
    "median_gaps_s",
    "median_floor_s",
    "median_over_floor",
    "host_bound_share",
    "verdict",
]
_PROFILE_KEYS = {"down": "downlink_mbit", "up": "uplink_mbit"}

# (network, direction) or (network, direction, node) -> (Mbit/s, source)
Rates = Mapping[tuple[str, ...], tuple[float, str]]


def profile_rates(
    profiles: Mapping[str, Any],
) -> dict[tuple[str, ...], tuple[float, str]]:
    """Each network's rates per direction from a manifest's ``link_profiles``."""
    rates: dict[tuple[str, ...], tuple[float, str]] = {}
    for network, profile in profiles.items():
        if not isinstance(profile, Mapping):
            continue
        for direction, key in _PROFILE_KEYS.items():
            try:
                value = float(profile[key])
            except (KeyError, TypeError, ValueError):
                continue
            if value > 0:
                rates[(str(network), direction)] = (value, "profile")
    return rates


# Calibration verdicts whose measured rate is the link's (testbed/calibration.py):
# a host-bound or unshaped measurement says nothing of the link's rate.
_LINK_VERDICTS = ("link", "below-profile", "above-profile")
_CALIBRATED = {"down_mbit": "down", "up_mbit": "up"}


def calibration_rates(
    calibration: Mapping[str, Any] | None,
) -> dict[tuple[str, ...], tuple[float, str]]:
    """Each node's measured rates per (network, direction, node) from a manifest's
    ``calibration`` (``flowerbed cluster calibrate``).

    Empty when there is none, when it could not be read, or when it is ``stale``
    (the inventory changed since). Only measurements whose verdict makes them the
    link's rate count: a host-bound one keeps the profile's rate.
    """
    if not isinstance(calibration, Mapping) or calibration.get("stale", True):
        return {}
    rows = calibration.get("measurements")
    rates: dict[tuple[str, ...], tuple[float, str]] = {}
    for row in rows if isinstance(rows, list) else ():
        if not isinstance(row, Mapping) or row.get("verdict") not in _LINK_VERDICTS:
            continue
        direction = _CALIBRATED.get(str(row.get("quantity")))
        try:
            value = float(row["measured"])
        except (KeyError, TypeError, ValueError):
            continue
        if direction is not None and value > 0:
            key = (str(row.get("network")), direction, str(row.get("node")))
            rates[key] = (value, "calibrated")
    return rates


def _rate(rates: Rates, network: str, direction: str, node: str) -> tuple[float, str]:
    return rates.get(
        (network, direction, node), rates.get((network, direction), (np.nan, ""))
    )


def mark_bound(transfers: pd.DataFrame, rates: Rates) -> pd.DataFrame:
    """``transfers`` with :data:`BOUND_COLUMNS` added (see the module docstring).

    A node-specific rate ``(network, direction, node)`` wins over the network's.
    """
    out = transfers.copy()
    found = [
        _rate(rates, str(n), str(d), str(h))
        for n, d, h in zip(out["network"], out["direction"], out["node"], strict=True)
    ]
    out["rate_mbit"] = pd.Series([r for r, _ in found], index=out.index, dtype=float)
    out["rate_source"] = [s for _, s in found]
    wire_bytes = pd.to_numeric(out["wire_bytes"], errors="coerce").astype(float)
    wire_s = pd.to_numeric(out["wire_s"], errors="coerce").astype(float)
    out["floor_s"] = wire_bytes * 8 / (out["rate_mbit"] * 1e6)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["over_floor"] = wire_s / out["floor_s"]
    bound = np.where(out["over_floor"] > HOST_BOUND_FACTOR, "host", "link")
    bound = np.where(wire_bytes < MIN_BOUND_BYTES, "small", bound)
    unknown = out["over_floor"].isna() | ~np.isfinite(out["over_floor"])
    out["bound"] = np.where(unknown, "", bound)
    return out


def bound_table(marked: pd.DataFrame) -> pd.DataFrame:
    """Per network and direction, over the model-sized transfers of :func:`mark_bound`:
    medians of bytes, wire, busy, gaps, floor and wire/floor, the share of
    host-bound transfers and the verdict (``host-bound`` when over half are)."""
    judged = marked[marked["bound"].isin(["host", "link"])] if len(marked) else marked
    rows = []
    for network in network_order(judged["network"].astype(str)) if len(judged) else []:
        for direction in ("down", "up"):
            group = judged[
                (judged["network"] == network) & (judged["direction"] == direction)
            ]
            if group.empty:
                continue
            host = float((group["bound"] == "host").mean())
            sources = sorted(set(group["rate_source"]))
            rows.append(
                {
                    "network": network,
                    "direction": direction,
                    "transfers": len(group),
                    "rate_mbit": float(group["rate_mbit"].median()),
                    "rate_source": "/".join(sources),
                    "median_bytes": float(pd.to_numeric(group["wire_bytes"]).median()),
                    "median_wire_s": float(group["wire_s"].median()),
                    "median_busy_s": _median(group, "busy_s"),
                    "median_gaps_s": _median(group, "gaps_s"),
                    "median_floor_s": float(group["floor_s"].median()),
                    "median_over_floor": float(group["over_floor"].median()),
                    "host_bound_share": host,
                    "verdict": "host-bound" if host > 0.5 else "link-bound",
                }
            )
    return pd.DataFrame(rows, columns=BOUND_TABLE_COLUMNS)


def _median(group: pd.DataFrame, column: str) -> float:
    if column not in group.columns:
        return float("nan")
    return float(pd.to_numeric(group[column], errors="coerce").median())


def busy_samples(
    transfers: pd.DataFrame, phases: pd.DataFrame, warmup_rounds: int = 0
) -> pd.DataFrame:
    """Study samples ``network, strategy, quantity, run_id, round, value``: each node
    round's link-busy seconds per direction (``uplink_busy``, ``downlink_busy``),
    summed over the node round's transfers that have ``busy_s``. The strategy of
    a run comes from the phase table."""
    columns = ["network", "strategy", "quantity", "run_id", "round", "value"]
    if transfers.empty or "busy_s" not in transfers.columns or phases.empty:
        return pd.DataFrame(columns=columns)
    busy = transfers.assign(busy_s=pd.to_numeric(transfers["busy_s"], errors="coerce"))
    busy = busy[busy["busy_s"].notna() & (busy["round"] > warmup_rounds)]
    if busy.empty:
        return pd.DataFrame(columns=columns)
    strategies = phases.drop_duplicates("run_id").set_index("run_id")["strategy"]
    sums = (
        busy.groupby(["run_id", "network", "round", "node", "direction"])["busy_s"]
        .sum()
        .reset_index()
    )
    sums = sums[sums["run_id"].isin(strategies.index)]
    return pd.DataFrame(
        {
            "network": sums["network"].astype(str),
            "strategy": sums["run_id"].map(strategies).astype(str),
            "quantity": sums["direction"].map(BUSY_QUANTITIES).astype(str),
            "run_id": sums["run_id"].astype(str),
            "round": sums["round"].astype("int64"),
            "value": sums["busy_s"].astype(float),
        },
        columns=columns,
    )


def physics_flags(bounds: pd.DataFrame, direction: str = "up") -> list[str]:
    """Sentences for each pair of networks whose median transfer times run against
    their links' rates (the faster link takes longer), naming the cause."""
    if bounds.empty or "direction" not in bounds.columns:
        return []
    rows = bounds[bounds["direction"] == direction].set_index("network")
    name = "uplink" if direction == "up" else "downlink"
    flags = []
    for fast in rows.index:
        for slow in rows.index:
            a, b = rows.loc[fast], rows.loc[slow]
            if not (
                a["rate_mbit"] > b["rate_mbit"]
                and a["median_wire_s"] > b["median_wire_s"]
            ):
                continue
            cause = (
                f"{fast}'s {name}s are host-bound "
                f"({a['median_over_floor']:.0f}× their floor; "
                f"{_gap_share(a)} of the time is gaps between bursts, "
                "the host and Flower rather than the link)"
                if a["verdict"] == "host-bound"
                else "neither is host-bound by the 2× rule: check the links' "
                "calibration and the hosts' CPU"
            )
            flags.append(
                f"Expected the {name} on {fast} ({a['rate_mbit']:g} Mbit/s) to "
                f"be faster than on {slow} ({b['rate_mbit']:g} Mbit/s), but it "
                f"takes {a['median_wire_s']:.2f} s against {b['median_wire_s']:.2f} s "
                f"on the wire: {cause}."
            )
    return flags


def _gap_share(row: pd.Series) -> str:
    wire, gaps = float(row["median_wire_s"]), float(row["median_gaps_s"])
    if not (wire > 0) or gaps != gaps:
        return "an unknown part"
    return f"{gaps / wire:.0%}"


def ratio_basis(
    bounds: pd.DataFrame, networks: list[str], direction: str = "up"
) -> str:
    """Whether a ratio between ``networks`` compares links or hosts, in words."""
    unknown = (
        "a ratio of unknown cause: without a capture of every network's model "
        "transfers, this report cannot tell whether the links or the hosts set them"
    )
    if bounds.empty or "direction" not in bounds.columns:
        return unknown
    rows = bounds[bounds["direction"] == direction].set_index("network")
    known = [n for n in networks if n in rows.index]
    if len(known) < len(networks):
        return unknown
    host = [n for n in known if rows.loc[n, "verdict"] == "host-bound"]
    if not host:
        return "a ratio of the links: every transfer is within 2× its link's floor"
    if len(host) == len(known):
        return (
            "a ratio of the hosts, not the links: every network's transfers take "
            "over 2× their link's floor"
        )
    return (
        "not a ratio of the links: "
        + ", ".join(host)
        + (" is" if len(host) == 1 else " are")
        + " host-bound (over 2× the link's floor)"
    )
