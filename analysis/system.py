"""System samples (``instrumentation/system.py`` output) to the tidy ``system.parquet``.

The table is long: one row per (host, instant, metric, device) with columns
``run_id, network, host, t_ns, metric, device, value``. Metrics (device in
brackets):

- ``cpu_percent`` (core index, "0"...): percent of that core busy since the
  previous sample;
- ``memory_used_bytes``, ``memory_available_bytes``, ``memory_total_bytes`` (""):
  bytes;
- ``net_bytes_sent``, ``net_bytes_recv``, ``net_packets_sent``, ``net_packets_recv``,
  ``net_errin``, ``net_errout``, ``net_dropin``, ``net_dropout`` (NIC name):
  cumulative counters since the NIC came up;
- ``temperature_c`` (sensor name): °C;
- ``throttled`` (flag name, e.g. ``under_voltage``): 1.0 if set, else 0.0.

A value the sampler could not measure (null in the file) has no row: nothing here
fills it in. Counters become bytes with :func:`nic_rates` and :func:`bytes_between`;
both treat a counter that goes down as a reset to zero (NIC recreated or a driver's
32-bit wrap), so the delta across a reset is the new reading, a lower bound that
misses what was counted between the previous sample and the reset.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

COLUMNS = ("run_id", "network", "host", "t_ns", "metric", "device", "value")
DIRECTIONS = ("sent", "recv")
MEMORY_METRICS = {
    "used_bytes": "memory_used_bytes",
    "available_bytes": "memory_available_bytes",
    "total_bytes": "memory_total_bytes",
}
RATE_DTYPES = {
    "run_id": "object",
    "network": "object",
    "host": "object",
    "device": "object",
    "direction": "object",
    "start_ns": "int64",
    "end_ns": "int64",
    "bytes": "float64",
    "rate_bytes_per_s": "float64",
    "reset": "bool",
}
_SERIES_KEYS = ["run_id", "network", "host", "metric", "device"]


class SystemLogError(ValueError):
    """A system-sample line that is neither valid JSON nor a line cut by a crash."""


def read_samples(path: Path) -> list[dict[str, Any]]:
    """Every record (``meta``, ``sample``, ``end``) of a sampler file, in file order.

    A last line cut short by a crash is skipped. So is a cut line followed by a
    ``meta`` line: the sampler restarted after a crash and ended the cut line before
    writing its own. Any other line that is not a JSON object raises
    :class:`SystemLogError` naming the file and line.
    """
    lines = Path(path).read_bytes().split(b"\n")
    parsed: list[tuple[int, dict[str, Any] | None]] = []
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            parsed.append((lineno, None))
            continue
        if not isinstance(record, dict):
            raise SystemLogError(
                f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}"
                "; is this a file written by instrumentation.system?"
            )
        parsed.append((lineno, record))
    records: list[dict[str, Any]] = []
    for index, (lineno, record) in enumerate(parsed):
        if record is not None:
            records.append(record)
            continue
        following = parsed[index + 1] if index + 1 < len(parsed) else None
        restarted = following is not None and (following[1] or {}).get("kind") == "meta"
        if following is not None and not restarted:
            raise SystemLogError(
                f"{path}:{lineno}: not valid JSON and not the last line, so not a "
                "line cut by a crash; the file is corrupt or was edited by hand"
            )
    return records


def _sample_rows(sample: Mapping[str, Any]) -> Iterable[tuple[str, str, Any]]:
    """(metric, device, value) of one sample record, nulls included."""
    for core, percent in enumerate(sample.get("cpu_percent") or []):
        yield "cpu_percent", str(core), percent
    for key, metric in MEMORY_METRICS.items():
        yield metric, "", (sample.get("memory") or {}).get(key)
    for nic, counters in (sample.get("net") or {}).items():
        for counter, value in (counters or {}).items():
            yield f"net_{counter}", nic, value
    for sensor, celsius in (sample.get("temperature_c") or {}).items():
        yield "temperature_c", sensor, celsius
    for flag, value in (sample.get("throttled") or {}).items():
        if flag != "raw" and value is not None:
            yield "throttled", flag, float(bool(value))


def system_table(
    samples: Iterable[Mapping[str, Any]], run_id: str, network: str
) -> pd.DataFrame:
    """The tidy long table of every ``sample`` record (meta and end lines ignored)."""
    rows = [
        (run_id, network, str(s["host"]), int(s["t_ns"]), metric, device, value)
        for s in samples
        if s.get("kind") == "sample"
        for metric, device, value in _sample_rows(s)
        if value is not None
    ]
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df = df.astype({"t_ns": "int64", "value": "float64"})
    for column in ("run_id", "network", "host", "metric", "device"):
        df[column] = df[column].astype(str)
    return df.sort_values([*_SERIES_KEYS, "t_ns"], kind="stable", ignore_index=True)


def counter_deltas(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Increase of a cumulative counter between consecutive readings, and reset flags.

    A reading below the previous one means the counter restarted from zero, so
    the increase is the new reading itself.
    """
    values = np.asarray(values, dtype="float64")
    raw = np.diff(values)
    reset = raw < 0
    return np.where(reset, values[1:], raw), reset


