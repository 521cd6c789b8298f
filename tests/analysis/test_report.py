"""Tests of analysis/report.py: a report built from a synthetic results folder."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analysis.phases import RunInfo, concat_phases, phases_from_events, write_phases
from analysis.report import build_report, emulation_notices

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
MODEL = 1_000_000
SECTIONS = (
    "Emulation",
    "Link profiles",
    "Time per phase",
    "Downlink and uplink times",
    "Median phase times",
    "Study ratios",
    "Runs",
    "Data quality",
    "Provenance",
)
DELAY_DETAIL = (
    "sch_netem not available in this kernel: delay and jitter were NOT emulated"
)


def run_events(
    uplink_ms: int, rounds: int = 3, lose_pi2_uplink: bool = False
) -> list[dict[str, Any]]:
    """Events of a run with two nodes; the train reply's uplink lasts ``uplink_ms``."""
    events: list[dict[str, Any]] = []
    for rnd in range(1, rounds + 1):
        base = rnd * 100_000 * MS
        for node in ("pi1", "pi2"):

            def ev(kind: str, node: str = node, **kw: Any) -> None:
                keys = {k: (T0 + v if k.endswith("_ns") else v) for k, v in kw.items()}
                events.append({"event": kind, "node": node, **keys})

            ev(
                "transfer",
                direction="down",
                start_ns=base,
                end_ns=base + 200 * MS,
                bytes=MODEL,
            )
            ev(
                "phase",
                phase="training",
                round=rnd,
                message_type="train",
                start_ns=base + 300 * MS,
                end_ns=base + 2_300 * MS,
                bytes_in=MODEL,
                bytes_out=MODEL,
                source="client_mod",
            )
            if not (lose_pi2_uplink and node == "pi2"):
                up0 = base + 2_400 * MS
                ev(
                    "transfer",
                    direction="up",
                    start_ns=up0,
                    end_ns=up0 + uplink_ms * MS,
                    bytes=MODEL,
                )
            e0 = base + 50_000 * MS
            ev(
                "transfer",
                direction="down",
                start_ns=e0,
                end_ns=e0 + 200 * MS,
                bytes=MODEL,
            )
            ev(
                "phase",
                phase="evaluation",
                round=rnd,
                message_type="evaluate",
                start_ns=e0 + 300 * MS,
                end_ns=e0 + 800 * MS,
                bytes_in=MODEL,
                bytes_out=300,
                source="client_mod",
            )
            ev(
                "transfer",
                direction="up",
                start_ns=e0 + 900 * MS,
                end_ns=e0 + 910 * MS,
                bytes=400,
            )
        events.append(
            {
                "event": "phase",
                "phase": "aggregation",
                "round": rnd,
                "node": "server",
                "message_type": "",
                "start_ns": T0 + base + 3_000 * MS,
                "end_ns": T0 + base + 3_200 * MS,
                "source": "server_timer",
            }
        )
    return events


def manifest(delay_active: bool = False) -> dict[str, Any]:
    return {
        "campaign": {"name": "uplink-study"},
        "emulation": {
            "rate": {"active": True, "detail": "tbf on both veth ends"},
            "loss": {"active": True, "detail": "netem-free loss via iptables"},
            "delay": {"active": delay_active, "detail": DELAY_DETAIL},
        },
        "link_profiles": {
            "5g": {"downlink_mbit": 100.0, "uplink_mbit": 20.0, "delay_ms": 20.0},
            "ethernet": {"downlink_mbit": 1000.0, "uplink_mbit": 1000.0},
            "wifi": {"downlink_mbit": 200.0, "uplink_mbit": 100.0},
        },
        "runs": [
            {
                "run_id": "ethernet-r1",
                "network": "ethernet",
                "repetition": 1,
                "status": "ok",
                "reason": "",
            },
            {
                "run_id": "5g-r1",
                "network": "5g",
                "repetition": 1,
                "status": "ok",
                "reason": "",
            },
            {
                "run_id": "wifi-r1",
                "network": "wifi",
                "repetition": 1,
                "status": "failed",
                "reason": "SuperNode pi2 exited with code 1",
            },
        ],
        "versions": {"flwr": "1.42.0", "torch": "2.13.0"},
        "git_commit": "8937eba",
        "kernel": "6.8.0-test",
    }


