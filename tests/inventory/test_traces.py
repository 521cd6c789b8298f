"""Bandwidth traces: both parsers, their errors at file and line, the shipped
traces, the phase offset, and traces named by an inventory's profiles."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from inventory.errors import InventoryError
from inventory.loader import load_inventory
from inventory.profiles import DEFAULT_PROFILES, ProfileError, resolve_profile
from inventory.traces import (
    MAHIMAHI_PACKET_BITS,
    BandwidthTrace,
    TraceError,
    TraceStep,
    detect_format,
    parse_csv,
    parse_mahimahi,
    parse_trace,
    phase_offset_s,
    read_trace,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "inventory" / "examples" / "traces"

# --- CSV --------------------------------------------------------------------------


def test_csv_rows_hold_until_the_next_and_the_last_as_long_as_the_one_before() -> None:
    trace = parse_csv("t_s,mbit_s\n0,10\n1,20\n1.5,5\n", "t.csv")

    assert trace.format == "csv"
    assert trace.steps == (TraceStep(0, 10), TraceStep(1, 20), TraceStep(1.5, 5))
    assert trace.period_s == 2.0
    assert trace.mean_mbit == pytest.approx((10 * 1 + 20 * 0.5 + 5 * 0.5) / 2)
    assert [trace.rate_at(t) for t in (0, 0.99, 1.0, 1.7, 2.0, 3.2)] == [
        10, 10, 20, 5, 10, 20]  # fmt: skip


def test_csv_header_comments_and_blank_lines_are_optional() -> None:
    bare = parse_csv("0,10\n1,20\n", "a.csv")
    dressed = parse_csv("# made by hand\nt_s , mbit_s\n\n0, 10\n1 ,20\n", "b.csv")

    assert bare.steps == dressed.steps and bare.period_s == dressed.period_s == 2.0


def test_csv_equal_neighbours_merge_and_one_row_is_a_constant() -> None:
    assert parse_csv("0,5\n1,5\n2,7\n", "t").steps == (
        TraceStep(0, 5), TraceStep(2, 7))  # fmt: skip
    one = parse_csv("0,3\n", "t")
    assert one.period_s == 1.0 and one.mean_mbit == 3.0


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("t_s,mbit_s\n0,10\n1,abc\n", 3, "mbit_s 'abc' is not a number"),
        ("0,10\n1,-2\n", 2, "mbit_s '-2' is not a number >= 0"),
        ("0,10\nx,2\n", 2, "t_s 'x' is not a number"),
        ("0,10\n1,2,3\n", 2, "row has 3 cell(s)"),
        ("0,10\n# gap\n\n1\n", 4, "row has 1 cell(s)"),
        ("0.5,10\n1,2\n", 1, "first row starts at t_s=0.5, not 0"),
        ("0,10\n2,2\n1,3\n", 3, "t_s=1 does not come after the row before"),
        ("0,10\n1,nan\n", 2, "not a number"),
        ("t_s,mbit_s\n", 1, "no rows"),
    ],
)
def test_csv_errors_name_the_file_the_line_and_the_fix(
    text: str, line: int, words: str
) -> None:
    with pytest.raises(TraceError) as info:
        parse_csv(text, "up.csv")

    err = info.value
    assert err.line == line and err.path == Path("up.csv")
    assert words in err.problem
    assert str(err).startswith(f"up.csv:{line}: ") and "Fix: " in str(err)


# --- Mahimahi ---------------------------------------------------------------------


def test_mahimahi_counts_packets_per_100_ms_and_loops_after_the_last() -> None:
    # 0-100 ms: 4 packets; 100-200 ms: 1; 200-250 ms: 1 (the last, at 250 ms, is
    # the loop's length and belongs to the next loop's 0 ms)
    trace = parse_mahimahi("1\n20\n20\n99\n150\n210\n250\n", "t.up")

    assert trace.format == "mahimahi" and trace.period_s == 0.25
    per_packet = MAHIMAHI_PACKET_BITS / 0.1 / 1e6  # 0.12 Mbit/s per packet a bin
    assert [s.start_s for s in trace.steps] == [0.0, 0.1, 0.2]
    rates = [s.mbit for s in trace.steps]
    # bin 0 holds 1, 20, 20, 99 and the looped 250; the last bin is 50 ms wide
    assert rates == pytest.approx([5 * per_packet, per_packet, 2 * per_packet])


def test_mahimahi_rate_of_one_packet_per_ms_is_12_mbit() -> None:
    trace = parse_mahimahi("".join(f"{ms}\n" for ms in range(1, 1001)), "t")

    assert trace.period_s == 1.0 and trace.mean_mbit == pytest.approx(12.0)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("1\n2\n1.5\n", 3, "'1.5' is not a timestamp"),
        ("1\n-3\n", 2, "'-3' is not a timestamp"),
        ("5\n9\n7\n", 3, "timestamp 7 ms comes after 9 ms"),
        ("0\n0\n", 2, "last timestamp is 0 ms"),
        ("# nothing\n\n", 1, "no timestamps"),
    ],
)
def test_mahimahi_errors_name_the_file_the_line_and_the_fix(
    text: str, line: int, words: str
) -> None:
    with pytest.raises(TraceError) as info:
        parse_mahimahi(text, "cell.down")

    assert info.value.line == line and words in info.value.problem
    assert str(info.value).startswith(f"cell.down:{line}: ")


def test_the_format_is_told_by_a_comma_on_the_first_data_line() -> None:
    assert detect_format("# c\nt_s,mbit_s\n0,1\n") == "csv"
    assert detect_format("1\n2\n") == "mahimahi"
    with pytest.raises(TraceError, match="not a timestamp.*CSV"):
        read_trace_text("1\n2;3\n")


def read_trace_text(text: str) -> BandwidthTrace:
    return parse_trace(text, "t")


def test_reading_a_missing_or_binary_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="trace file not found"):
        read_trace(tmp_path / "none.csv")
    (tmp_path / "bin").write_bytes(b"0,1\n\xff\xfe\n")
    with pytest.raises(TraceError, match="not UTF-8") as info:
        read_trace(tmp_path / "bin")
    assert info.value.line == 2


# --- the loop, the mean between two times, the phase --------------------------------


def test_mean_between_weighs_steps_by_time_and_loops() -> None:
    trace = parse_csv("0,10\n1,20\n", "t")  # 2-s loop

    assert trace.mean_between(0, 2) == pytest.approx(15)
    assert trace.mean_between(0.5, 1.5) == pytest.approx(15)
    assert trace.mean_between(1.5, 2.5) == pytest.approx(15)  # across the loop
    assert trace.mean_between(3, 4) == pytest.approx(20)


def test_phase_offsets_are_deterministic_within_the_period_and_differ() -> None:
    names = [f"client{i}" for i in range(1, 9)]
    phases = [phase_offset_s(n, 60.0) for n in names]

    assert phases == [phase_offset_s(n, 60.0) for n in names]
    assert all(0 <= p < 60 for p in phases)
    assert len({round(p, 3) for p in phases}) == len(names)
    assert max(phases) - min(phases) > 20  # spread over the loop


def test_a_trace_rejects_steps_that_do_not_start_at_zero_or_go_back() -> None:
    with pytest.raises(ValueError, match="first at 0"):
        BandwidthTrace("t", "csv", (TraceStep(1, 1),), 2)
    with pytest.raises(ValueError, match="increasing"):
        BandwidthTrace("t", "csv", (TraceStep(0, 1), TraceStep(0, 2)), 2)
    with pytest.raises(ValueError, match="period"):
        BandwidthTrace("t", "csv", (TraceStep(0, 1), TraceStep(2, 2)), 2)


# --- the shipped traces -------------------------------------------------------------


def test_the_shipped_traces_match_their_profiles() -> None:
    five_g = read_trace(SHIPPED / "5g-uplink-fades.csv")
    mahimahi = read_trace(SHIPPED / "5g-uplink-fades.mahimahi")
    wifi = read_trace(SHIPPED / "wifi-contention.csv")

    assert five_g.period_s == wifi.period_s == mahimahi.period_s == 60.0
    up_5g, up_wifi = DEFAULT_PROFILES["5g"], DEFAULT_PROFILES["wifi"]
    assert five_g.mean_mbit == pytest.approx(up_5g.uplink_mbit, rel=0.1)
    assert wifi.mean_mbit == pytest.approx(up_wifi.uplink_mbit, rel=0.1)
    assert mahimahi.mean_mbit == pytest.approx(five_g.mean_mbit, rel=0.02)
    # fades: some 100 ms steps fall below a fifth of the mean
    assert min(s.mbit for s in five_g.steps) < five_g.mean_mbit / 5
    assert not math.isclose(five_g.rate_at(10), five_g.rate_at(40))


def test_the_generator_writes_the_shipped_traces_again(tmp_path: Path) -> None:
    from bench import make_traces

    make_traces.main([str(tmp_path)])

    for name in (
        "5g-uplink-fades.csv",
        "wifi-contention.csv",
        "5g-uplink-fades.mahimahi",
    ):
        assert (tmp_path / name).read_bytes() == (SHIPPED / name).read_bytes(), name


# --- named by profiles --------------------------------------------------------------


def _load_trace(written: str) -> BandwidthTrace:
    return parse_csv("0,4\n1,12\n", written)


def test_a_traced_direction_takes_the_traces_mean_as_its_rate() -> None:
    profile = resolve_profile(
        {"base": "5g", "uplink_trace": "up.csv"}, "networks.5g.profile", _load_trace
    )

    assert profile.uplink_trace is not None and profile.downlink_trace is None
    assert profile.uplink_mbit == 8.0 and profile.downlink_mbit == 100.0
    assert "overridden: uplink_mbit=8, uplink_trace=up.csv" in profile.source
    full = resolve_profile(
        {"downlink_mbit": 50, "uplink_trace": "up.csv"}, "p", _load_trace
    )
    assert full.uplink_mbit == 8.0 and full.traced


@pytest.mark.parametrize(
    ("spec", "key", "words"),
    [
        ({"base": "5g", "uplink_trace": 3}, "p.uplink_trace", "must be the path"),
        (
            {"base": "5g", "uplink_trace": "u.csv", "uplink_mbit": 5},
            "p.uplink_mbit",
            "both uplink_mbit and uplink_trace",
        ),
        ({"uplink_trace": "u.csv"}, "p.downlink_mbit", "lacks downlink_mbit"),
    ],
)
def test_bad_trace_specs_name_the_key(
    spec: dict[str, object], key: str, words: str
) -> None:
    with pytest.raises(ProfileError) as info:
        resolve_profile(spec, "p", _load_trace)
    assert info.value.key == key and words in info.value.problem


def test_a_trace_needs_an_inventory_file_to_be_relative_to() -> None:
    with pytest.raises(ProfileError, match="belongs to no inventory file"):
        resolve_profile({"base": "5g", "uplink_trace": "u.csv"}, "p")


INVENTORY = """all:
  vars:
    networks:
      5g:
        subnet: 10.9.3.0/24
        server_address: 10.9.3.1
        profile: {{base: 5g, uplink_trace: {trace}}}
  children:
    server:
      hosts:
        server: {{ansible_host: 10.9.0.1}}
    clients:
      hosts:
        pi1:
          ansible_host: 10.9.0.11
          interfaces: {{5g: {{ifname: wwan0, ip: 10.9.3.11}}}}
