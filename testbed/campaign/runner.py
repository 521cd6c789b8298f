"""Running a campaign: every network x repetition in turn, tables and manifest saved
as runs finish, a live status, and resuming after an interruption.

Each run is driven by :func:`testbed.campaign.drive.execute_run`.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.phases import concat_phases, write_phases
from analysis.system import write_system
from inventory.models import Inventory
from testbed.campaign.collect import RunTables, collect_run
from testbed.campaign.drive import execute_run
from testbed.campaign.manifest import build_manifest
from testbed.campaign.model import Campaign
from testbed.campaign.plan import Progress, RunOutcome, plan_runs
from testbed.campaign.preflight import check_hosts
from testbed.campaign.resume import (
    CampaignStopped,
    check_free_space,
    previous_runs,
    set_aside,
    stop_leftovers,
    write_csv,
)
from testbed.campaign.status import (
    CampaignStatus,
    eta_s,
    write_status,
)
from testbed.campaign.topology import Topology, emulated_topology
from testbed.transport.files import write_atomically, write_json_atomically


def run_campaign(
    campaign: Campaign,
    inventory: Inventory,
    out: Path,
    progress: Progress = print,
    features: dict[str, Any] | None = None,
    topology: Topology | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> list[RunOutcome]:
    """Run every cell; write phases.parquet and manifest.json as runs finish.

    ``resume`` continues an interrupted campaign in ``out``: finished runs are
    kept as they are (their tables rebuilt from their own files), processes the
    interruption left behind are stopped, an unfinished run's folder is moved to
    ``interrupted/`` and the run starts again. Without ``resume`` (or
    ``overwrite``), a folder that already holds a campaign is refused.
    """
    check_hosts(campaign, inventory)
    topology = topology if topology is not None else emulated_topology(inventory)
    # Absolute: Flower processes run with their FLWR_HOME as working directory.
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    finished = {
        run_id: RunOutcome(**run)
        for run_id, run in previous_runs(out, campaign, resume, overwrite).items()
    }
    if resume:
        stop_leftovers(out, campaign, topology, progress)
    outcomes: list[RunOutcome] = []
    tables: list[RunTables] = []
    manifest_path = out / "manifest.json"

    def save() -> None:
        phases = concat_phases([t.phases for t in tables])
        write_atomically(out / "phases.parquet", lambda p: write_phases(phases, p))
        system = [t.system for t in tables if t.system is not None]
        if system:
            frame = pd.concat(system, ignore_index=True)
            write_atomically(out / "system.parquet", lambda p: write_system(frame, p))
        for name, attr in (
            ("transfers.csv", "transfers"),
            ("bytes.csv", "bytes"),
            ("failures.csv", "failures"),
        ):
            frames = [getattr(t, attr) for t in tables if len(getattr(t, attr))]
            if frames:
                table = pd.concat(frames, ignore_index=True)
                write_atomically(out / name, functools.partial(write_csv, table))
        manifest = build_manifest(campaign, inventory, outcomes, features)
        manifest["clocks"] = [c for t in tables for c in t.clocks]
        write_json_atomically(manifest_path, manifest)

    save()
    plans = plan_runs(campaign)
    live = write_status(
        out,
        CampaignStatus(
            campaign=campaign.name,
            total_runs=len(plans),
            rounds_per_run=campaign.rounds,
            started_ns=time.time_ns(),
            pid=os.getpid(),
            launch=campaign.launch.mode,
            levers=campaign.launch.levers,
        ),
    )

    def update(**changes: Any) -> None:
        nonlocal live
        live = write_status(out, replace(live, **changes))

    previous = _stop_on_sigterm()
    state = "interrupted"
    try:
        for plan in plans:
            if plan.run_id in finished:
                outcome = finished[plan.run_id]
                outcomes.append(outcome)
                tables.append(collect_run(campaign, inventory, outcome, out))
                progress(
                    f"[{plan.index}/{plan.total}] {plan.run_id}: {outcome.status} "
                    "before the interruption, kept"
                )
                update(
                    finished_runs=(
                        *live.finished_runs,
                        (outcome.run_id, outcome.status, outcome.duration_s),
                    )
                )
                continue
            set_aside(out, plan.run_id)
            check_free_space(out, [o.run_id for o in outcomes])
            update(
                run_index=plan.index,
                run_id=plan.run_id,
                network=plan.network,
                repetition=plan.repetition,
                round=0,
                run_started_ns=time.time_ns(),
            )
            eta = eta_s(live, time.time_ns())
            progress(
                f"[{plan.index}/{plan.total}] network {plan.network}, "
                f"repetition {plan.repetition}/{campaign.repetitions}"
                + (f" (campaign ETA {eta / 60:.1f} min)" if eta is not None else "")
            )
            outcome = execute_run(
                campaign,
                inventory,
                plan,
                out,
                progress,
                topology,
                on_round=lambda r: update(round=r),
            )
            outcomes.append(outcome)
            tables.append(collect_run(campaign, inventory, outcome, out))
            progress(
                f"  {outcome.status} in {outcome.duration_s:.1f} s"
                + (f": {outcome.reason.splitlines()[0]}" if outcome.reason else "")
            )
            save()
            update(
                finished_runs=(
                    *live.finished_runs,
                    (outcome.run_id, outcome.status, round(outcome.duration_s, 1)),
                )
            )
            if outcome.status == "interrupted":
                raise KeyboardInterrupt
        state = "finished"
    except KeyboardInterrupt:
        save()
        raise
    except OSError as err:
        state = "stopped"
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CampaignStopped(
                f"the results disk of {out} is full ({err}); the runs saved before "
                "stay intact: free some space and continue with --resume"
            ) from err
        raise
    except CampaignStopped:
        state = "stopped"
        raise
    except BaseException:
        state = "failed"
        raise
    finally:
        try:
            update(state=state)
        except OSError:
            pass  # a full disk: the status keeps its last good version
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return outcomes


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_on_sigterm() -> Any:
    """Treat SIGTERM like Ctrl-C: a killed campaign still tears its processes down."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)
