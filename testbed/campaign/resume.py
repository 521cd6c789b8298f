"""What lets a campaign survive interruptions: refusing or resuming a results folder,
stopping what an interrupted run left behind, disk space.

``campaign run --resume`` keeps the runs that finished (ok, failed or timeout)
exactly as they are, stops leftover processes, moves an unfinished run's folder to
``interrupted/`` and runs it again. The runner writes result files through
:mod:`testbed.transport.files` (fsynced temporaries renamed into place), so a
crash leaves the previous version.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from testbed.campaign.leftovers import stop_local, stop_remote
from testbed.campaign.model import Campaign
from testbed.campaign.status import STATUS_FILE, process_alive
from testbed.campaign.topology import Topology
from testbed.transport.executor import CommandError

Progress = Callable[[str], None]


class CampaignStopped(RuntimeError):
    """The campaign cannot start or go on; says why and what to do."""


FINISHED_STATUSES = ("ok", "failed", "timeout")


def write_csv(table: pd.DataFrame, path: Path) -> None:
    table.to_csv(path, index=False)


def previous_runs(
    out: Path, campaign: Campaign, resume: bool, overwrite: bool
) -> dict[str, dict[str, Any]]:
    """The finished runs (manifest entries) of the campaign already in ``out``,
    when resuming; raise CampaignStopped when ``out`` may not be used."""
    manifest_path = out / "manifest.json"
    if not manifest_path.exists():
        return {}
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as err:
        raise CampaignStopped(
            f"{manifest_path} is not valid JSON ({err}); move the folder away and "
            "start again"
        ) from None
    previous = manifest.get("campaign", {})
    name = previous.get("name") if isinstance(previous, dict) else None
    if not resume:
        if overwrite or not manifest.get("runs"):
            return {}
        raise CampaignStopped(
            f"{out} already holds results of campaign {name or '?'}; continue it "
            "with --resume, or choose another --out (or --overwrite)"
        )
    if name not in (None, campaign.name):
        raise CampaignStopped(
            f"{out} holds campaign {name!r}, not {campaign.name!r}: resume with the "
            "campaign file that started it"
        )
    status = out / STATUS_FILE
    if status.exists():
        data = json.loads(status.read_text())
        if data.get("state") == "running" and process_alive(int(data.get("pid", 0))):
            raise CampaignStopped(
                f"campaign {campaign.name} is still running in {out} "
                f"(pid {data['pid']}); stop it first or follow it with "
                f"`flowerbed campaign status {out}`"
            )
    return {
        run["run_id"]: run
        for run in manifest.get("runs", [])
        if run.get("status") in FINISHED_STATUSES
    }


def stop_leftovers(
    out: Path, campaign: Campaign, topology: Topology, progress: Progress
) -> None:
    stopped = stop_local(out)
    for site in topology.sites.values():
        try:
            stopped += stop_remote(site, campaign.name)
        except CommandError as err:
            progress(f"  could not look for leftovers on {site.host.name}: {err}")
    for line in stopped:
        progress(f"  stopped a leftover of the interrupted run: {line}")


# A run of the default campaign writes about 5-20 MB (headers-only captures, logs,
# the app copy); never start one with less than this free.
MIN_FREE_BYTES = 200 * 1024 * 1024


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def check_free_space(out: Path, run_ids: list[str]) -> None:
    """Stop before a run the results disk could not hold (the data so far is
    saved; `--resume` continues once there is room)."""
    largest = max(
        (_folder_bytes(out / "runs" / run_id) for run_id in run_ids[-3:]), default=0
    )
    needed = max(MIN_FREE_BYTES, 2 * largest)
    free = shutil.disk_usage(out).free
    if free < needed:
        raise CampaignStopped(
            f"the results disk of {out} has {free / 2**20:.0f} MiB free; a run "
            f"needs about {needed / 2**20:.0f} MiB. The finished runs are saved: "
            "free some space (or move the folder to a bigger disk) and continue "
            "with --resume"
        )


def set_aside(out: Path, run_id: str) -> None:
    """Move an unfinished run's folder to ``interrupted/`` (its data is kept)."""
    folder = out / "runs" / run_id
    if folder.exists():
        target = out / "interrupted" / f"{run_id}-{time.strftime('%Y%m%dT%H%M%S')}"
        target.parent.mkdir(parents=True, exist_ok=True)
        folder.rename(target)
