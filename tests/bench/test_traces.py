"""bench/traces.py's pure parts: the trace's 1 s means it compares iperf3 with."""

from __future__ import annotations

import pytest

from bench import traces
from inventory.traces import parse_csv
from testbed.emulation.replay import ReplayLink


def test_expected_bins_are_the_traces_means_per_second_from_the_offset() -> None:
    trace = parse_csv("0,10\n0.5,20\n", "t")  # 1-s loop, mean 15

    assert traces.expected_bins(trace, 0.0, 3, 1) == pytest.approx([15, 15])
    slow = parse_csv("0,10\n1,30\n", "t")  # 2-s loop
    assert traces.expected_bins(slow, 0.5, 3, 0) == pytest.approx([20, 20, 20])
    assert traces.expected_bins(slow, 0.0, 3, 0) == pytest.approx([10, 30, 10])


def test_a_fit_aligns_bins_by_launch_replay_start_and_phase() -> None:
    trace = parse_csv("0,10\n1,30\n2,5\n", "t")  # 3-s loop
    link = ReplayLink("n", "5g", "uplink", "ns", "wwan0", trace, phase_s=1.0)
    # launched 1 s after the replay began: bin i covers trace second (2 + i) % 3
    bins = [99.0, 10.0, 30.0, 5.0, 10.0]

    fit = traces.fit("5g", link, started=100.0, launched=101.0, bins=bins)

    assert fit.expected == pytest.approx([10, 30, 5, 10])  # first bin left out
    assert fit.correlation == pytest.approx(1.0) and fit.mean_ratio == 1.0
    shifted = traces.fit("5g", link, started=100.0, launched=102.0, bins=bins)
    assert shifted.correlation < 0.5