def _byte_series(table: pd.DataFrame, direction: str) -> pd.DataFrame:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    series = table[table["metric"] == f"net_bytes_{direction}"]
    # Two samples at one instant (a restarted sampler) would make a zero-length step.
    return series.drop_duplicates([*_SERIES_KEYS, "t_ns"], keep="last").sort_values(
        [*_SERIES_KEYS, "t_ns"], kind="stable"
    )


def nic_rates(table: pd.DataFrame) -> pd.DataFrame:
    """Bytes and bytes/s per host, NIC and direction between consecutive samples.

    One row per interval: ``run_id, network, host, device, direction`` (``sent`` or
    ``recv``), ``start_ns``, ``end_ns``, ``bytes``, ``rate_bytes_per_s`` and
    ``reset`` (the counter went down in this interval; ``bytes`` is then a lower
    bound).
    """
    parts: list[pd.DataFrame] = []
    for direction in DIRECTIONS:
        for keys, group in _byte_series(table, direction).groupby(
            _SERIES_KEYS, sort=True
        ):
            if len(group) < 2:
                continue
            t_ns = group["t_ns"].to_numpy(dtype="int64")
            delta, reset = counter_deltas(group["value"].to_numpy())
            seconds = np.diff(t_ns) / 1e9
            run_id, network, host, _, device = keys
            parts.append(
                pd.DataFrame(
                    {
                        "run_id": run_id,
                        "network": network,
                        "host": host,
                        "device": device,
                        "direction": direction,
                        "start_ns": t_ns[:-1],
                        "end_ns": t_ns[1:],
                        "bytes": delta,
                        "rate_bytes_per_s": delta / seconds,
                        "reset": reset,
                    }
                )
            )
    if not parts:
        return pd.DataFrame(
            {c: pd.Series(dtype=dtype) for c, dtype in RATE_DTYPES.items()}
        )
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(
        ["run_id", "network", "host", "device", "direction", "start_ns"],
        ignore_index=True,
    )


def bytes_between(
    table: pd.DataFrame,
    host: str,
    nic: str,
    start_ns: int,
    end_ns: int,
    direction: str,
) -> float:
    """Bytes ``host`` counted on ``nic`` in ``direction`` between two instants.

    The counter is read only at sample instants, so its value at ``start_ns`` and
    ``end_ns`` is linearly interpolated between the samples around each: bytes
    inside the two edge sampling intervals are taken as spread evenly over them.
    The error is therefore at most the bytes of those two intervals; sample
    faster, or widen the window to quiet periods, to shrink it. Resets count as in
    :func:`counter_deltas`.

    Raises
    ------
    ValueError
        If the host/NIC has no samples, the table holds several runs for it, or
        the interval is not inside the sampled span (nothing is extrapolated).
    """
    if end_ns < start_ns:
        raise ValueError(f"end_ns {end_ns} is before start_ns {start_ns}")
    series = _byte_series(table, direction)
    series = series[(series["host"] == host) & (series["device"] == nic)]
    if series.empty:
        known = sorted(set(zip(table["host"], table["device"], strict=True)))
        raise ValueError(
            f"no net_bytes_{direction} samples for host {host!r} NIC {nic!r}; "
            f"the table has (host, device) {known[:20]}"
        )
    runs = series["run_id"].unique()
    if len(runs) > 1:
        raise ValueError(
            f"host {host!r} NIC {nic!r} has samples from runs {sorted(runs)}; "
            "filter the table to one run first"
        )
    t_ns = series["t_ns"].to_numpy(dtype="int64")
    if start_ns < t_ns[0] or end_ns > t_ns[-1]:
        raise ValueError(
            f"interval [{start_ns}, {end_ns}] ns is not inside the sampled span "
            f"[{t_ns[0]}, {t_ns[-1]}] of host {host!r} NIC {nic!r}; start the "
            "sampler before and stop it after the traffic of interest"
        )
    delta, _ = counter_deltas(series["value"].to_numpy())
    cumulative = np.concatenate([[0.0], np.cumsum(delta)])
    # Relative to the first sample: float64 cannot hold ns since the epoch exactly.
    offsets = (t_ns - t_ns[0]).astype("float64")
    at = np.interp(
        [float(start_ns - t_ns[0]), float(end_ns - t_ns[0])], offsets, cumulative
    )
    return float(at[1] - at[0])


def write_system(df: pd.DataFrame, path: Path) -> None:
    """Write the system table (columns as :func:`system_table` makes) to parquet."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"system table for {path} lacks columns {missing}; build it with "
            "analysis.system.system_table"
        )
    out = df[list(COLUMNS)].astype({"t_ns": "int64", "value": "float64"})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(path, engine="pyarrow", index=False)


def read_system(path: Path) -> pd.DataFrame:
    """Read a table written by :func:`write_system`."""
    return pd.read_parquet(path, engine="pyarrow")
