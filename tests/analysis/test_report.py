"""Tests of analysis/report.py: a report built from a synthetic results folder."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analysis import report as report_module
from analysis.damage import ResultsError
from analysis.phases import RunInfo, concat_phases, phases_from_events, write_phases
from analysis.report import (
    TRANSFER_COLUMNS,
    build_report,
    emulation_notices,
    system_series,
)
from analysis.report_setup import emulation_section
from analysis.summary import PHASE_DEFINITIONS
from analysis.system import read_system, write_system
from tests.analysis.test_figures import has_colour
from tests.analysis.test_summary import (
    ANATOMY_DTYPES,
    LEGACY_COLUMNS,
    anatomy_frame,
    anatomy_rows,
)
from tests.analysis.test_summary import phase_rows as summary_phase_rows

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
MODEL = 1_000_000
SECTIONS = (
    "Findings",
    "Where a round goes",
    "Round timeline",
    "Study",
    "Stragglers",
    "Convergence",
    "Distributions",
    "Runs",
    "Emulation",
    "Link profiles",
    "Data quality",
    "Provenance",
)
DELAY_DETAIL = (
    "sch_netem not available in this kernel: delay and jitter were NOT emulated"
)


# Figures of the study sections (analysis/report_study.py), by their element ids.
STUDY_FIGURE_IDS = (
    'id="study-figure"',
    'id="straggler-heatmap-',
    'id="convergence-figure"',
    'id="phase-ecdfs"',
    'id="bytes-over-time"',
)


def study_figures(page: str) -> int:
    """How many figures of the study sections the page embeds."""
    return sum(page.count(f"<figure {ident}") for ident in STUDY_FIGURE_IDS)


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
    assert page.index("<h2>") == page.index("<h2>Findings</h2>")


def test_figures_are_embedded_as_decodable_pngs(built: tuple[Path, str]) -> None:
    folder, page = built

    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)

    assert study_figures(page) >= 4  # study, heatmaps, ECDFs per phase
    # the bar of medians (no round anatomy here) and two transfer ECDFs
    assert len(images) == 3 + study_figures(page)
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

    assert "No phase data for network wifi." in section(page, "Data quality")
    assert "5g / wifi" not in page  # no ratio without wifi data


def test_ratios_and_medians_are_in_page_and_csv(built: tuple[Path, str]) -> None:
    folder, page = built

    ratios = pd.read_csv(folder / "ratios.csv").set_index("metric")
    assert ratios.loc["5G uplink / Ethernet uplink", "value"] == pytest.approx(33.0)
    # one table, one precision: the study's ratio table
    assert '<td class="num">33.00×</td>' in page
    assert "33.0×" not in page.replace("33.00×", "")
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
    with pytest.raises(ResultsError) as info:
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


def test_the_delay_line_is_named_and_its_rate_only_networks_noticed() -> None:
    data = manifest()
    data["emulation"]["delay"] = {
        "active": True,
        "detail": "userspace delay line (NFQUEUE) on wifi, 5g",
        "mechanism": "delay-line",
        "rate_only_networks": ["ethernet"],
    }

    notices = emulation_notices(data)
    section = emulation_section(data)

    assert notices == [
        "Delay and jitter were not emulated on ethernet (rate only): userspace "
        "delay line (NFQUEUE) on wifi, 5g"
    ]
    assert "delay (delay-line)" in section and "not emulated on ethernet" in section


# --- A results folder with the round anatomy and every optional input ----------

NEW_SECTIONS = (
    *SECTIONS,
    "Transfers: wire vs SuperNode",
    "Bytes",
    "System",
    "Clock offsets",
)
NETWORKS = ("ethernet", "wifi", "5g")
SAMPLE_S = 0.5


def clocks() -> list[dict[str, Any]]:
    base = {"run_id": "5g-fedavg-r1", "path": "lan", "when": "start"}
    return [
        # recovered: |300.2 - 300.0| ms <= 0.5 ms
        {
            **base,
            "node": "pi1",
            "offset_ns": 300_200_000,
            "uncertainty_ns": 500_000,
            "injected_offset_ns": 300_000_000,
        },
        # missed: |-48 - (-50)| ms = 2 ms > 0.4 ms
        {
            **base,
            "node": "pi2",
            "offset_ns": -48_000_000,
            "uncertainty_ns": 400_000,
            "injected_offset_ns": -50_000_000,
        },
        # a real node: nothing injected
        {
            **base,
            "node": "pi3",
            "when": "end",
            "offset_ns": 1_000_000,
            "uncertainty_ns": 250_000,
            "injected_offset_ns": None,
        },
    ]


def transfers_csv(path: Path) -> None:
    rows = [
        # node, round, type, direction, wire, log, disagrees, retransmissions
        ("pi1", 1, "train", "up", 2.0, 2.01, False, 0),
        ("pi2", 1, "train", "up", 2.0, 2.9, True, 3),
        ("pi1", 2, "train", "down", 1.0, 1.0, False, 0),
        ("pi2", 2, "evaluate", "down", 0.5, 0.2, True, 0),
        ("pi1", 3, "evaluate", "up", 0.2, 0.21, False, 0),
    ]
    records = [
        {
            "node": node,
            "round": rnd,
            "message_type": kind,
            "direction": direction,
            "wire_s": wire,
            "log_s": log,
            "diff_s": log - wire,
            "diff_pct": 100 * (log - wire) / wire,
            "disagrees": disagrees,
            "retransmissions": retransmissions,
            "goodput_mbit": 32.0 / wire,
        }
        for node, rnd, kind, direction, wire, log, disagrees, retransmissions in rows
    ]
    pd.DataFrame.from_records(records).to_csv(path, index=False)


def bytes_csv(path: Path) -> None:
    records = []
    for network in NETWORKS:
        for i, wire in enumerate((4_100_000, 4_120_000, 4_140_000)):
            records.append(
                {
                    "network": network,
                    "message_type": "train",
                    "direction": "up",
                    "flower_bytes": 4_000_000,
                    "wire_bytes": wire,
                    "nic_bytes": wire + 50_000 + i,
                    "overhead": wire / 4_000_000 - 1,
                }
            )
    pd.DataFrame.from_records(records).to_csv(path, index=False)


def system_table(path: Path) -> None:
    rows = []
    for network in NETWORKS:
        run_id = f"{network}-fedavg-r1"
        t0 = T0 + 100_000 * MS  # round 1 starts here
        for host in ("server", "pi1"):
            for k in range(60):
                t = t0 + int(k * SAMPLE_S * 1e9)
                for core, busy in (("0", 20.0 + k), ("1", 40.0)):
                    rows.append((run_id, network, host, t, "cpu_percent", core, busy))
                eth0 = 2_000_000 if host == "pi1" else 1_000_000
                for device, step in (("eth0", eth0), ("lo", 10)):
                    for direction in ("sent", "recv"):
                        rows.append(
                            (
                                run_id,
                                network,
                                host,
                                t,
                                f"net_bytes_{direction}",
                                device,
                                float(k * step),
                            )
                        )
    table = pd.DataFrame.from_records(
        rows, columns=["run_id", "network", "host", "t_ns", "metric", "device", "value"]
    )
    write_system(table, path)


def anatomy_results(folder: Path) -> Path:
    df = anatomy_frame(*(anatomy_rows(n) for n in NETWORKS))
    df.attrs = {
        "unmatched": [],
        "anatomy": [
            {
                "run_id": "5g-fedavg-r1",
                "round": r,
                "node": n,
                "tiled": True,
                "round_start_ns": None,
                "round_end_ns": None,
                "note": "reply_handoff of train is -0.000200 s"
                if (r, n) == (3, "pi1")
                else "",
            }
            for r in (1, 2, 3)
            for n in ("pi1", "pi2")
        ],
    }
    write_phases(df, folder / "phases.parquet")
    (folder / "manifest.json").write_text(
        json.dumps({**manifest(), "clocks": clocks()})
    )
    transfers_csv(folder / "transfers.csv")
    bytes_csv(folder / "bytes.csv")
    system_table(folder / "system.parquet")
    return folder


@pytest.fixture(scope="module")
def anatomy_built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = anatomy_results(tmp_path_factory.mktemp("anatomy"))
    return folder, build_report(folder).read_text(encoding="utf-8")


def section(page: str, title: str) -> str:
    start = page.index(f"<h2>{title}</h2>")
    return page[start : page.index("</section>", start)]


def test_anatomy_report_has_every_section_and_figure(
    anatomy_built: tuple[Path, str],
) -> None:
    folder, page = anatomy_built

    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)

    for title in NEW_SECTIONS:
        assert f"<h2>{title}</h2>" in page, title
    # 2 transfer ECDFs, anatomy bar, a timeline and a system figure per network
    assert len(images) == 3 + 2 * len(NETWORKS) + study_figures(page)
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    names = ["anatomy_bar", "phase_bar", *(f"timeline_{n}" for n in NETWORKS)]
    for name in [*names, *(f"system_{n}" for n in NETWORKS)]:
        assert (folder / "figures" / f"{name}.png").is_file(), name
    assert "<script" not in page and "<link" not in page
    assert "No figure" not in page


def test_round_anatomy_section_shows_planted_shares(
    anatomy_built: tuple[Path, str],
) -> None:
    folder, page = anatomy_built

    anatomy = pd.read_csv(folder / "anatomy.csv")
    shares = pd.read_csv(folder / "phase_shares.csv")
    part = section(page, "Where a round goes")

    five = anatomy[anatomy["network"] == "5g"].set_index("phase")
    assert five.loc["pickup_wait", "share"] == pytest.approx(3.0 / 10.9)
    # shares of all node-round seconds add up to the round, waits included
    for _, network in shares.groupby("network"):
        assert network["share"].sum() == pytest.approx(1.0)
        assert network["segment_s"].sum() == pytest.approx(
            network["median_round_s"].iloc[0]
        )
    pickup = shares[(shares["network"] == "5g") & (shares["phase"] == "pickup_wait")]
    assert f"{float(pickup['share'].iloc[0]):.1%}" in section(page, "Study")
    for phase, definition in PHASE_DEFINITIONS.items():
        assert f"<dt>{phase}</dt><dd>{html.escape(definition)}</dd>" in part
    assert "first dispatch to its last reply&#x27;s pickup" in page
    # one definition of the slowest node: the busiest, as the stragglers say
    assert "slowest node (most often)" not in page


def test_timelines_show_round_2_per_network(anatomy_built: tuple[Path, str]) -> None:
    _, page = anatomy_built

    part = section(page, "Round timeline")

    for network in NETWORKS:
        assert f"{network}: run {network}-fedavg-r1, round 2." in part
    # one timeline shows, the others fold away
    folded = part[part.index("<details>") :]
    assert part.count("<figure") == 3 and folded.count("<figure") == 2


def test_clock_offsets_check_the_injected_offset(
    anatomy_built: tuple[Path, str],
) -> None:
    _, page = anatomy_built

    part = section(page, "Clock offsets")

    assert "3 measurements" in part
    assert "1 of 2 recovered their injected offset" in part
    failed = re.findall(r'<tr class="failed">(.*?)</tr>', part)
    assert len(failed) == 1 and "pi2" in failed[0]
    assert "300.200" in part and "0.200" in part  # offset and its error, in ms


def test_transfers_list_only_the_disagreeing(anatomy_built: tuple[Path, str]) -> None:
    _, page = anatomy_built

    part = section(page, "Transfers: wire vs SuperNode")

    assert "2 of 5 transfers disagree" in part
    body = part[part.index("<tbody>") :]
    assert body.count("<tr>") == 2
    assert "pi1" not in body
    assert "2.900" in body and "0.200" in body
    assert "45.0" in body and "45.000" not in body  # diff_pct: one decimal


def test_bytes_medians_per_network_and_message_type(
    anatomy_built: tuple[Path, str],
) -> None:
    _, page = anatomy_built

    part = section(page, "Bytes")

    assert part.index("ethernet") < part.index("wifi") < part.index("5g")
    assert part.count("4,120,000") == 3  # median wire bytes per network
    assert part.count("4,170,001") == 3  # median NIC bytes
    assert "0.030" in part  # median overhead


def test_system_section_draws_one_run_per_network(
    anatomy_built: tuple[Path, str],
) -> None:
    folder, page = anatomy_built

    part = section(page, "System")

    # plus one figure of the server's bytes over time on every network
    assert part.count("<img") == len(NETWORKS) + 1
    assert part.count('<figure id="bytes-over-time"') == 1
    assert "run 5g-fedavg-r1" in part
    png = folder / "figures" / "system_5g.png"
    assert has_colour(png, "#0072B2")  # pi1
    assert has_colour(png, "#000000")  # the server


def test_system_series_means_cores_and_keeps_the_busiest_nic(tmp_path: Path) -> None:
    system_table(tmp_path / "system.parquet")
    system = read_system(tmp_path / "system.parquet")

    cpu, nic, t0 = system_series(system, "5g-fedavg-r1")

    assert t0 == T0 + 100_000 * MS
    first = cpu[(cpu["host"] == "pi1") & (cpu["t_s"] == 0.0)]
    assert first["cpu_percent"].tolist() == [pytest.approx(30.0)]  # (20 + 40) / 2
    assert set(nic["device"]) == {"eth0"}
    rates = nic.groupby("host")["mbit_s"].median()
    assert rates["pi1"] == pytest.approx(32.0)  # 2 MB per 0.5 s
    assert rates["server"] == pytest.approx(16.0)
    assert nic["start_s"].min() == 0.0


def test_data_quality_lists_tiling_notes(anatomy_built: tuple[Path, str]) -> None:
    _, page = anatomy_built

    part = section(page, "Data quality")

    assert "The round anatomy tiled 6 of 6 node rounds." in part
    assert "reply_handoff of train is -0.000200 s" in part


def test_old_style_results_folder_still_renders(tmp_path: Path) -> None:
    old = pd.DataFrame.from_records(
        [*summary_phase_rows("5g"), *summary_phase_rows("ethernet")],
        columns=list(LEGACY_COLUMNS),
    ).astype({c: ANATOMY_DTYPES[c] for c in LEGACY_COLUMNS})
    old.to_parquet(tmp_path / "phases.parquet", engine="pyarrow", index=False)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest()))

    page = build_report(tmp_path).read_text()

    for title in NEW_SECTIONS:
        assert f"<h2>{title}</h2>" in page, title
    assert len(re.findall(r'src="data:image/png', page)) == 3 + study_figures(page)
    assert '<figure id="anatomy-figure"' not in page  # the bar of medians instead
    assert "this phase table has no round anatomy" in page.lower()
    assert "No transfers.csv in the results folder." in page
    assert "No bytes.csv in the results folder." in page
    assert "No system.parquet in the results folder." in page
    assert "The manifest records no clock offsets." in page
    medians = pd.read_csv(tmp_path / "median_phases.csv", index_col="network")
    assert medians.loc["5g", "uplink"] == pytest.approx(3.3)
    rounds = pd.read_csv(tmp_path / "round_time_table.csv", index_col="network")
    assert rounds.loc["5g", "median_round_s"] == pytest.approx(7.0)
    assert "Round time (rounds without the round anatomy)" in page


def test_broken_optional_inputs_become_notes(tmp_path: Path) -> None:
    folder = results_dir(tmp_path)
    (folder / "transfers.csv").write_text("node,round\npi1,1\n")
    (folder / "bytes.csv").write_text("network,foo\n5g,1\n")
    (folder / "system.parquet").write_bytes(b"not parquet")

    page = build_report(folder).read_text()

    assert "lacks columns [&#x27;message_type&#x27;" in section(
        page, "Transfers: wire vs SuperNode"
    )
    assert "bytes.csv has none of the columns" in section(page, "Bytes")
    assert "could not be read" in section(page, "System")


def test_malformed_clock_records_and_transfer_values_do_not_crash(
    tmp_path: Path,
) -> None:
    folder = results_dir(tmp_path)
    broken = {**manifest(), "clocks": [{"node": "pi1", "offset_ns": 5}, "junk", {}]}
    (folder / "manifest.json").write_text(json.dumps(broken))
    (folder / "transfers.csv").write_text(
        ",".join(TRANSFER_COLUMNS) + "\npi1,1,train,up,x,y,z,w,maybe,0,1\n"
    )

    page = build_report(folder).read_text()

    clocks_part = section(page, "Clock offsets")
    assert "2 measurements" in clocks_part
    assert "0.000" in clocks_part  # 5 ns
    assert "0 of 1 transfers disagree" in section(page, "Transfers: wire vs SuperNode")


def test_a_failing_optional_section_becomes_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = results_dir(tmp_path)

    def broken(*_: object) -> str:
        raise KeyError("metric")

    monkeypatch.setattr(report_module, "system_section", broken)

    page = build_report(folder).read_text()

    assert "System could not be shown: KeyError: &#x27;metric&#x27;." in page
    assert "<h2>Provenance</h2>" in page


def test_failures_are_listed_with_round_node_phase_and_cause(tmp_path: Path) -> None:
    from analysis.synthetic import SyntheticCampaign, write_synthetic_results

    out = write_synthetic_results(SyntheticCampaign(), tmp_path / "results")
    (out / "failures.csv").write_text(
        "run_id,round,node,phase,kind,cause,t_ns\n"
        "5g-r1,2,node3,,fault_injected,kill-supernode,1\n"
        "5g-r1,2,node3,train:training,no_reply,no reply within the round timeout "
        "of 30 s,2\n"
        "5g-r1,3,,configure_train,degraded,went on with 2 of 3 node(s),3\n"
    )

    html = build_report(out).read_text()

    section = html[html.index(">Failures<") :]
    section = section[: section.index("</section>")]
    assert "1 fault_injected, 1 no_reply, 1 degraded" in section
    assert (
        "train:training" in section and "no reply within the round timeout" in section
    )


def test_a_clean_campaign_says_it_had_no_failures(tmp_path: Path) -> None:
    from analysis.synthetic import SyntheticCampaign, write_synthetic_results

    out = write_synthetic_results(SyntheticCampaign(), tmp_path / "results")
    html = build_report(out).read_text()
    assert "No failures: every node answered every round." in html


def test_a_fedbuff_run_gets_its_asynchronous_timeline(tmp_path: Path) -> None:
    from analysis.synthetic import SyntheticCampaign, write_synthetic_results

    out = write_synthetic_results(SyntheticCampaign(), tmp_path / "results")
    run = out / "runs" / "ethernet-r1"
    run.mkdir(parents=True, exist_ok=True)
    lines = []
    for k, (node, version) in enumerate([(11, 0), (12, 0), (11, 1), (12, 1)]):
        lines.append(
            json.dumps(
                {
                    "event": "fedbuff_update",
                    "run_id": "ethernet-r1",
                    "t_ns": k,
                    "node_id": node,
                    "trained_on_version": version,
                    "staleness": k % 2,
                    "sent_ns": k * 10**9,
                    "arrival_ns": (k + 3) * 10**9,
                    "outcome": "applied",
                    "weight": 1.0,
                    "version_after": k // 2 + 1,
                    "server_step": k % 2 == 1,
                    "num_examples": 32,
                    "message_id": f"m{k}",
                    "reason": "",
                }  # fmt: skip
            )
        )
    (run / "events.jsonl").write_text("\n".join(lines) + "\n")

    html = build_report(out).read_text()

    section = html[html.index(">Asynchronous timeline<") :]
    section = section[: section.index("</section>")]
    assert "ethernet-r1" in section and "<img" in section
    assert (out / "figures" / "async-timeline-ethernet-r1.pdf").exists()


def test_round_time_csv_names_the_straggler_like_the_straggler_table(
    built: tuple[Path, str],
) -> None:
    folder, _ = built

    rounds = pd.read_csv(folder / "round_time_table.csv", index_col="network")
    stragglers = pd.read_csv(folder / "stragglers.csv")
    assert not stragglers.empty

    # one definition of the slowest node: the most frequent straggler per network
    for network, group in stragglers.groupby("network"):
        counts = group["straggler"].value_counts()
        top = sorted(counts[counts == counts.max()].index)[0]
        assert rounds.loc[network, "most_often_slowest"] == top


def test_the_setup_names_each_nodes_cpu_share_or_that_there_was_none() -> None:
    from analysis.report_setup import emulation_section

    detail = "cgroup v1 CPU quota per node: client1 0.5 core (default share)"
    shared = {**manifest(), "emulation": {**manifest()["emulation"]}}
    shared["emulation"]["cpu"] = {"requested": True, "active": True, "detail": detail}
    assert f"Each node&#x27;s CPU: {detail}." in emulation_section(shared)
    shared["emulation"]["cpu"] = {"active": False, "detail": "no CPU controller"}
    assert "A CPU share per node was not emulated: no CPU controller" in (
        emulation_notices(shared)
    )
