"""Tests of analysis/system.py on synthetic samples with known answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analysis.system import (
    COLUMNS,
    SystemLogError,
    bytes_between,
    nic_rates,
    read_samples,
    read_system,
    system_table,
    write_system,
)

T0 = 1_760_000_000_000_000_000  # a real epoch instant: float64 cannot hold it to 1 ns
S = 1_000_000_000


def _counters(sent: int, recv: int = 0) -> dict[str, int]:
    return {
        "bytes_sent": sent,
        "bytes_recv": recv,
        "packets_sent": sent // 1000,
        "packets_recv": recv // 1000,
        "errin": 0,
        "errout": 0,
        "dropin": 0,
        "dropout": 0,
    }


def _sample(
    t_ns: int,
    sent: int,
    recv: int = 0,
    host: str = "pi1",
    cpu: list[float] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    sample: dict[str, Any] = {
        "kind": "sample",
        "t_ns": t_ns,
        "mono_ns": t_ns - T0,
        "host": host,
        "cpu_percent": cpu,
        "memory": {"used_bytes": 100, "available_bytes": 900, "total_bytes": 1000},
        "net": {"wlan0": _counters(sent, recv)},
        "temperature_c": None,
        "throttled": None,
    }
    sample.update(extra)
    return sample


# ---------------------------------------------------------------- system_table


def test_system_table_rows_for_one_sample() -> None:
    samples = [
        {"kind": "meta", "host": "pi1", "t_ns": T0 - 1},
        _sample(
            T0,
            sent=5,
            recv=7,
            cpu=[12.5, 50.0],
            net={"wlan0": _counters(5, 7), "wwan0": None},
            temperature_c={"cpu_thermal": 48.3},
            throttled={
                "raw": 0x50000,
                "under_voltage": False,
                "throttled_occurred": True,
            },
        ),
        {"kind": "end", "host": "pi1", "t_ns": T0 + 1, "samples": 1},
    ]

    df = system_table(samples, run_id="r1", network="wifi")

    assert tuple(df.columns) == COLUMNS
    assert df["t_ns"].dtype == "int64" and df["value"].dtype == "float64"
    assert set(df["run_id"]) == {"r1"} and set(df["network"]) == {"wifi"}
    assert set(df["t_ns"]) == {T0}  # meta and end lines are not samples
    got = {
        (m, d): v
        for m, d, v in zip(df["metric"], df["device"], df["value"], strict=True)
    }
    assert got == {
        ("cpu_percent", "0"): 12.5,
        ("cpu_percent", "1"): 50.0,
        ("memory_used_bytes", ""): 100.0,
        ("memory_available_bytes", ""): 900.0,
        ("memory_total_bytes", ""): 1000.0,
        ("net_bytes_sent", "wlan0"): 5.0,
        ("net_bytes_recv", "wlan0"): 7.0,
        ("net_packets_sent", "wlan0"): 0.0,
        ("net_packets_recv", "wlan0"): 0.0,
        ("net_errin", "wlan0"): 0.0,
        ("net_errout", "wlan0"): 0.0,
        ("net_dropin", "wlan0"): 0.0,
        ("net_dropout", "wlan0"): 0.0,
        ("temperature_c", "cpu_thermal"): 48.3,
        ("throttled", "under_voltage"): 0.0,
        ("throttled", "throttled_occurred"): 1.0,
    }
    assert len(df) == len(got)


def test_nulls_get_no_rows() -> None:
    sample = _sample(T0, sent=0, cpu=None)
    sample["memory"] = {"used_bytes": None, "available_bytes": 5, "total_bytes": 9}
    sample["net"] = {"wlan0": None}

    df = system_table([sample], run_id="r1", network="wifi")

    assert sorted(df["metric"]) == ["memory_available_bytes", "memory_total_bytes"]


def test_empty_samples_give_an_empty_typed_table() -> None:
    df = system_table([{"kind": "meta"}], run_id="r1", network="wifi")

    assert df.empty and tuple(df.columns) == COLUMNS
    assert df["t_ns"].dtype == "int64" and df["value"].dtype == "float64"


# ------------------------------------------------------------------- nic_rates


def test_nic_rates_with_a_counter_reset() -> None:
    samples = [
        _sample(T0, sent=0, recv=100),
        _sample(T0 + S, sent=1000, recv=100),
        _sample(T0 + 3 * S, sent=5000, recv=400),
        _sample(T0 + 4 * S, sent=700, recv=600),  # sent counter restarted
    ]
    table = system_table(samples, run_id="r1", network="wifi")

    rates = nic_rates(table)

    sent = rates[rates["direction"] == "sent"]
    assert sent["start_ns"].tolist() == [T0, T0 + S, T0 + 3 * S]
    assert sent["end_ns"].tolist() == [T0 + S, T0 + 3 * S, T0 + 4 * S]
    assert sent["bytes"].tolist() == [1000.0, 4000.0, 700.0]
    assert sent["rate_bytes_per_s"].tolist() == [1000.0, 2000.0, 700.0]
    assert sent["reset"].tolist() == [False, False, True]
    recv = rates[rates["direction"] == "recv"]
    assert recv["bytes"].tolist() == [0.0, 300.0, 200.0]
    assert recv["rate_bytes_per_s"].tolist() == [0.0, 150.0, 200.0]
    assert not recv["reset"].any()
    assert set(rates["host"]) == {"pi1"} and set(rates["device"]) == {"wlan0"}


def test_nic_rates_keep_hosts_apart() -> None:
    samples = [
        _sample(T0, sent=0, host="pi1"),
        _sample(T0, sent=10_000, host="pi2"),
        _sample(T0 + S, sent=500, host="pi1"),
        _sample(T0 + 2 * S, sent=12_000, host="pi2"),
    ]
    table = system_table(samples, run_id="r1", network="wifi")

    rates = nic_rates(table)
    sent = rates[rates["direction"] == "sent"].set_index("host")

    assert sent.loc["pi1", "rate_bytes_per_s"] == 500.0
    assert sent.loc["pi2", "rate_bytes_per_s"] == 1000.0


def test_nic_rates_of_a_table_without_counters_is_empty() -> None:
    table = system_table([_sample(T0, sent=1)], run_id="r1", network="wifi")

    rates = nic_rates(table[table["metric"] == "cpu_percent"])

    assert rates.empty
    assert "rate_bytes_per_s" in rates.columns


# --------------------------------------------------------------- bytes_between


@pytest.fixture
def counters() -> pd.DataFrame:
    # sent: 0 B, 1000 B, 3000 B, then the NIC was recreated: 200 B, 1200 B.
    samples = [
        _sample(T0, sent=0),
        _sample(T0 + S, sent=1000),
        _sample(T0 + 2 * S, sent=3000),
        _sample(T0 + 3 * S, sent=200),
        _sample(T0 + 4 * S, sent=1200),
    ]
    return system_table(samples, run_id="r1", network="wifi")


@pytest.mark.parametrize(
    ("start_ns", "end_ns", "expected"),
    [
        (T0, T0 + 2 * S, 3000.0),  # on sample instants: exact counter delta
        (T0 + S // 2, T0 + 3 * S // 2, 1500.0),  # half of 1000 B + half of 2000 B
        (T0 + S // 4, T0 + S // 4, 0.0),
        (T0 + 1_500_000_000, T0 + 2 * S, 1000.0),  # half of the 2000-byte interval
        (T0 + 2 * S, T0 + 3 * S, 200.0),  # across the reset: the new reading
        (T0 + 2 * S + S // 2, T0 + 4 * S, 1100.0),  # 100 (half of 200) + 1000
        (T0, T0 + 4 * S, 4200.0),
        (T0 + 1, T0 + 2, 0.000001),  # 1 ns at 1000 B/s: offsets kept exact
    ],
)
def test_bytes_between(
    counters: pd.DataFrame, start_ns: int, end_ns: int, expected: float
) -> None:
    got = bytes_between(counters, "pi1", "wlan0", start_ns, end_ns, "sent")

    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_bytes_between_received() -> None:
    samples = [_sample(T0, 0, recv=10), _sample(T0 + S, 0, recv=110)]
    table = system_table(samples, run_id="r1", network="wifi")

    assert bytes_between(table, "pi1", "wlan0", T0, T0 + S // 10, "recv") == 10.0
    assert bytes_between(table, "pi1", "wlan0", T0, T0 + S, "sent") == 0.0


@pytest.mark.parametrize(
    ("host", "nic", "start_ns", "end_ns", "direction", "message"),
    [
        ("pi1", "wlan0", T0 - 1, T0 + S, "sent", "not inside the sampled span"),
        ("pi1", "wlan0", T0, T0 + 4 * S + 1, "sent", "not inside the sampled span"),
        ("pi1", "eth0", T0, T0 + S, "sent", "no net_bytes_sent samples .* 'eth0'"),
        ("pi9", "wlan0", T0, T0 + S, "sent", "no net_bytes_sent samples for host"),
        ("pi1", "wlan0", T0, T0 + S, "up", "direction must be one of"),
        ("pi1", "wlan0", T0 + S, T0, "sent", "is before start_ns"),
    ],
)
def test_bytes_between_refuses(
    counters: pd.DataFrame,
    host: str,
    nic: str,
    start_ns: int,
    end_ns: int,
    direction: str,
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        bytes_between(counters, host, nic, start_ns, end_ns, direction)


def test_bytes_between_refuses_mixed_runs(counters: pd.DataFrame) -> None:
    other = counters.assign(run_id="r2")

    with pytest.raises(ValueError, match="filter the table to one run"):
        bytes_between(pd.concat([counters, other]), "pi1", "wlan0", T0, T0 + S, "sent")


# ---------------------------------------------------------------- read_samples


def _write(path: Path, records: list[dict[str, Any]], tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


def test_read_samples_skips_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "system.jsonl"
    records = [{"kind": "meta", "host": "pi1"}, _sample(T0, 1), _sample(T0 + S, 2)]
    _write(path, records, tail='{"kind": "sample", "t_ns": 17600000')

    assert read_samples(path) == records


def test_read_samples_keeps_a_complete_last_line_without_newline(
    tmp_path: Path,
) -> None:
    path = tmp_path / "system.jsonl"
    path.write_text('{"kind": "meta"}\n{"kind": "end"}')

    assert read_samples(path) == [{"kind": "meta"}, {"kind": "end"}]


def test_read_samples_skips_a_cut_line_before_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "system.jsonl"
    _write(path, [{"kind": "meta"}], tail='{"kind": "sam\n')
    with path.open("a") as f:
        f.write(json.dumps({"kind": "meta", "n": 2}) + "\n")

    assert read_samples(path) == [{"kind": "meta"}, {"kind": "meta", "n": 2}]


def test_read_samples_rejects_a_corrupt_middle_line(tmp_path: Path) -> None:
    path = tmp_path / "system.jsonl"
    path.write_text('{"kind": "meta"}\n{"kind": "sam\n{"kind": "end"}\n')

    with pytest.raises(SystemLogError, match=r"system.jsonl:2: not valid JSON"):
        read_samples(path)


def test_read_samples_rejects_a_non_object(tmp_path: Path) -> None:
    path = tmp_path / "system.jsonl"
    path.write_text('{"kind": "meta"}\n[1, 2]\n')

    with pytest.raises(SystemLogError, match=r"system.jsonl:2: expected a JSON object"):
        read_samples(path)


# ---------------------------------------------------------------- write_system


def test_write_system_round_trip(tmp_path: Path, counters: pd.DataFrame) -> None:
    path = tmp_path / "out" / "system.parquet"

    write_system(counters, path)
    back = read_system(path)

    assert tuple(back.columns) == COLUMNS
    assert back["t_ns"].dtype == "int64" and back["value"].dtype == "float64"
    assert back["t_ns"].tolist() == counters["t_ns"].tolist()  # ns intact
    pd.testing.assert_frame_equal(back, counters.reset_index(drop=True))


def test_write_system_names_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"lacks columns \['value'\]"):
        write_system(
            pd.DataFrame({c: [] for c in COLUMNS if c != "value"}), tmp_path / "x"
        )
