"""report.html in a real browser (headless Chromium, 1400 px wide): layout and images.

The reports are built from synthetic results folders (analysis/synthetic.py writes
the files a campaign writes), so the test takes seconds. A copy of the page gets
a small probe script that, once the page has loaded, writes what it measured (the
page's height and width, the sections' order, how many images failed to decode);
Chromium's ``--dump-dom`` prints the DOM after the probe ran.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analysis.report import build_report
from analysis.synthetic import SyntheticCampaign, write_synthetic_results

WIDTH = 1400
# The bound for the demo's report at 1400 px.
MAX_HEIGHT = 8000
PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(
    function (i) { return !(i.complete && i.naturalWidth > 0); });
  var shrunk = images.filter(function (i) {
    return i.offsetParent !== null && i.naturalWidth > 0 &&
      i.getBoundingClientRect().width < i.naturalWidth - 1; });
  var ids = ["study-table", "straggler-table", "convergence-figure"].filter(
    function (id) { return document.getElementById(id) !== null; });
  var convergence = document.querySelector("#convergence-figure img");
  var page = document.documentElement;
  var out = document.createElement("pre");
  out.id = "fb-probe";
  out.textContent = JSON.stringify({
    images: images.length,
    broken: broken.length,
    shrunk: shrunk.map(function (i) { return i.alt.slice(0, 40); }),
    ids: ids,
    sections: Array.prototype.map.call(
      document.querySelectorAll("h2"), function (h) { return h.textContent; }),
    convergence_width: convergence ? convergence.naturalWidth : 0,
    study_rows: document.querySelectorAll("#study-table tbody tr").length,
    straggler_rows: document.querySelectorAll("#straggler-table tbody tr").length,
    findings: document.querySelectorAll("#findings li").length,
    height: page.scrollHeight,
    width: page.scrollWidth,
    inner_width: window.innerWidth
  });
  document.body.appendChild(out);
});
</script>"""
_PROBE_OUT = re.compile(r'<pre id="fb-probe">([^<]*)</pre>')


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "headless Chromium not found: install Debian's package "
            "(`apt-get install -y chromium`); the Makefile's APT_PACKAGES lists it"
        )
    return path


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu"]
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        [*base, "--hide-scrollbars", "--virtual-time-budget=10000", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )


def probe(page: Path, tmp_path: Path) -> dict[str, Any]:
    """Load a probed copy of ``page`` at 1400 px and return the probe's findings."""
    probed = tmp_path / f"probed-{page.name}"
    probed.write_text(
        page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
        encoding="utf-8",
    )
    dom = _run([f"--window-size={WIDTH},1000", "--dump-dom", probed.as_uri()]).stdout
    found = _PROBE_OUT.search(dom)
    assert found, f"the probe did not run in Chromium; DOM starts {dom[:300]!r}"
    result: dict[str, Any] = json.loads(found.group(1).replace("&quot;", '"'))
    return result


