"""The campaign's launch key: validation, the levers it turns on, and where they go
(SuperNode environment on every transport, run config, manifest, status)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from instrumentation.reply_backoff import REPLY_BACKOFF_KEY
from instrumentation.wake import REPLY_PULL_KEY, WAKE_KEY
from inventory.models import Host
from testbed.campaign.launch import Launch, LaunchError, parse_launch
from testbed.campaign.model import CampaignError, load_campaign
from testbed.campaign.sites import NodeSite, ssh_site
from testbed.campaign.status import CampaignStatus, describe
from testbed.commands import flower
from testbed.transport.executor import LocalExecutor

REPO = Path(__file__).resolve().parents[3]
DEFAULT = ("superexec-poll-0.2s", "reply-pull-0.3s", "wake-message", "warm-launcher")


@pytest.mark.parametrize(
    ("mode", "levers", "expected"),
    [
        (None, None, Launch()),
        ("stock", None, Launch()),
        (
            "low-latency",
            None,
            Launch("low-latency", 0.2, 0.3, wake_message=True, warm_launcher=True),
        ),
        (
            "low-latency",
            ["superexec-poll", "reply-pull", "wake-message"],
            Launch("low-latency", 0.2, 0.3, wake_message=True),
        ),
        ("low-latency", ["reply-pull"], Launch("low-latency", reply_pull_s=0.3)),
        ("low-latency", ["reply-pull=0.1"], Launch("low-latency", reply_pull_s=0.1)),
        (
            "low-latency",
            ["superexec-poll=0.2"],
            Launch("low-latency", superexec_poll_s=0.2),
        ),
        ("low-latency", ["wake-message"], Launch("low-latency", wake_message=True)),
        ("low-latency", ["reply-backoff"], Launch("low-latency", reply_backoff=True)),
        (
            "low-latency",
            ["superexec-poll", "reply-pull", "reply-backoff"],
            Launch("low-latency", 0.2, 0.3, reply_backoff=True),
        ),
        ("low-latency", [], Launch("low-latency")),
        ("low-latency", ["warm-launcher"], Launch("low-latency", warm_launcher=True)),
        (
            "low-latency",
            ["supernode-poll"],
            Launch("low-latency", supernode_poll_s=0.2),
        ),
        (
            "low-latency",
            ["supernode-poll=0.5"],
            Launch("low-latency", supernode_poll_s=0.5),
        ),
    ],
)
def test_parse_launch(mode: Any, levers: Any, expected: Launch) -> None:
    assert parse_launch(mode, levers) == expected


@pytest.mark.parametrize(
    ("mode", "levers", "fragment"),
    [
        ("fast", None, "must be one of stock, low-latency"),
        ("stock", ["reply-pull"], "needs 'launch: low-latency'"),
        ("low-latency", "reply-pull", "must be a list"),
        ("low-latency", ["reply-pul"], "unknown lever 'reply-pul'"),
        ("low-latency", ["warm-launcher=1"], "takes no value"),
        ("low-latency", ["reply-pull=fast"], "is not seconds"),
        ("low-latency", ["reply-pull=0"], "outside 0.01-60 s"),
        ("low-latency", ["superexec-poll=100"], "outside 0.01-60 s"),
        ("low-latency", ["wake-message=1"], "takes no value"),
        ("low-latency", ["reply-backoff=0.05"], "'reply-backoff' takes no value"),
        ("low-latency", ["reply-backoff", "reply-backoff"], "twice"),
        ("stock", ["reply-backoff"], "needs 'launch: low-latency'"),
        ("low-latency", ["reply-pull", "reply-pull=0.2"], "twice"),
        ("low-latency", [3], "a lever is a string"),
        ("low-latency", ["supernode-poll=5"], "outside 0.01-3 s"),
    ],
)
def test_bad_launch_is_refused(mode: Any, levers: Any, fragment: str) -> None:
    with pytest.raises(LaunchError, match=fragment):
        parse_launch(mode, levers)


def test_levers_name_their_settings_for_the_manifest() -> None:
    launch = parse_launch("low-latency")
    assert launch.levers == DEFAULT
    assert launch.manifest() == {"mode": "low-latency", "levers": list(DEFAULT)}
    assert Launch().manifest() == {"mode": "stock", "levers": []}
    off = {REPLY_BACKOFF_KEY: False}
    assert launch.run_config() == {REPLY_PULL_KEY: 0.3, WAKE_KEY: True, **off}
    woken = parse_launch("low-latency", ["wake-message", "reply-pull=0.1"])
    assert woken.levers == ("reply-pull-0.1s", "wake-message")
    assert woken.run_config() == {REPLY_PULL_KEY: 0.1, WAKE_KEY: True, **off}
    assert Launch().run_config() == {REPLY_PULL_KEY: 0.0, WAKE_KEY: False, **off}
    backoff = parse_launch("low-latency", ["reply-pull", "reply-backoff"])
    assert backoff.levers == ("reply-pull-0.3s", "reply-backoff-0.05-0.5s")
    assert backoff.run_config()[REPLY_BACKOFF_KEY] is True
    polled = parse_launch("low-latency", ["supernode-poll=0.1"])
    assert polled.levers == ("supernode-poll-0.1s",)


BASE = "name: x\nnetworks: [wifi]\n"


def test_campaign_default_is_stock() -> None:
    campaign = load_campaign(REPO / "campaigns" / "demo.yaml")
    assert campaign.launch == Launch()


def test_campaign_reads_launch_and_levers(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(BASE + "launch: low-latency\nlaunch_levers: [reply-pull=0.5]\n")
    assert load_campaign(path).launch == Launch("low-latency", reply_pull_s=0.5)


def test_campaign_reads_the_reply_backoff_lever(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(BASE + "launch: low-latency\nlaunch_levers: [reply-backoff]\n")
    launch = load_campaign(path).launch
    assert launch == Launch("low-latency", reply_backoff=True)
    assert launch.manifest() == {
        "mode": "low-latency",
        "levers": ["reply-backoff-0.05-0.5s"],
    }


@pytest.mark.parametrize(
    ("extra", "key", "fragment"),
    [
        ("launch: turbo\n", "launch", "must be one of stock, low-latency"),
        ("launch_levers: [wake-message]\n", "launch_levers", "needs 'launch: low"),
        ("launch: low-latency\nlaunch_levers: [nap]\n", "launch_levers", "unknown"),
        (
            "launch: low-latency\nlaunch_levers: [reply-backoff=1]\n",
            "launch_levers",
            "takes no value",
        ),
        (
            "launch: low-latency\nruntime: simulation\n",
            "launch",
            "applies to deployment runs",
        ),
        ("launch: low-latency\ninstrument: false\n", "launch", "instrument: true"),
    ],
)
def test_campaign_launch_errors_name_the_key_and_fix(
    tmp_path: Path, extra: str, key: str, fragment: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(BASE + extra)
    with pytest.raises(CampaignError, match=fragment) as caught:
        load_campaign(path)
    assert caught.value.key == key
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("poll_s", "expected"),
    [
        (None, {}),
        (0.05, {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.05"}),
        (1.0, {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "1"}),
    ],
)
def test_launch_env(poll_s: float | None, expected: dict[str, str]) -> None:
    assert flower.launch_env(poll_s) == expected


def test_launch_env_refuses_what_flower_refuses() -> None:
    with pytest.raises(ValueError, match="0.01-60 s"):
        flower.launch_env(0.001)


@pytest.mark.parametrize("transport", ["netns", "ssh"])
def test_supernode_env_carries_the_launch_on_every_transport(transport: str) -> None:
    host = Host(name="node1", ansible_host="10.0.0.11")
    if transport == "ssh":
        site = ssh_site(host, LocalExecutor(), "/home/pi")
    else:
        site = NodeSite(host, "netns", LocalExecutor(), bin_dir="/v/bin")
    launch = flower.launch_env(
        parse_launch("low-latency", ["superexec-poll=0.05"]).superexec_poll_s
    )

    env = site.env("/run/flwr", launch)
    stock = site.env("/run/flwr")

    assert env["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] == "0.05"
    assert "FLWR_SUPEREXEC_TASK_POLL_INTERVAL" not in stock
    del env["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"]
    assert env == stock  # nothing else differs from stock


def test_status_names_the_launch() -> None:
    status = CampaignStatus(
        campaign="c",
        total_runs=1,
        rounds_per_run=2,
        started_ns=0,
        pid=1,
        state="finished",
        launch="low-latency",
        levers=("reply-pull-0.3s",),
    )
    text = describe(json.loads(json.dumps(status.to_json())), now_ns=10**9)
    assert "launch: low-latency (reply-pull-0.3s)" in text
    older = {k: v for k, v in status.to_json().items() if k not in ("launch", "levers")}
    assert "launch: stock" in describe(older, now_ns=10**9)


def test_digits_clientapp_module_imports_no_torch() -> None:
    code = (
        "import sys; import flowerbed_digits.client_app; "
        "print(sorted(m for m in ('torch', 'workloads', 'strategies.client_side') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": f"{REPO}:{REPO / 'apps' / 'digits'}"},
        timeout=120,
    )
    assert result.stdout.strip() == "[]"


def test_the_warm_launcher_is_listed_as_a_lever() -> None:
    launch = parse_launch("low-latency", ["reply-pull", "warm-launcher"])
    assert launch.warm_launcher
    assert launch.levers == ("reply-pull-0.3s", "warm-launcher")
    assert not parse_launch("low-latency", ["reply-pull"]).warm_launcher