def results_dir(tmp_path: Path, delay_active: bool = False) -> Path:
    frames = [
        phases_from_events(
            run_events(3_290), RunInfo("uplink-study", "5g-r1", "5g", "fedavg", 1)
        ),
        phases_from_events(
            run_events(90, lose_pi2_uplink=True),
            RunInfo("uplink-study", "ethernet-r1", "ethernet", "fedavg", 1),
        ),
    ]
    write_phases(concat_phases(frames), tmp_path / "phases.parquet")
    (tmp_path / "manifest.json").write_text(json.dumps(manifest(delay_active)))
    return tmp_path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = results_dir(tmp_path_factory.mktemp("results"))
    report = build_report(folder)
    return folder, report.read_text(encoding="utf-8")


def test_report_is_written_with_every_section(built: tuple[Path, str]) -> None:
    folder, page = built

    assert (folder / "report.html").is_file()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page, title
    assert "uplink-study" in page


def test_figures_are_embedded_as_decodable_pngs(built: tuple[Path, str]) -> None:
    folder, page = built

    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)

    assert len(images) == 3
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    for name in ("phase_bar", "downlink_ecdf", "uplink_ecdf"):
        assert (folder / "figures" / f"{name}.png").is_file()
        assert (folder / "figures" / f"{name}.pdf").is_file()


def test_report_loads_nothing_from_outside(built: tuple[Path, str]) -> None:
    _, page = built

    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script" not in page
    assert "<link" not in page


def test_not_emulated_delay_is_announced(built: tuple[Path, str]) -> None:
    _, page = built

    assert "Delay and jitter were not emulated" in page
    assert "sch_netem not available in this kernel" in page


def test_no_notice_when_everything_was_emulated(tmp_path: Path) -> None:
    page = build_report(results_dir(tmp_path, delay_active=True)).read_text()

    assert "not emulated" not in page
    assert "Every link feature in the manifest was emulated" in page


def test_failed_run_is_highlighted(built: tuple[Path, str]) -> None:
    _, page = built

    failed_rows = re.findall(r'<tr class="failed">(.*?)</tr>', page)
    assert len(failed_rows) == 1
    assert "wifi-r1" in failed_rows[0]
    assert "SuperNode pi2 exited with code 1" in failed_rows[0]


def test_missing_network_renders_a_note(built: tuple[Path, str]) -> None:
    _, page = built

    assert "No phase data for network wifi." in page
    assert "5G uplink / WiFi uplink: not computed (needs uplink data on both" in page


def test_ratios_and_medians_are_in_page_and_csv(built: tuple[Path, str]) -> None:
    folder, page = built

    ratios = pd.read_csv(folder / "ratios.csv").set_index("metric")
    assert ratios.loc["5G uplink / Ethernet uplink", "value"] == pytest.approx(33.0)
    assert "33.0×" in page
    medians = pd.read_csv(folder / "median_phases.csv", index_col="network")
    assert medians.loc["5g", "uplink"] == pytest.approx(3.3)
    # pi2's lost train uplink leaves a partial sum that must not enter the median
    assert medians.loc["ethernet", "uplink"] == pytest.approx(0.1)
    assert "3.300" in page


def test_unmatched_transfers_are_reported(built: tuple[Path, str]) -> None:
    _, page = built

    assert "3 message transfers had no matching capture" in page


def test_provenance_is_shown(built: tuple[Path, str]) -> None:
    _, page = built

    for text in ("8937eba", "6.8.0-test", "version: flwr", "1.42.0"):
        assert text in page


def test_missing_phases_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        build_report(tmp_path)

    message = str(info.value)
    assert str(tmp_path / "phases.parquet") in message
    assert "flowerbed campaign run" in message


def test_report_without_manifest_or_transfers_still_builds(tmp_path: Path) -> None:
    events = [e for e in run_events(100) if e["event"] != "transfer"]
    df = phases_from_events(events, RunInfo("c", "r1", "ethernet", "fedavg", 1))
    write_phases(df, tmp_path / "phases.parquet")

    page = build_report(tmp_path).read_text()

    assert "No manifest at" in page
    assert "No figure:" in page  # no downlink/uplink rows to draw
    assert "On ethernet, no downlink, uplink was recorded." in page


def test_emulation_notices_lists_only_inactive_features() -> None:
    notices = emulation_notices(manifest())

    assert notices == [f"Delay and jitter were not emulated: {DELAY_DETAIL}"]
