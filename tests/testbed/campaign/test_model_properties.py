"""Property tests: any campaign input gives a valid campaign or a clear error."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed.campaign.model import Campaign, CampaignError, load_campaign
from tests.yaml_values import yaml_values

DEMO = Path(__file__).resolve().parents[3] / "campaigns" / "demo.yaml"
BASE: dict[str, Any] = yaml.safe_load(DEMO.read_text())
BASE["faults"] = [{"kind": "kill-supernode", "node": "client1", "round": 2}]
BASE["clock_offsets_ms"] = {"client1": 300}

values = yaml_values(["fedavg", "ethernet", "kill-supernode", "client1"])
KEYS = [
    *((k,) for k in BASE),
    ("workload", "batch-size"),
    ("faults", 0, "kind"),
    ("faults", 0, "round"),
    ("clock_offsets_ms", "client1"),
]


def _write(folder: Path, document: object) -> Path:
    path = folder / "campaign.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _check(path: Path) -> None:
    try:
        campaign = load_campaign(path)
    except CampaignError as err:
        assert str(path) in str(err) and "Fix:" in str(err)
    else:
        assert isinstance(campaign, Campaign) and campaign.networks


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(key=st.sampled_from(KEYS), value=values)
def test_any_one_value_changed_gives_a_campaign_or_a_clear_error(
    tmp_path: Path, key: tuple[Any, ...], value: Any
) -> None:
    document = copy.deepcopy(BASE)
    target = document
    for part in key[:-1]:
        target = target[part]
    target[key[-1]] = value
    _check(_write(tmp_path, document))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=st.text(max_size=200))
def test_any_file_text_gives_a_campaign_or_a_clear_error(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "campaign.yaml"
    path.write_text(text)
    _check(path)
