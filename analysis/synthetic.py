"""Synthetic results folders with planted numbers, for report tests and benchmarks.

:func:`write_synthetic_results` writes what ``flowerbed campaign run`` writes
(``phases.parquet`` with tiled node rounds, ``manifest.json``,
``runs/<run>/events.jsonl`` with the ServerApp's ``metrics`` events and
``system.parquet``) from a :class:`SyntheticCampaign`: per-network transfer
times, one planted straggler node and an accuracy curve, all known up front, so
a test can check that the analysis recovers them. Generation is vectorised
(numpy), so a million phase rows take about a second.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.phases import COLUMNS, DTYPES, write_phases
from analysis.system import write_system
from instrumentation.schema import EventKind

MODEL_BYTES = 3_980_000
EVAL_REPLY_BYTES = 300
T0_NS = 1_800_000_000_000_000_000
# A message's phases in order; the compute phase is training or evaluation.
_MESSAGE_PHASES = (
    "dispatch_wait",
    "downlink",
    "client_startup",
    "compute",
    "reply_handoff",
    "uplink",
    "pickup_wait",
)
_BASE_S = {
    "dispatch_wait": 1.5,
    "client_startup": 4.0,
    "reply_handoff": 0.05,
    "pickup_wait": 1.5,
}
_ROUND_GAP_S = 0.3
_NODE_AGGREGATION_S = 0.2


@dataclass(frozen=True)
class SyntheticCampaign:
    """What to plant in a synthetic results folder.

    ``uplink_s``/``downlink_s`` map each network to the median seconds of a
    model transfer (the evaluate reply's uplink is 1/1000 of it); ``training_s``
    is a node's median training time, multiplied by ``straggler_factor`` for
    ``straggler`` (a node name, or None for no straggler). ``noise`` is the
    sigma of the log-normal factor on every duration. Accuracy after round
    ``r`` is ``final_accuracy * (1 - exp(-r / accuracy_tau))`` (plus noise);
    with ``learns=False`` it stays at chance (0.1, ten classes) every round.
    ``launch`` and ``launch_levers`` go into the manifest (top-level ``launch``
    and ``launch_levers``); ``flower_factor`` multiplies Flower's waits and
    start-ups (dispatch_wait, client_startup, reply_handoff, pickup_wait), e.g.
    0.2 for a low-latency launch.
    """

    name: str = "synthetic"
    uplink_s: Mapping[str, float] = field(
        default_factory=lambda: {"ethernet": 0.1, "wifi": 0.5, "5g": 3.0}
    )
    downlink_s: Mapping[str, float] = field(
        default_factory=lambda: {"ethernet": 0.08, "wifi": 0.3, "5g": 0.6}
    )
    strategies: tuple[str, ...] = ("fedavg",)
    nodes: int = 4
    rounds: int = 5
    repetitions: int = 2
    training_s: float = 2.0
    evaluation_s: float = 0.5
    straggler: str | None = "client3"
    straggler_factor: float = 3.0
    noise: float = 0.05
    final_accuracy: float = 0.9
    accuracy_tau: float = 2.0
    learns: bool = True
    system_hosts: int = 3
    seed: int = 0
    launch: str = "stock"
    launch_levers: tuple[str, ...] = ()
    flower_factor: float = 1.0

    def __post_init__(self) -> None:
        if set(self.uplink_s) != set(self.downlink_s) or not self.uplink_s:
            raise ValueError(
                "SyntheticCampaign: uplink_s and downlink_s must name the same, "
                f"non-empty networks (got {sorted(self.uplink_s)} and "
                f"{sorted(self.downlink_s)})"
            )
        if not self.flower_factor > 0:
            raise ValueError("SyntheticCampaign.flower_factor must be above 0")
        for name in ("nodes", "rounds", "repetitions"):
            if getattr(self, name) < 1:
                raise ValueError(f"SyntheticCampaign.{name} must be at least 1")
        if self.straggler is not None and self.straggler not in self.node_names:
            raise ValueError(
                f"SyntheticCampaign.straggler {self.straggler!r} is not one of "
                f"{self.node_names}"
            )

    @property
    def node_names(self) -> list[str]:
        """``client1`` ... ``clientN``, as the emulated inventory names them."""
        return [f"client{i}" for i in range(1, self.nodes + 1)]

    def run_ids(self) -> list[tuple[str, str, str, int]]:
        """(run_id, network, strategy, repetition) of every run, in campaign order."""
        several = len(self.strategies) > 1
        out = []
        for strategy in self.strategies:
            for network in self.uplink_s:
                for rep in range(1, self.repetitions + 1):
                    middle = f"-{strategy}" if several else ""
                    out.append((f"{network}{middle}-r{rep}", network, strategy, rep))
        return out


def _noise(
    rng: np.random.Generator, sigma: float, shape: tuple[int, ...]
) -> np.ndarray:
    return np.exp(rng.normal(0.0, sigma, shape)) if sigma > 0 else np.ones(shape)


def _message_durations(
    spec: SyntheticCampaign,
    rng: np.random.Generator,
    network: str,
    kind: str,
    shape: tuple[int, int],
) -> np.ndarray:
    """Seconds of each phase of one message per (round, node): shape (R, N, 7)."""
    compute = spec.training_s if kind == "train" else spec.evaluation_s
    flower = {k: v * spec.flower_factor for k, v in _BASE_S.items()}
    base = np.array(
        [
            flower["dispatch_wait"],
            spec.downlink_s[network],
            flower["client_startup"],
            compute,
            flower["reply_handoff"],
            spec.uplink_s[network] * (1.0 if kind == "train" else 1e-3),
            flower["pickup_wait"],
        ]
    )
    out = base * _noise(rng, spec.noise, (*shape, len(base)))
    if spec.straggler is not None:
        out[:, spec.node_names.index(spec.straggler), 3] *= spec.straggler_factor
    return np.asarray(out)


def _run_frame(
    spec: SyntheticCampaign,
    rng: np.random.Generator,
    run: tuple[str, str, str, int],
    origin_ns: int,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Phase rows of one run, each round's end and each round's start (ns)."""
    run_id, network, strategy, rep = run
    rounds, nodes = spec.rounds, spec.nodes
    train = _message_durations(spec, rng, network, "train", (rounds, nodes))
    evaluate = _message_durations(spec, rng, network, "evaluate", (rounds, nodes))
    train_ns = np.round(train * 1e9).astype(np.int64)
    eval_ns = np.round(evaluate * 1e9).astype(np.int64)
    train_end = train_ns.sum(axis=2)  # (R, N) since the round's start
    aggregation_start = train_end.max(axis=1)  # (R,)
    aggregation_ns = int(_NODE_AGGREGATION_S * 1e9)
    eval_start = aggregation_start + aggregation_ns
    eval_end = eval_start[:, None] + eval_ns.sum(axis=2)
    round_len = eval_end.max(axis=1) + int(_ROUND_GAP_S * 1e9)
    round_start = origin_ns + np.concatenate([[0], np.cumsum(round_len)[:-1]])

    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    phases: list[np.ndarray] = []
    kinds: list[str] = []
    # train chain, then the gap to aggregation, aggregation, the evaluate chain
    train_t = round_start[:, None, None] + np.cumsum(train_ns, axis=2) - train_ns
    eval_t = (
        (round_start + eval_start)[:, None, None] + np.cumsum(eval_ns, axis=2) - eval_ns
    )
    for k, phase in enumerate(_MESSAGE_PHASES):
        name = "training" if phase == "compute" else phase
        starts.append(train_t[:, :, k])
        ends.append(train_t[:, :, k] + train_ns[:, :, k])
        phases.append(np.full((rounds, nodes), name, dtype=object))
        kinds.append("train")
    agg_start = (round_start + aggregation_start)[:, None] * np.ones(
        (1, nodes), dtype=np.int64
    )
    starts.append(round_start[:, None] + train_end)
    ends.append(agg_start)
    phases.append(np.full((rounds, nodes), "server_other", dtype=object))
    kinds.append("")
    starts.append(agg_start)
    ends.append(agg_start + aggregation_ns)
    phases.append(np.full((rounds, nodes), "aggregation", dtype=object))
    kinds.append("")
    for k, phase in enumerate(_MESSAGE_PHASES):
        name = "evaluation" if phase == "compute" else phase
        starts.append(eval_t[:, :, k])
        ends.append(eval_t[:, :, k] + eval_ns[:, :, k])
        phases.append(np.full((rounds, nodes), name, dtype=object))
        kinds.append("evaluate")

    start = np.stack(starts, axis=2)  # (R, N, P)
    end = np.stack(ends, axis=2)
    phase_of = np.stack(phases, axis=2)
    kind = np.broadcast_to(np.array(kinds, dtype=object), start.shape)
    round_no = np.broadcast_to(np.arange(1, rounds + 1)[:, None, None], start.shape)
    node = np.broadcast_to(
        np.array(spec.node_names, dtype=object)[None, :, None], start.shape
    )
    # the node whose reply came last has no server_other stretch
    keep = ~((phase_of == "server_other") & (end <= start))
    frame = _assemble(
        spec,
        run,
        (start[keep], end[keep]),
        (phase_of[keep], kind[keep], round_no[keep], node[keep]),
    )
    server = _assemble(
        spec,
        run,
        (
            round_start + aggregation_start,
            round_start + aggregation_start + aggregation_ns,
        ),
        (
            np.full(rounds, "aggregation", dtype=object),
            np.full(rounds, "", dtype=object),
            np.arange(1, rounds + 1),
            np.full(rounds, "server", dtype=object),
        ),
    )
    both = pd.concat([frame, server], ignore_index=True)
    return both, round_start + round_len - int(_ROUND_GAP_S * 1e9), round_start


def _assemble(
    spec: SyntheticCampaign,
    run: tuple[str, str, str, int],
    span: tuple[np.ndarray, np.ndarray],
    labels_: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> pd.DataFrame:
    """Phase-table rows of (start, end) and (phase, kind, round, node) arrays."""
    run_id, network, strategy, rep = run
    start, end = span
    phase, kind, round_no, node = labels_
    n = len(start)
    transfer = (phase == "downlink") | (phase == "uplink")
    small = (phase == "uplink") & (kind == "evaluate")
    size = np.where(small, EVAL_REPLY_BYTES, MODEL_BYTES)
    message_bytes = pd.array(np.where(transfer, size, 0), dtype="Int64")
    message_bytes[~transfer] = pd.NA
    wire = pd.array(
        np.where(transfer, (size * 1.02).astype(np.int64), 0), dtype="Int64"
    )
    wire[~transfer] = pd.NA
    source = np.where(
        transfer, "capture", np.where(node == "server", "server_timer", "derived")
    )
    compute = (phase == "training") | (phase == "evaluation")
    source = np.where(compute, "client_mod", source)
    labels = pd.Series(round_no.astype(str), dtype=object)
    labels = run_id + "-" + labels + "-" + pd.Series(node, dtype=object)
    labels = labels + "-" + pd.Series(kind, dtype=object)
    message_id = np.where(kind == "", "", labels.to_numpy())
    frame = pd.DataFrame(
        {
            "campaign": spec.name,
            "run_id": run_id,
            "network": network,
            "strategy": strategy,
            "repetition": np.full(n, rep, dtype=np.int64),
            "round": round_no.astype(np.int64),
            "node": node,
            "phase": phase,
            "message_type": kind,
            "start_ns": start.astype(np.int64),
            "end_ns": end.astype(np.int64),
            "duration_s": (end - start) / 1e9,
            "bytes": wire,
            "message_bytes": message_bytes,
            "source": source,
            "uncertainty_s": np.where(
                (phase == "client_startup") | (phase == "reply_handoff"), 0.002, 0.0
            ),
            "message_id": message_id,
        }
    )
    return frame[list(COLUMNS)]


def _accuracy(spec: SyntheticCampaign, rng: np.random.Generator, round_: int) -> float:
    if not spec.learns:
        return float(0.1 + rng.normal(0.0, 0.001))
    value = spec.final_accuracy * (1.0 - np.exp(-round_ / spec.accuracy_tau))
    jitter = rng.normal(0.0, 0.005) if round_ else 0.0
    return float(np.clip(value + 0.1 * (round_ == 0) + jitter, 0.0, 1.0))


def _events(
    spec: SyntheticCampaign,
    rng: np.random.Generator,
    run: tuple[str, str, str, int],
    round_start: np.ndarray,
    round_end: np.ndarray,
) -> list[dict[str, object]]:
    """``run_start``, ``metrics`` (server, per round, round 0 first), ``run_end``."""
    run_id, network, strategy, rep = run
    first = int(round_start[0])
    events: list[dict[str, object]] = [
        {
            "event": EventKind.RUN_START.value,
            "run_id": run_id,
            "t_ns": first - 7_000_000_000,
            "network": network,
            "strategy": strategy,
            "repetition": rep,
        }
    ]
    for rnd in range(spec.rounds + 1):
        t_ns = first - 100_000_000 if rnd == 0 else int(round_end[rnd - 1]) + 50_000_000
        accuracy = _accuracy(spec, rng, rnd)
        events.append(
            {
                "event": EventKind.METRICS.value,
                "run_id": run_id,
                "t_ns": t_ns,
                "round": rnd,
                "scope": "server",
                "values": {"accuracy": accuracy, "loss": 2.3 * (1.0 - accuracy)},
            }
        )
    events.append(
        {
            "event": EventKind.RUN_END.value,
            "run_id": run_id,
            "t_ns": int(round_end[-1]) + 1_000_000_000,
            "status": "ok",
            "reason": "",
            "rounds": spec.rounds,
        }
    )
    return events


def _system(
    spec: SyntheticCampaign,
    run: tuple[str, str, str, int],
    start_ns: int,
    end_ns: int,
) -> pd.DataFrame:
    """1 Hz CPU and NIC counters of the server and the first nodes of one run."""
    run_id, network, _, _ = run
    t = np.arange(start_ns, end_ns, 1_000_000_000, dtype=np.int64)
    phase = np.arange(len(t))
    parts = []
    hosts = ["server", *spec.node_names][: max(1, spec.system_hosts)]
    for index, host in enumerate(hosts):
        rate = MODEL_BYTES / max(spec.uplink_s[network], 1e-3) / 20
        sent = np.cumsum(rate * (1 + (phase + index) % 3)).astype(np.int64)
        recv = np.cumsum(rate * (1 + (phase + index + 1) % 3)).astype(np.int64)
        for metric, device, values in (
            ("cpu_percent", "0", 40.0 + 30.0 * ((phase + index) % 2)),
            ("cpu_percent", "1", 20.0 + 10.0 * ((phase + index) % 3)),
            ("net_bytes_sent", "eth0", sent.astype(float)),
            ("net_bytes_recv", "eth0", recv.astype(float)),
        ):
            parts.append(
                pd.DataFrame(
                    {
                        "run_id": run_id,
                        "network": network,
                        "host": host,
                        "t_ns": t,
                        "metric": metric,
                        "device": device,
                        "value": np.asarray(values, dtype=float),
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def _manifest(
    spec: SyntheticCampaign, runs: list[tuple[str, str, str, int]]
) -> dict[str, object]:
    return {
        "written_at_ns": T0_NS,
        "campaign": {
            "name": spec.name,
            "path": "synthetic",
            "strategy": spec.strategies[0],
            "rounds": spec.rounds,
            "repetitions": spec.repetitions,
            "networks": list(spec.uplink_s),
        },
        "link_profiles": {
            n: {"uplink_mbit": round(MODEL_BYTES * 8 / 1e6 / s, 2)}
            for n, s in spec.uplink_s.items()
        },
        "emulation": {
            "rate": {"requested": True, "active": True, "detail": "synthetic"},
        },
        "runs": [
            {
                "run_id": run_id,
                "network": network,
                "strategy": strategy,
                "repetition": rep,
                "status": "ok",
                "reason": "",
                "rounds_completed": spec.rounds,
            }
            for run_id, network, strategy, rep in runs
        ],
        "launch": spec.launch,
        "launch_levers": list(spec.launch_levers),
        "versions": {"flwr": "1.42.0", "flowerbed": "synthetic"},
        "git_commit": "synthetic",
        "kernel": "synthetic",
        "clocks": [],
    }


def synthetic_phases(spec: SyntheticCampaign) -> pd.DataFrame:
    """The phase table :func:`write_synthetic_results` writes for ``spec``."""
    frame, _, _ = _generate(spec)
    return frame


def _generate(
    spec: SyntheticCampaign,
) -> tuple[pd.DataFrame, list[list[dict[str, object]]], pd.DataFrame]:
    rng = np.random.default_rng(spec.seed)
    frames, events, system = [], [], []
    origin = T0_NS
    for run in spec.run_ids():
        frame, round_end, round_start = _run_frame(spec, rng, run, origin)
        frames.append(frame)
        events.append(_events(spec, rng, run, round_start, round_end))
        system.append(_system(spec, run, origin - 2_000_000_000, int(round_end[-1])))
        origin = int(round_end[-1]) + 60_000_000_000
    df = pd.concat(frames, ignore_index=True).astype(DTYPES)
    df.attrs = {"unmatched": [], "clock": [], "anatomy": []}
    return df, events, pd.concat(system, ignore_index=True)


def write_synthetic_results(spec: SyntheticCampaign, out: Path) -> Path:
    """Write a results folder of ``spec`` into ``out`` (created); return ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df, events, system = _generate(spec)
    write_phases(df, out / "phases.parquet")
    write_system(system, out / "system.parquet")
    runs = spec.run_ids()
    for (run_id, *_), run_events in zip(runs, events, strict=True):
        run_dir = out / "runs" / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(e, separators=(",", ":")) for e in run_events]
        (run_dir / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = json.dumps(_manifest(spec, runs), indent=2)
    (out / "manifest.json").write_text(manifest + "\n", encoding="utf-8")
    return out
