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
    network_colours,
    phase_bar,
    transfer_ecdf,
)
from analysis.phases import COLUMNS, DTYPES, PHASES


def median_table(networks: dict[str, dict[str, float]]) -> pd.DataFrame:
    df = pd.DataFrame.from_dict(networks, orient="index").reindex(columns=list(PHASES))
    df["n"] = 3
    df.index.name = "network"
    return df


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


def test_phase_colours_are_distinct() -> None:
    assert set(PHASE_COLOURS) == set(PHASES)
    assert len(set(PHASE_COLOURS.values())) == len(PHASES)
