"""Tests of bench/launch.py: the plan, the campaign copies and the tables it prints."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis.floor import floor_table
from analysis.synthetic import (
    SyntheticCampaign,
    synthetic_phases,
    write_synthetic_results,
)
from bench.launch import (
    MODES,
    campaign_copy,
    main,
    markdown,
    mode_table,
    plan_runs,
    read_folder,
)

NETWORKS = {"ethernet": 0.1, "5g": 3.0}


def _spec(mode: str, seed: int) -> SyntheticCampaign:
    return SyntheticCampaign(
        uplink_s=NETWORKS,
        downlink_s={"ethernet": 0.08, "5g": 0.6},
        nodes=2,
        rounds=3,
        repetitions=1,
        straggler=None,
        seed=seed,
        launch=mode,
        launch_levers=("reply-pull-0.3s",) if mode == "low-latency" else (),
        flower_factor=1.0 if mode == "stock" else 0.1,
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two pairs of synthetic results folders, as the benchmark leaves them."""
    out = tmp_path_factory.mktemp("bench")
    paths = []
    for run in plan_runs(2, out):
        paths.append(write_synthetic_results(_spec(run.mode, run.pair), run.out))
    return paths


def test_runs_alternate_the_modes_each_into_its_own_folder(tmp_path: Path) -> None:
    runs = plan_runs(3, tmp_path)

    assert [r.mode for r in runs] == list(MODES) * 3
    assert [r.pair for r in runs] == [1, 1, 2, 2, 3, 3]
    assert len({r.out for r in runs}) == 6
    argv = runs[1].argv(Path("inv.yaml"))
    assert argv[:5] == [sys.executable, "-m", "testbed.cli", "campaign", "run"]
    assert argv[5:] == [
        str(tmp_path / "campaigns" / "low-latency.yaml"),
        "--inventory",
        "inv.yaml",
        "--out",
        str(tmp_path / "pair1-low-latency"),
        "--overwrite",
    ]
    with pytest.raises(ValueError, match="at least 1"):
        plan_runs(0, tmp_path)


def test_the_campaign_copy_sets_launch_and_overrides_and_keeps_the_app(
    tmp_path: Path,
) -> None:
    source = tmp_path / "src" / "c.yaml"
    source.parent.mkdir()
    source.write_text("name: c\nnetworks: [ethernet, wifi]\nrounds: 5\napp: ./myapp\n")

    copy = campaign_copy(
        source, "low-latency", tmp_path / "out" / "c.yaml", ["5g"], rounds=2
    )

    raw = yaml.safe_load(copy.read_text())
    assert raw == {
        "name": "c",
        "networks": ["5g"],
        "rounds": 2,
        "app": str((tmp_path / "src" / "myapp").resolve()),
        "launch": "low-latency",
    }
    untouched = yaml.safe_load(
        campaign_copy(source, "stock", tmp_path / "s.yaml").read_text()
    )
    assert untouched["networks"] == ["ethernet", "wifi"] and untouched["rounds"] == 5


def test_levers_go_to_the_low_latency_copy_only(tmp_path: Path) -> None:
    source = tmp_path / "c.yaml"
    source.write_text("name: c\nlaunch: low-latency\nlaunch_levers: [wake-message]\n")

    stock = yaml.safe_load(
        campaign_copy(source, "stock", tmp_path / "s.yaml").read_text()
    )
    kept = yaml.safe_load(
        campaign_copy(source, "low-latency", tmp_path / "k.yaml").read_text()
    )
    chosen = yaml.safe_load(
        campaign_copy(
            source, "low-latency", tmp_path / "l.yaml", levers=["reply-pull=0.3"]
        ).read_text()
    )

    assert stock == {"name": "c", "launch": "stock"}
    assert kept["launch_levers"] == ["wake-message"]
    assert chosen["launch_levers"] == ["reply-pull=0.3"]


def test_read_folder_keeps_the_runs_of_two_folders_apart(folders: list[Path]) -> None:
    first, second = read_folder(folders[0]), read_folder(folders[2])

    assert first.launch.mode == second.launch.mode == "stock"
    assert read_folder(folders[1]).launch.levers == ("reply-pull-0.3s",)
    assert not set(first.phases["run_id"]) & set(second.phases["run_id"])
    assert set(first.metrics["run_id"]) == set(first.phases["run_id"])


