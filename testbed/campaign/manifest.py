"""The run manifest: what ran, on what, with which versions and emulation features."""

from __future__ import annotations

import platform
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from inventory.models import Inventory
from testbed.campaign.model import REPO_ROOT, Campaign
from testbed.lab.calibrate import last_calibration

_PACKAGES = (
    "flowerbed",
    "flwr",
    "torch",
    "numpy",
    "pandas",
    "scapy",
    "matplotlib",
    "paramiko",
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape a measurement."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(repo: Path = REPO_ROOT) -> str:
    """The checkout's commit (``-dirty`` if changed, ``unknown`` outside git)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


_SECRET_WORDS = ("pass", "secret", "token", "private_key", "key_file")


def redact_secrets(value: Any) -> Any:
    """Replace the value of every key naming a secret (``ansible_password``...)."""
    if isinstance(value, Mapping):
        return {
            k: "***"
            if any(w in str(k).lower() for w in _SECRET_WORDS)
            else redact_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_secrets(v) for v in value]
    return value


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def link_profiles(
    inventory: Inventory, networks: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The link profile of every network the campaign used; a trace is summed up
    (file, format, period, mean/min/max, SHA-256), not listed step by step."""
    profiles = {}
    for name in networks:
        profile = inventory.network(name).profile
        described = asdict(profile)
        for key in ("downlink_trace", "uplink_trace"):
            trace = getattr(profile, key)
            described[key] = None if trace is None else trace.summary()
        profiles[name] = described
    return profiles


def node_records(inventory: Inventory) -> list[dict[str, Any]]:
    """Each client's board and limits as the inventory gives them: its
    ``device_class`` (None: none given), ``cpu_quota`` (cores) and ``memory_mb``
    with where the quota came from. A real lab applies no limits; the records
    let a report group nodes by class either way."""
    return [
        {
            "name": h.name,
            "device_class": h.device_class,
            "cpu_quota": h.cpu_quota,
            "memory_mb": h.memory_mb,
            "cpu_quota_source": h.cpu_quota_source,
        }
        for h in inventory.clients
    ]


def build_manifest(
    campaign: Campaign,
    inventory: Inventory,
    outcomes: Iterable[Any],
    features: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Everything needed to know what a results folder holds and to repeat it."""
    return {
        "written_at_ns": time.time_ns(),
        "campaign": {
            "name": campaign.name,
            "path": str(campaign.path),
            "as_used": redact_secrets(dict(campaign.raw)),
            "strategy": campaign.strategy.name,
            "rounds": campaign.rounds,
            "repetitions": campaign.repetitions,
            "networks": list(campaign.networks),
            "workload": campaign.workload_dict,
            "app": str(campaign.app),
            "capture": campaign.capture,
        },
        "inventory": {
            "name": inventory.name,
            "path": str(inventory.path),
            "as_used": redact_secrets(_read_yaml(inventory.path)),
            "server": inventory.server.name,
            "clients": [h.name for h in inventory.clients],
            "nodes": node_records(inventory),
            "superlink_port": inventory.superlink_port,
        },
        "launch": campaign.launch.manifest(),
        "link_profiles": link_profiles(inventory, campaign.networks),
        # `cluster calibrate`'s last result beside the inventory (None: never run)
        "calibration": last_calibration(inventory.path),
        "emulation": dict(features or {}),
        "runs": [asdict(o) for o in outcomes],
        "versions": package_versions(),
        "git_commit": git_commit(),
        "kernel": platform.release(),
        "host": platform.node(),
    }
