"""analysis/rollup.py gives analysis/summary.py's tables (the reference), faster."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from analysis import summary
from analysis.rollup import rollup
from analysis.synthetic import SyntheticCampaign, synthetic_phases
from tests.analysis.test_summary import anatomy_frame, anatomy_rows, phase_rows, table


def _legacy_with_gaps() -> pd.DataFrame:
    df = table(
        phase_rows("5g"),
        phase_rows("ethernet", repetition=2),
        phase_rows("wifi", aggregation=False),
    )
    lost = (df["network"] == "5g") & (df["round"] == 2) & (df["phase"] == "uplink")
    return df.drop(df.index[lost & (df["node"] == "pi2")][:1]).reset_index(drop=True)


def _tiled_with_unresolved() -> pd.DataFrame:
    df = anatomy_frame(anatomy_rows("5g"), anatomy_rows("wifi", repetition=2))
    hit = (df["network"] == "5g") & (df["round"] == 3) & (df["node"] == "pi1")
    hit &= df["phase"] == "client_startup"
    df.loc[df.index[hit][:1], "phase"] = "unresolved"
    return df


TABLES: dict[str, Callable[[], pd.DataFrame]] = {
    "synthetic": lambda: synthetic_phases(
        SyntheticCampaign(nodes=4, rounds=3, repetitions=2)
    ),
    "tiled": lambda: anatomy_frame(
        anatomy_rows("5g"), anatomy_rows("ethernet", repetition=2)
    ),
    "tiled with unresolved": _tiled_with_unresolved,
    "legacy with gaps": _legacy_with_gaps,
}
SORTED = ["run_id", "round", "node", "phase"]


def _same(mine: pd.DataFrame, ref: pd.DataFrame, sort: bool) -> None:
    if sort:
        keys = [k for k in SORTED if k in ref.columns]
        ref = ref.sort_values(keys).reset_index(drop=True)
        mine = mine.sort_values(keys).reset_index(drop=True)[list(ref.columns)]
    pd.testing.assert_frame_equal(
        mine.reset_index(drop=True) if sort else mine,
        ref.reset_index(drop=True) if sort else ref,
        check_dtype=False,
        check_index_type=False,
        check_column_type=False,
        rtol=1e-9,
    )


@pytest.mark.parametrize("name", list(TABLES))
@pytest.mark.parametrize(
    ("method", "reference", "sort"),
    [
        ("node_rounds", summary.node_rounds, True),
        ("node_samples", summary._node_phase_samples, True),
        ("phase_samples", summary._phase_samples, True),
        ("round_times", summary.round_times, False),
        ("round_time_table", summary.round_time_table, False),
        ("median_phase_table", summary.median_phase_table, False),
        ("phase_stats", summary.phase_stats, False),
        ("anatomy_table", summary.anatomy_table, False),
        ("study_ratios", summary.study_ratios, False),
    ],
)
def test_rollup_equals_summary(
    name: str,
    method: str,
    reference: Callable[[pd.DataFrame], pd.DataFrame],
    sort: bool,
) -> None:
    df = TABLES[name]()

    mine = getattr(rollup(df), method)()

    _same(mine, reference(df), sort)