def test_mode_table_pools_each_mode_and_compares_with_stock(
    folders: list[Path],
) -> None:
    stock = pd.concat(
        [
            synthetic_phases(_spec("stock", 1)).assign(
                run_id=lambda d: "a/" + d.run_id
            ),
            synthetic_phases(_spec("stock", 2)).assign(
                run_id=lambda d: "b/" + d.run_id
            ),
        ],
        ignore_index=True,
    )
    expected = floor_table(stock).set_index("network")

    table = mode_table([read_folder(p) for p in folders])

    assert list(zip(table["network"], table["mode"], strict=True)) == [
        ("ethernet", "stock"),
        ("ethernet", "low-latency"),
        ("5g", "stock"),
        ("5g", "low-latency"),
    ]
    rows = {(r["network"], r["mode"]): r for r in table.to_dict("records")}
    for network in NETWORKS:
        s, low = rows[(network, "stock")], rows[(network, "low-latency")]
        assert s["runs"] == 2 and s["rounds"] == 6  # both pairs pooled
        assert s["median_round_s"] == pytest.approx(
            expected.loc[network, "median_round_s"]
        )
        assert s["low_latency_over_stock"] == pytest.approx(1.0)
        assert low["low_latency_over_stock"] == pytest.approx(
            low["median_round_s"] / s["median_round_s"]
        )
        assert low["low_latency_over_stock"] < 0.5  # a tenth of the waits planted
        # the levers change Flower's waits, not the links or the compute
        assert low["median_floor_s"] == pytest.approx(s["median_floor_s"], rel=0.1)
        assert low["flower_share"] < s["flower_share"]
        # 2 exchanges (train, evaluate) per node round
        assert low["goal_s"] == pytest.approx(1.3 * low["median_floor_s"] + 1.0)
        assert 0.4 < s["final_accuracy"] <= s["final_accuracy_max"] <= 1.0
    uplink = {key: r["uplink_5g_over_ethernet"] for key, r in rows.items()}
    assert uplink[("ethernet", "stock")] == uplink[("5g", "stock")]
    assert uplink[("5g", "low-latency")] == pytest.approx(30.0, rel=0.2)


def test_markdown_prints_a_row_per_network_and_mode_and_the_uplink_ratios(
    folders: list[Path],
) -> None:
    table = mode_table([read_folder(p) for p in folders])

    text = markdown(table)

    lines = text.splitlines()
    assert lines[0].startswith("| network | mode | runs | rounds | round (s)")
    assert sum(line.startswith("| ethernet |") for line in lines) == 2
    assert "- 5g / ethernet uplink (stock): " in text
    assert "- 5g / ethernet uplink (low-latency): " in text


def test_plan_prints_the_runs_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--plan", "--pairs", "1", "--out", str(tmp_path), "--rounds", "3"])

    out = capsys.readouterr().out
    assert code == 0
    assert "pair 1, stock:" in out and "pair 1, low-latency:" in out
    assert "rounds: 3" in out
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing run


def test_analyse_reads_the_folders_an_earlier_run_left(
    folders: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = folders[0].parent

    code = main(["--analyse", "--out", str(out)])

    printed = capsys.readouterr().out
    assert code == 0
    assert "| 5g | low-latency |" in printed
    assert "2 pair(s), 0 failed run(s)" in printed


def test_link_busy_uplink_ratio_reads_model_uploads_only() -> None:
    import pandas as pd

    from bench.launch import _busy_uplink_ratio

    rows = [
        ("5g", "up", 4_000_000, 8.0),
        ("5g", "up", 4_000_000, 9.0),
        ("ethernet", "up", 4_000_000, 0.1),
        ("ethernet", "up", 500, 5.0),  # an evaluate reply: left out
        ("5g", "down", 4_000_000, 4.0),
    ]
    transfers = pd.DataFrame(
        rows, columns=["network", "direction", "wire_bytes", "busy_s"]
    )
    assert _busy_uplink_ratio(transfers) == pytest.approx(85.0)
    assert pd.isna(_busy_uplink_ratio(transfers[transfers.network == "5g"]))
    assert pd.isna(_busy_uplink_ratio(pd.DataFrame()))
