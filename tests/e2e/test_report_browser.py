"""report.html in a real browser (headless Chromium): images load, key parts exist.

The report is built from a synthetic results folder (analysis/synthetic.py writes
the files a campaign writes), so the test takes seconds. A copy of the page gets
a small probe script that, once the page has loaded, writes how many images it
has and how many failed to decode; Chromium's ``--dump-dom`` prints the DOM after
the probe ran.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.report import build_report
from analysis.synthetic import SyntheticCampaign, write_synthetic_results

PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(
    function (i) { return !(i.complete && i.naturalWidth > 0); });
  var ids = ["study-table", "straggler-table", "convergence-figure"].filter(
    function (id) { return document.getElementById(id) !== null; });
  var convergence = document.querySelector("#convergence-figure img");
  var out = document.createElement("pre");
  out.id = "fb-probe";
  out.textContent = JSON.stringify({
    images: images.length,
    broken: broken.length,
    ids: ids,
    convergence_width: convergence ? convergence.naturalWidth : 0,
    study_rows: document.querySelectorAll("#study-table tbody tr").length,
    straggler_rows: document.querySelectorAll("#straggler-table tbody tr").length
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
        [*base, "--virtual-time-budget=10000", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )


def probe(page: Path, tmp_path: Path) -> dict[str, object]:
    """Load a probed copy of ``page`` in Chromium and return the probe's findings."""
    probed = tmp_path / f"probed-{page.name}"
    probed.write_text(
        page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
        encoding="utf-8",
    )
    dom = _run(["--dump-dom", probed.as_uri()]).stdout
    found = _PROBE_OUT.search(dom)
    assert found, f"the probe did not run in Chromium; DOM starts {dom[:300]!r}"
    result: dict[str, object] = json.loads(found.group(1).replace("&quot;", '"'))
    return result


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("results")
    spec = SyntheticCampaign(nodes=3, rounds=3, repetitions=2, straggler="client2")
    write_synthetic_results(spec, results)
    return build_report(results)


def test_report_loads_every_image_and_shows_the_study(
    report: Path, tmp_path: Path
) -> None:
    found = probe(report, tmp_path)

    assert isinstance(found["images"], int) and found["images"] >= 10
    assert found["broken"] == 0
    assert found["ids"] == ["study-table", "straggler-table", "convergence-figure"]
    assert isinstance(found["convergence_width"], int)
    assert found["convergence_width"] > 300
    # 3 networks x (10 phases + round time + uplink share); one summary row each
    assert found["study_rows"] == 36
    assert found["straggler_rows"] == 3


def test_probe_sees_a_broken_image(report: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    text = report.read_text(encoding="utf-8")
    broken.write_text(
        text.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1),
        encoding="utf-8",
    )

    found = probe(broken, tmp_path)

    assert found["broken"] == 1


def test_screenshot_of_the_report(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"

    _run(["--window-size=1280,4000", f"--screenshot={shot}", report.as_uri()])

    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000  # a page of tables and figures, not a blank one