def _demo_extras(results: Path) -> None:
    """What a real demo folder has besides: transfers, bytes and 36 clock rows."""
    transfers = pd.DataFrame(
        {
            "run_id": "5g-r1",
            "network": "5g",
            "node": [f"client{i % 3 + 1}" for i in range(12)],
            "round": [i // 6 + 1 for i in range(12)],
            "message_type": ["train", "evaluate"] * 6,
            "direction": ["up", "up", "down", "down"] * 3,
            "wire_s": 1.0,
            "log_s": 1.5,
            "diff_s": 0.5,
            "diff_pct": 50.0,
            "disagrees": True,
            "retransmissions": 0,
            "goodput_mbit": 30.0,
        }
    )
    transfers.to_csv(results / "transfers.csv", index=False)
    bytes_rows = [
        {
            "network": network,
            "message_type": kind,
            "direction": direction,
            "flower_bytes": 3_980_000,
            "wire_bytes": 4_000_000,
            "nic_bytes": 4_100_000,
            "overhead": 0.03,
        }
        for network in ("ethernet", "wifi", "5g")
        for kind in ("train", "evaluate")
        for direction in ("down", "up")
    ]
    pd.DataFrame(bytes_rows).to_csv(results / "bytes.csv", index=False)
    manifest = json.loads((results / "manifest.json").read_text())
    manifest["clocks"] = [
        {
            "run_id": f"{network}-r1",
            "node": f"client{node}",
            "path": path,
            "when": when,
            "offset_ns": 0,
            "uncertainty_ns": 0,
            "injected_offset_ns": None,
        }
        for network in ("ethernet", "wifi", "5g")
        for node in (1, 2, 3)
        for path in ("lan", "ssh")
        for when in ("start", "end")
    ]
    (results / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report shaped like `make demo`'s: 3 networks, 3 nodes, 2 rounds, 1 run."""
    results = tmp_path_factory.mktemp("demo")
    spec = SyntheticCampaign(nodes=3, rounds=2, repetitions=1, straggler="client2")
    write_synthetic_results(spec, results)
    _demo_extras(results)
    return build_report(results)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("results")
    spec = SyntheticCampaign(nodes=3, rounds=3, repetitions=2, straggler="client2")
    write_synthetic_results(spec, results)
    return build_report(results)


def test_the_demo_report_leads_with_findings_and_fits(
    demo: Path, tmp_path: Path
) -> None:
    found = probe(demo, tmp_path)

    assert found["sections"][0] == "Findings"
    assert found["sections"][1:3] == ["Where a round goes", "Round timeline"]
    assert 3 <= found["findings"] <= 6
    assert found["height"] < MAX_HEIGHT
    assert found["width"] <= found["inner_width"] == WIDTH  # no sideways scroll
    assert found["broken"] == 0
    assert found["shrunk"] == []  # every shown figure at its native size


def test_the_demo_report_loses_no_data(demo: Path) -> None:
    folder = demo.parent

    csvs = {p.stem for p in folder.glob("*.csv")}

    assert {
        "anatomy",
        "convergence",
        "learning",
        "median_phases",
        "phase_shares",
        "phase_stats",
        "ratios",
        "round_time_table",
        "round_times",
        "straggler_summary",
        "stragglers",
        "study",
        "study_ratios",
        "time_to_target",
    } <= csvs
    pngs = {p.stem for p in (folder / "figures").glob("*.png")}
    pdfs = {p.stem for p in (folder / "figures").glob("*.pdf")}
    assert pngs == pdfs
    for name in ("phase_bar", "anatomy_bar", "downlink_ecdf", "uplink_ecdf"):
        assert name in pngs
    assert {f"timeline_{n}" for n in ("ethernet", "wifi", "5g")} <= pngs
    assert (folder / "summary.md").read_text().startswith("# flowerbed report")


def test_report_loads_every_image_and_shows_the_study(
    report: Path, tmp_path: Path
) -> None:
    found = probe(report, tmp_path)

    assert found["images"] >= 10
    assert found["broken"] == 0
    assert found["ids"] == ["study-table", "straggler-table", "convergence-figure"]
    assert found["convergence_width"] > 300
    # 3 networks x (10 phases + round time + uplink share); one summary row each
    assert found["study_rows"] == 36
    assert found["straggler_rows"] == 3
    assert found["width"] <= found["inner_width"]


def test_probe_sees_a_broken_image(report: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    text = report.read_text(encoding="utf-8")
    broken.write_text(
        text.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1),
        encoding="utf-8",
    )

    found = probe(broken, tmp_path)

    assert found["broken"] == 1


def test_probe_sees_a_page_that_scrolls_sideways(report: Path, tmp_path: Path) -> None:
    wide = tmp_path / "wide.html"
    text = report.read_text(encoding="utf-8")
    wide.write_text(
        text.replace("</body>", '<div style="width:2000px">x</div></body>'),
        encoding="utf-8",
    )

    found = probe(wide, tmp_path)

    assert found["width"] > found["inner_width"]


def test_screenshot_of_the_report(demo: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"

    _run([f"--window-size={WIDTH},{MAX_HEIGHT}", f"--screenshot={shot}", demo.as_uri()])

    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000  # a page of tables and figures, not a blank one