"""


def test_an_inventory_reads_its_trace_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "up.csv").write_text("0,4\n1,12\n")
    path = tmp_path / "inv.yaml"
    path.write_text(INVENTORY.format(trace="traces/up.csv"))

    profile = load_inventory(path).network("5g").profile

    assert profile.uplink_trace is not None and profile.uplink_mbit == 8.0
    assert profile.uplink_trace.path == str(tmp_path / "traces" / "up.csv")


def test_an_inventory_with_a_bad_trace_points_at_the_traces_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "up.csv").write_text("t_s,mbit_s\n0,4\n1,fast\n")
    path = tmp_path / "inv.yaml"
    path.write_text(INVENTORY.format(trace="up.csv"))

    with pytest.raises(InventoryError) as info:
        load_inventory(path)

    err = info.value
    assert err.path == tmp_path / "up.csv" and err.line == 3
    assert "mbit_s 'fast' is not a number" in str(err)
    assert f"networks.5g.profile.uplink_trace, {path}:7" in str(err)
    assert "Fix: write each row as t_s,mbit_s" in str(err)


def test_an_inventory_with_a_missing_trace_says_where_it_looked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(INVENTORY.format(trace="gone.csv"))

    with pytest.raises(InventoryError, match="trace file not found") as info:
        load_inventory(path)
    assert info.value.path == tmp_path / "gone.csv"
    assert "relative to the inventory file" in str(info.value)
