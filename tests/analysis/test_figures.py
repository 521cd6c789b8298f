"""Tests of analysis/figures.py: files are written, colours are the fixed ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from analysis.figures import (
    NETWORK_COLOURS,
    PHASE_COLOURS,
    PHASE_HATCHES,
    anatomy_bar,
    choose_gantt_rounds,
    gantt,
    gantt_bars,
    host_colours,
    network_colours,
    phase_bar,
)
from analysis.figures_ecdf import transfer_ecdf
from analysis.figures_study import study_bars
from analysis.figures_system import system_timeline
from analysis.phases import COLUMNS, DTYPES
from analysis.summary import (
    LEGACY_PHASES,
    PHASE_ORDER,
    WAITING_PHASES,
    median_phase_table,
    phase_shares,
    round_time_table,
)
from tests.analysis.test_summary import (
    TILED,
    anatomy_frame,
    anatomy_rows,
)
from tests.analysis.test_summary import phase_rows as summary_phase_rows
from tests.analysis.test_summary import table as table_from


def median_table(networks: dict[str, dict[str, float]]) -> pd.DataFrame:
    df = pd.DataFrame.from_dict(networks, orient="index").reindex(
        columns=list(LEGACY_PHASES)
    )
    df["n"] = 3
    df.index.name = "network"
    return df


def phase_rows_untiled() -> list[dict[str, object]]:
    return [{**r, "run_id": "5g-r1"} for r in summary_phase_rows("5g", rounds=1)]


def has_colour(png: Path, hex_colour: str, tol: float = 0.02) -> bool:
    pixels = imread(png)[..., :3]
    return bool((np.abs(pixels - np.array(to_rgb(hex_colour))) < tol).all(-1).any())


def transfer_rows(
    network: str, phase: str, seconds: list[float]
) -> list[dict[str, object]]:
    return [
        {
            "campaign": "c",
            "run_id": f"{network}-r1",
            "network": network,
            "strategy": "fedavg",
            "repetition": 1,
            "round": i + 1,
            "node": "pi1",
            "phase": phase,
            "message_type": "train" if i % 2 == 0 else "evaluate",
            "start_ns": 0,
            "end_ns": int(s * 1e9),
            "duration_s": s,
            "bytes": 1000,
            "message_bytes": 900,
            "source": "capture",
        }
        for i, s in enumerate(seconds)
    ]


def test_phase_bar_writes_png_and_pdf_in_phase_colours(tmp_path: Path) -> None:
    table = median_table(
        {
            "ethernet": {"downlink": 0.1, "training": 2.0, "uplink": 0.1},
            "5g": {"downlink": 1.0, "training": 2.0, "evaluation": 0.5, "uplink": 3.3},
        }
    )

    png, pdf = phase_bar(table, tmp_path / "figs" / "phase_bar")

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    for phase in ("downlink", "training", "evaluation", "uplink"):
        assert has_colour(png, PHASE_COLOURS[phase]), phase


def test_phase_bar_refuses_an_empty_table(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no values"):
        phase_bar(median_table({}), tmp_path / "bar")


def test_transfer_ecdf_draws_each_network_in_its_colour(tmp_path: Path) -> None:
    records = transfer_rows("ethernet", "uplink", [0.1, 0.12, 0.09, 0.02])
    records += transfer_rows("wifi", "uplink", [0.5, 0.4, 0.45, 0.1])
    records += transfer_rows("5g", "uplink", [3.3, 3.0, 3.5, 0.3])
    records += transfer_rows("5g", "downlink", [1.0, 1.1])
    df = pd.DataFrame.from_records(records, columns=list(COLUMNS)).astype(DTYPES)

    png, pdf = transfer_ecdf(df, "uplink", tmp_path / "uplink_ecdf")

    assert png.is_file() and pdf.is_file()
    for network in ("ethernet", "wifi", "5g"):
        assert has_colour(png, NETWORK_COLOURS[network]), network


def test_transfer_ecdf_refuses_missing_phase_and_compute_phases(tmp_path: Path) -> None:
    df = pd.DataFrame.from_records(
        transfer_rows("5g", "uplink", [1.0]), columns=list(COLUMNS)
    ).astype(DTYPES)

    with pytest.raises(ValueError, match="no downlink rows"):
        transfer_ecdf(df, "downlink", tmp_path / "d")
    with pytest.raises(ValueError, match="downlink or uplink"):
        transfer_ecdf(df, "training", tmp_path / "t")


def test_network_colours_are_fixed_and_distinct() -> None:
    first = network_colours(["5G", "lora", "wifi", "Ethernet", "mesh"])
    second = network_colours(["mesh", "lora", "5G"])

    assert first["5G"] == NETWORK_COLOURS["5g"] == second["5G"]
    assert first["lora"] == second["lora"]
    assert len(set(first.values())) == 5


def test_phase_colours_are_distinct_and_waiting_phases_hatched() -> None:
    assert set(PHASE_COLOURS) == set(PHASE_ORDER)
    assert len(set(PHASE_COLOURS.values())) == len(PHASE_ORDER)
    assert set(PHASE_HATCHES) == {*WAITING_PHASES, "unresolved"}


def test_phase_bar_of_a_tiled_table_draws_the_legacy_phases_only(
    tmp_path: Path,
) -> None:
    medians = median_phase_table(anatomy_frame(anatomy_rows("5g")))

    png, _ = phase_bar(medians, tmp_path / "bar")

    assert has_colour(png, PHASE_COLOURS["uplink"])
    assert not has_colour(png, PHASE_COLOURS["server_other"])
    assert not has_colour(png, PHASE_COLOURS["client_startup"])


def _shares(df: pd.DataFrame) -> pd.DataFrame:
    return phase_shares(df, round_time_table(df)["median_round_s"])


def test_anatomy_bar_draws_every_phase_in_its_colour(tmp_path: Path) -> None:
    table = _shares(anatomy_frame(anatomy_rows("5g"), anatomy_rows("wifi")))

    png, pdf = anatomy_bar(table, tmp_path / "figs" / "anatomy")

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    for phase in TILED:
        assert has_colour(png, PHASE_COLOURS[phase]), phase


def test_anatomy_bar_refuses_an_empty_table(tmp_path: Path) -> None:
    empty = _shares(anatomy_frame())

    with pytest.raises(ValueError, match="anatomy table has no values"):
        anatomy_bar(empty, tmp_path / "a")


def test_gantt_bars_start_at_the_first_dispatch() -> None:
    df = anatomy_frame(anatomy_rows("5g"))

    bars, origin = gantt_bars(df, "5g-fedavg-r1", 2)

    assert origin == "the round's first dispatch"
    assert bars["start_s"].min() == pytest.approx(0.0)
    assert bars["end_s"].max() == pytest.approx(21.4)
    training = bars[(bars["phase"] == "training")].set_index("node")
    # the straggler: dispatch_wait 0.25 + downlink 1.0 + client_startup 0.4
    assert training.loc["pi2", "start_s"] == pytest.approx(1.65)
    assert training.loc["pi2", "end_s"] == pytest.approx(11.65)
    server = bars[bars["node"] == "server"]
    assert server["phase"].tolist() == ["aggregation"]
    assert server["start_s"].iloc[0] == pytest.approx(15.25 + 0.02)


def test_gantt_bars_of_an_untiled_round_start_at_its_first_instant() -> None:
    df = table_from(phase_rows_untiled())

    bars, origin = gantt_bars(df, "5g-r1", 1)

    assert origin == "the round's first recorded instant"
    assert bars["start_s"].min() == pytest.approx(0.0)


def test_gantt_draws_each_phase_in_its_colour(tmp_path: Path) -> None:
    df = anatomy_frame(anatomy_rows("5g"))

    png, pdf = gantt(df, "5g-fedavg-r1", 2, tmp_path / "timeline")

    assert pdf.is_file()
    for phase in TILED:
        assert has_colour(png, PHASE_COLOURS[phase]), phase


def test_gantt_bars_span_their_seconds(tmp_path: Path) -> None:
    # one node, two bars: training 0 -> 8 s, uplink 8 -> 10 s
    rows = [
        {**r, "node": "pi1"}
        for r in anatomy_rows("5g", rounds=1)
        if r["node"] == "pi1"
        and r["phase"] in ("training", "uplink")
        and r["message_type"] == "train"
    ]
    rows[0]["start_ns"], rows[0]["end_ns"] = 0, 8_000_000_000
    rows[1]["start_ns"], rows[1]["end_ns"] = 8_000_000_000, 10_000_000_000

    png, _ = gantt(anatomy_frame(rows), "5g-fedavg-r1", 1, tmp_path / "g")

    widths = {}
    for phase in ("training", "uplink"):
        pixels = imread(png)[..., :3]
        mask = (np.abs(pixels - np.array(to_rgb(PHASE_COLOURS[phase]))) < 0.02).all(-1)
        widths[phase] = int(mask.sum(axis=1).max())
    # the legend's patches are much narrower than either bar
    assert widths["training"] / widths["uplink"] == pytest.approx(4.0, rel=0.1)


def test_gantt_refuses_a_missing_round(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no rows of run 5g-fedavg-r1 round 9"):
        gantt(anatomy_frame(anatomy_rows("5g")), "5g-fedavg-r1", 9, tmp_path / "g")


def test_choose_gantt_rounds_prefers_round_2_of_the_first_repetition() -> None:
    df = anatomy_frame(
        anatomy_rows("5g", repetition=2),
        anatomy_rows("5g", repetition=1),
        anatomy_rows("ethernet", rounds=1),
    )

    chosen = choose_gantt_rounds(df)

    assert chosen == [("ethernet", "ethernet-fedavg-r1", 1), ("5g", "5g-fedavg-r1", 2)]


def test_system_timeline_draws_hosts_in_their_colours(tmp_path: Path) -> None:
    cpu = pd.DataFrame(
        {
            "host": ["server", "server", "pi1", "pi1"],
            "t_s": [0.0, 1.0, 0.0, 1.0],
            "cpu_percent": [10.0, 80.0, 50.0, 20.0],
        }
    )
    nic = pd.DataFrame(
        {
            "host": ["server", "server"],
            "device": ["eth0", "eth0"],
            "direction": ["sent", "recv"],
            "start_s": [0.0, 0.0],
            "end_s": [1.0, 1.0],
            "mbit_s": [20.0, 5.0],
        }
    )

    png, _ = system_timeline(cpu, nic, "5g: run r1", tmp_path / "sys", [0.5])

    colours = host_colours(["server", "pi1", "pi2"])
    assert colours["server"] == "#000000"
    assert colours == host_colours(["pi2", "server", "pi1"])
    assert len(set(colours.values())) == 3
    assert has_colour(png, colours["pi1"])
    assert not has_colour(png, colours["pi2"])
    with pytest.raises(ValueError, match="no CPU or NIC samples"):
        system_timeline(cpu.iloc[:0], nic.iloc[:0], "t", tmp_path / "none")


def _longest_run(indices: np.ndarray) -> np.ndarray:
    """The longest run of consecutive indices (a bar, not a spine or a title)."""
    runs = np.split(indices, np.flatnonzero(np.diff(indices) > 1) + 1)
    return max(runs, key=len)


def test_study_error_bars_show_on_a_black_bar(tmp_path: Path) -> None:
    # ethernet's bar is black: a black error bar on it would vanish
    table = pd.DataFrame(
        {
            "network": ["ethernet"],
            "strategy": ["fedavg"],
            "quantity": ["uplink"],
            "median": [1.0],
            "median_low": [0.5],
            "median_high": [1.5],
        }
    )

    png, _ = study_bars(table, ["uplink"], tmp_path / "study")

    pixels = imread(png)[..., :3]
    black = np.asarray((pixels < 0.1).all(-1))
    columns = _longest_run(np.flatnonzero(black.sum(axis=0) > 50))  # the bar
    middle = int(columns.mean())
    rows = _longest_run(np.flatnonzero(black[:, columns.min() + 3]))
    inside = pixels[rows.min() + 2 : rows.max() - 2, middle - 5 : middle + 6]
    assert (inside > 0.9).all(-1).sum() > 20  # the error bar's white halo
