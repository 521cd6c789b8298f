"""Campaign files: networks x strategy x repetitions and workload, validated once."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inventory.errors import FlowerbedError
from inventory.models import is_valid_name
from inventory.reading import ReadProblem, line_of, read_document
from strategies.registry import (
    check_dataset,
    check_model,
    check_parameters,
    strategy_spec,
)
from testbed.campaign.faults import FAULT_KINDS, Fault, parse_faults
from testbed.campaign.launch import LEVERS, MODES, Launch, LaunchError, parse_launch
from workloads import ARCHITECTURES, DATASETS, FLAIR_LABELS

ConfigValue = str | int | float | bool

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_CLOCK_OFFSET_MS = 3_600_000.0  # an hour: beyond, a fake offset is a typo
DEFAULT_APP = REPO_ROOT / "apps" / "digits"

# Workload settings the default app understands (kebab-case, Flower's convention).
DIGITS_SETTINGS: Mapping[str, type] = {
    "samples-per-node": int,
    "local-epochs": int,
    "batch-size": int,
    "learning-rate": float,
    "model-width": float,
    "fraction-evaluate": float,
    "seed": int,
    # "digits" | "digits5" | "domain-files" | "flair" | "text" (docs/methods.md)
    "dataset": str,
    "data-dir": str,  # dataset domain-files: one subfolder per domain
    "flair-path": str,  # dataset flair: the HDF5 file (docs/datasets.md)
    "flair-labels": str,  # "coarse" (17 labels) | "fine" (1,628)
    "flair-eval-images": int,  # at most this many test images on the server
    "model": str,  # "squeezenet" | "cnn" (the FedBN/FedWon digit CNN)
}
# The values a string setting of the default app may take.
DIGITS_CHOICES: Mapping[str, tuple[str, ...]] = {
    "dataset": DATASETS,
    "model": ARCHITECTURES,
    "flair-labels": FLAIR_LABELS,
}

_TOP_KEYS = (
    "name",
    "description",
    "networks",
    "strategy",
    "rounds",
    "repetitions",
    "workload",
    "capture",
    "run_deadline_s",
    "round_timeout_s",
    "app",
    "clock_offsets_ms",
    "clock_probes",
    "system_sampling_hz",
    "instrument",
    "faults",
    "node_wait_s",
    "runtime",
    "simulation_supernodes",
    "launch",
    "launch_levers",
)
RUNTIMES = ("deployment", "simulation")
DAY_S = 86_400.0


@dataclass(frozen=True)
class Bounds:
    """The values a number may take: ``low`` (excluded when ``low_open``) to ``high``.

    ``why`` says what a value above ``high`` would mean (a typo that would run
    for days or years, a rate no sampler keeps).
    """

    low: float
    high: float
    low_open: bool = False
    why: str = ""

    def problem(self, value: float) -> str | None:
        """What is wrong with ``value``, or None when it is within bounds."""
        if value < self.low or (self.low_open and value == self.low):
            op = ">" if self.low_open else ">="
            return f"must be {op} {self.low:g}, got {value!r}"
        if value > self.high:
            why = f" ({self.why})" if self.why else ""
            return f"must be <= {self.high:,g}{why}, got {value!r}"
        return None


# Campaign keys: a number outside these is a typo, not an experiment.
TOP_BOUNDS: Mapping[str, Bounds] = {
    "rounds": Bounds(1, 100_000, why="at one round a second, over a day per run"),
    "repetitions": Bounds(1, 1_000, why="each repetition is a whole run"),
    "run_deadline_s": Bounds(0, 7 * DAY_S, low_open=True, why="a week"),
    "round_timeout_s": Bounds(0, DAY_S, low_open=True, why="a day"),
    "node_wait_s": Bounds(0, DAY_S, low_open=True, why="a day"),
    "system_sampling_hz": Bounds(0, 1_000, why="the sampler reads /proc"),
    "simulation_supernodes": Bounds(1, 10_000, why="Ray on one machine"),
}
# Settings of the default app (apps/digits/flowerbed_digits/settings.py).
DIGITS_BOUNDS: Mapping[str, Bounds] = {
    "samples-per-node": Bounds(1, 10_000_000),
    "local-epochs": Bounds(1, 10_000, why="per round"),
    "batch-size": Bounds(1, 1_000_000),
    "learning-rate": Bounds(0, 1_000, low_open=True),
    "model-width": Bounds(0, 8, low_open=True, why="a model of gigabytes"),
    "fraction-evaluate": Bounds(0, 1),
    "seed": Bounds(0, 2**63 - 1),
    "flair-eval-images": Bounds(1, 10_000_000),
}
INT64 = Bounds(-(2**63), 2**63 - 1, why="Flower's run config holds 64-bit integers")


class CampaignError(FlowerbedError, ValueError):
    """A campaign file problem: names the file (and line), the key and what to do."""

    def __init__(
        self, path: Path, key: str, problem: str, fix: str, line: int | None = None
    ) -> None:
        self.path, self.key, self.problem = path, key, problem
        self.line = line
        self._fix_as_given = fix
        where = str(path) if line is None else f"{path}:{line}"
        super().__init__(problem, f"{where}: key '{key}'", fix)
        self.fix = fix

    def _render(self) -> str:
        return f"{self.where}: {self.problem}. Fix: {self._fix_as_given}"


@dataclass(frozen=True)
class StrategyChoice:
    """The strategy a campaign runs and its parameters."""

    name: str
    parameters: tuple[tuple[str, ConfigValue], ...] = ()


@dataclass(frozen=True)
class Campaign:
    """A validated campaign: what to run, how often and with which workload."""

    path: Path
    name: str
    networks: tuple[str, ...]
    strategy: StrategyChoice
    rounds: int = 2
    repetitions: int = 1
    workload: tuple[tuple[str, ConfigValue], ...] = ()
    capture: bool = True
    run_deadline_s: float = 900.0
    round_timeout_s: float = 300.0
    app: Path = DEFAULT_APP
    description: str = ""
    clock_probes: bool = True
    # False runs the app exactly as written, with no capture, probes or sampler:
    # only the baseline of the overhead benchmark (bench/overhead.py) needs it.
    instrument: bool = True
    system_sampling_hz: float = 2.0
    # Emulation only: a fake clock offset per node, to test offset correction.
    clock_offsets_ns: Mapping[str, int] = field(default_factory=dict)
    # Faults to inject in every run (testbed/campaign/faults.py).
    faults: tuple[Fault, ...] = ()
    # How long a round waits for missing nodes before it goes on without them;
    # None: the smaller of 30 s and round_timeout_s.
    node_wait_s: float | None = None
    # "deployment": real SuperLink and SuperNodes on the cluster; "simulation":
    # Flower's simulation runtime (Ray) on this machine (campaign/simulation.py).
    runtime: str = "deployment"
    simulation_supernodes: int = 5
    # How Flower is started: stock, or low-latency with its levers (launch.py).
    launch: Launch = field(default_factory=Launch)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def node_wait(self) -> float:
        """Seconds a round waits for missing nodes (see ``node_wait_s``)."""
        if self.node_wait_s is not None:
            return self.node_wait_s
        return min(30.0, self.round_timeout_s)

    @property
    def workload_dict(self) -> dict[str, ConfigValue]:
        """Workload settings as Flower run config."""
        return dict(self.workload)


def _need(path: Path, raw: Mapping[str, Any], key: str, kind: type, fix: str) -> Any:
    value = raw.get(key)
    if value is None:
        raise CampaignError(path, key, "is missing", fix)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CampaignError(path, key, f"must be {kind.__name__}, got {value!r}", fix)
    if isinstance(value, float) and not math.isfinite(value):
        raise CampaignError(path, key, f"must be a finite number, got {value!r}", fix)
    return value


def _optional(
    path: Path, raw: Mapping[str, Any], key: str, kind: type, default: Any
) -> Any:
    if key not in raw:
        return default
    return _need(path, raw, key, kind, f"set '{key}' to a {kind.__name__} or remove it")


def _strategy(path: Path, raw: Any) -> StrategyChoice:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise CampaignError(
            path,
            "strategy",
            f"must be a name or a mapping with 'name', got {raw!r}",
            "write e.g. 'strategy: fedavg'",
        )
    name = raw["name"]
    try:
        strategy_spec(name)
    except KeyError as err:
        raise CampaignError(
            path, "strategy.name", str(err.args[0]), "pick a known strategy"
        ) from None
    parameters = raw.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise CampaignError(
            path, "strategy.parameters", "must be a mapping", "write key: value pairs"
        )
    try:
        check_parameters(name, parameters)
    except ValueError as err:
        raise CampaignError(
            path, "strategy.parameters", str(err), "remove or rename it"
        ) from None
    return StrategyChoice(name=name.lower(), parameters=tuple(parameters.items()))


def _workload(path: Path, raw: Any, app: Path) -> tuple[tuple[str, ConfigValue], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise CampaignError(
            path, "workload", "must be a mapping", "write key: value pairs"
        )
    items: list[tuple[str, ConfigValue]] = []
    for key, value in raw.items():
        where = f"workload.{key}"
        if app == DEFAULT_APP:
            kind = DIGITS_SETTINGS.get(str(key))
            if kind is None:
                close = difflib.get_close_matches(str(key), DIGITS_SETTINGS, n=1)
                hint = (
                    f"did you mean '{close[0]}'?"
                    if close
                    else ("known: " + ", ".join(DIGITS_SETTINGS))
                )
                raise CampaignError(
                    path, where, "is not a setting of the default app", hint
                )
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise CampaignError(
                    path,
                    where,
                    f"must be {kind.__name__}, got {value!r}",
                    f"give a {kind.__name__}",
                )
            bounds = DIGITS_BOUNDS.get(str(key))
            if isinstance(value, int | float) and bounds is not None:
                _check_bounds(path, where, value, bounds)
            choices = DIGITS_CHOICES.get(str(key))
            if choices and value not in choices:
                raise CampaignError(
                    path,
                    where,
                    f"must be one of {', '.join(choices)}, got {value!r}",
                    f"write e.g. '{key}: {choices[-1]}'",
                )
        elif not isinstance(value, str | int | float | bool):
            raise CampaignError(
                path,
                where,
                "must be a string, number or boolean",
                "Flower run config holds only scalars",
            )
        elif isinstance(value, int) and not isinstance(value, bool):
            _check_bounds(path, where, value, INT64)
        if isinstance(value, float) and not math.isfinite(value):
            raise CampaignError(
                path, where, f"must be a finite number, got {value!r}", "give a number"
            )
        items.append((str(key), value))
    return tuple(items)


def _check_bounds(path: Path, key: str, value: float, bounds: Bounds) -> None:
    problem = bounds.problem(value)
    if problem is not None:
        raise CampaignError(
            path,
            key,
            problem,
            f"give a value from {bounds.low:g} to {bounds.high:,g}",
        )


def _check_name(path: Path, key: str, name: str, what: str) -> None:
    # Campaign and network names become folder names (results/<name>,
    # runs/<network>-r1): '../x' or 'a/b' would write outside the results.
    if not is_valid_name(name):
        raise CampaignError(
            path,
            key,
            f"{name!r} is not a valid {what} name (it becomes a folder name)",
            "use letters, digits, '-', '_' and '.', starting with a letter or "
            "digit, at most 63 characters",
        )


def _clock_offsets(path: Path, raw: Any) -> dict[str, int]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CampaignError(
            path,
            "clock_offsets_ms",
            "must map host names to milliseconds",
            "write e.g. 'clock_offsets_ms: {client1: 300}'",
        )
    offsets = {}
    for host, value in raw.items():
        _check_name(path, f"clock_offsets_ms.{host}", str(host), "host")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not abs(value) <= MAX_CLOCK_OFFSET_MS
        ):
            raise CampaignError(
                path,
                f"clock_offsets_ms.{host}",
                f"must be a number of milliseconds within +-{MAX_CLOCK_OFFSET_MS:g}, "
                f"got {value!r}",
                "give the node's fake clock offset in milliseconds",
            )
        offsets[str(host)] = int(round(value * 1e6))
    return offsets


def _faults(path: Path, raw: Any) -> tuple[Fault, ...]:
    try:
        return parse_faults(raw)
    except ValueError as err:
        raise CampaignError(
            path,
            "faults",
            str(err),
            f"kinds: {', '.join(FAULT_KINDS)}; keys: kind, node, round, after_s, "
            "duration_s, loss_pct (docs/reliability.md)",
        ) from None


def _check_digits_workload(
    path: Path, strategy: str, workload: Mapping[str, ConfigValue]
) -> None:
    """Settings of the default app that only make sense together."""
    model = workload.get("model")
    if model == "cnn" and "model-width" not in workload:
        raise CampaignError(
            path,
            "workload.model-width",
            "must be set with 'model: cnn': the app's default width (1.17, sized for"
            " the SqueezeNet) makes the digit CNN 25M parameters, 100 MB a message",
            "add e.g. 'model-width: 0.25' (1.1M parameters, 4.5 MB)",
        )
    if workload.get("dataset") == "domain-files" and not workload.get("data-dir"):
        raise CampaignError(
            path,
            "workload.data-dir",
            "is needed with 'dataset: domain-files'",
            "give the folder holding one subfolder per domain (train.npz, test.npz),"
            " at the same path on every node and the server",
        )
    if workload.get("dataset") == "flair":
        _check_flair(path, workload)
    try:
        check_dataset(strategy, str(workload.get("dataset", "digits")))
    except ValueError as err:
        raise CampaignError(
            path, "workload.dataset", str(err), "pick the dataset or the strategy"
        ) from None
    if model is not None:
        try:
            check_model(strategy, str(model), float(workload.get("model-width", 1)))
        except ValueError as err:
            raise CampaignError(
                path,
                "workload.model",
                str(err),
                "pick another model, width or strategy",
            ) from None


def _check_flair(path: Path, workload: Mapping[str, ConfigValue]) -> None:
    """flair-path is given; a file there (here) has FLAIR's labels and users."""
    flair_path = str(workload.get("flair-path", ""))
    if not flair_path:
        raise CampaignError(
            path,
            "workload.flair-path",
            "is needed with 'dataset: flair'",
            "give the HDF5 file of ml-flair's prepare_dataset.py, at the same path on"
            " every node and the server (docs/datasets.md)",
        )
    if not Path(flair_path).exists():
        return  # a lab's nodes hold it, maybe not this controller
    from workloads import flair_layout as flair

    try:
        flair.label_names(flair_path, str(workload.get("flair-labels", "coarse")))
        flair.user_ids(flair_path, flair.TRAIN_SPLIT)
        flair.user_ids(flair_path, flair.TEST_SPLIT)
    except flair.FlairFileError as err:
        raise CampaignError(
            path, "workload.flair-path", f"{err.where}: {err.what}", err.fix
        ) from None


def _launch(path: Path, raw: Mapping[str, Any]) -> Launch:
    try:
        return parse_launch(raw.get("launch"), raw.get("launch_levers"))
    except LaunchError as err:
        key = "launch" if raw.get("launch") not in (None, *MODES) else "launch_levers"
        raise CampaignError(
            path,
            key,
            str(err),
            f"write 'launch: {MODES[0]}' or 'launch: {MODES[1]}', optionally with "
            f"'launch_levers: [{', '.join(LEVERS)}]' (lever=seconds sets a "
            "lever's interval; docs/launch.md)",
        ) from None


def load_campaign(path: str | Path) -> Campaign:
    """Read and validate a campaign YAML file.

    Everything that can be checked without the inventory is: types, ranges,
    names that become folders, duplicate keys. A problem raises CampaignError
    naming the file, the line of the key when known, the key and the fix.
    """
    path = Path(path)
    try:
        raw = read_document(path, "a campaign file", "campaigns/demo.yaml")
    except ReadProblem as err:
        raise CampaignError(path, "-", err.problem, err.fix, line=err.line) from None
    try:
        return _build(path, raw)
    except CampaignError as err:
        if err.line is not None or err.key == "-":
            raise
        line = line_of(raw, _key_parts(raw, err.key))
        raise CampaignError(path, err.key, err.problem, err.fix, line) from None


def _key_parts(raw: object, key: str) -> tuple[object, ...]:
    """``faults[1].node`` style keys as the parts that lead to them in ``raw``."""
    parts: list[object] = []
    for part in key.split("."):
        name, _, index = part.partition("[")
        parts.append(name)
        if index.rstrip("]").isdigit():
            parts.append(int(index.rstrip("]")))
    return tuple(parts)


def _build(path: Path, raw: object) -> Campaign:
    if not isinstance(raw, dict):
        raise CampaignError(path, "-", "must be a mapping", "see campaigns/demo.yaml")
    for key in raw:
        if key not in _TOP_KEYS:
            close = difflib.get_close_matches(str(key), _TOP_KEYS, n=1)
            hint = (
                f"did you mean '{close[0]}'?"
                if close
                else "known: " + ", ".join(_TOP_KEYS)
            )
            raise CampaignError(path, str(key), "is not a campaign key", hint)
    name = _need(path, raw, "name", str, "give the campaign a name")
    _check_name(path, "name", name, "campaign")
    networks = raw.get("networks")
    if (
        not isinstance(networks, list)
        or not networks
        or not all(isinstance(n, str) for n in networks)
    ):
        raise CampaignError(
            path,
            "networks",
            "must be a non-empty list of network names",
            "e.g. networks: [ethernet, wifi, 5g]",
        )
    for network in networks:
        _check_name(path, "networks", network, "network")
    if len(set(networks)) != len(networks):
        raise CampaignError(path, "networks", "lists a network twice", "list each once")
    app_raw = _optional(path, raw, "app", str, None)
    app = (
        DEFAULT_APP
        if app_raw in (None, "default")
        else (path.parent / app_raw).resolve()
    )
    if not (app / "pyproject.toml").is_file():
        raise CampaignError(
            path,
            "app",
            f"{app} has no pyproject.toml",
            "point 'app' at a Flower app directory or use 'default'",
        )
    campaign = Campaign(
        path=path,
        name=name,
        networks=tuple(networks),
        strategy=_strategy(path, raw.get("strategy", "fedavg")),
        rounds=_optional(path, raw, "rounds", int, 2),
        repetitions=_optional(path, raw, "repetitions", int, 1),
        workload=_workload(path, raw.get("workload"), app),
        capture=_optional(path, raw, "capture", bool, True),
        run_deadline_s=_optional(path, raw, "run_deadline_s", float, 900.0),
        round_timeout_s=_optional(path, raw, "round_timeout_s", float, 300.0),
        app=app,
        description=_optional(path, raw, "description", str, ""),
        clock_probes=_optional(path, raw, "clock_probes", bool, True),
        instrument=_optional(path, raw, "instrument", bool, True),
        system_sampling_hz=_optional(path, raw, "system_sampling_hz", float, 2.0),
        clock_offsets_ns=_clock_offsets(path, raw.get("clock_offsets_ms")),
        faults=_faults(path, raw.get("faults")),
        node_wait_s=_optional(path, raw, "node_wait_s", float, None),
        runtime=_optional(path, raw, "runtime", str, "deployment"),
        simulation_supernodes=_optional(path, raw, "simulation_supernodes", int, 5),
        launch=_launch(path, raw),
        raw=raw,
    )
    for key, bounds in TOP_BOUNDS.items():
        value = getattr(campaign, key)
        if value is not None:
            _check_bounds(path, key, value, bounds)
    _check_faults(campaign)
    if app == DEFAULT_APP:
        _check_digits_workload(path, campaign.strategy.name, campaign.workload_dict)
    if campaign.runtime not in RUNTIMES:
        raise CampaignError(
            path,
            "runtime",
            f"must be deployment or simulation, got {campaign.runtime!r}",
            "write 'runtime: simulation' or remove the key",
        )
    if campaign.launch.mode != "stock" and campaign.runtime == "simulation":
        raise CampaignError(
            path,
            "launch",
            "low-latency applies to deployment runs (SuperNodes, the measuring "
            "Grid); simulation has neither",
            "remove 'launch' or use 'runtime: deployment'",
        )
    if campaign.launch.mode != "stock" and not campaign.instrument:
        raise CampaignError(
            path,
            "launch",
            "low-latency needs 'instrument: true': its Grid levers live in the "
            "measuring Grid",
            "remove 'instrument: false' or 'launch'",
        )
    return campaign


def _check_faults(campaign: Campaign) -> None:
    """Faults that could never fire: after the last round or the run's deadline."""
    for index, fault in enumerate(campaign.faults):
        key = f"faults[{index}]"
        if fault.node is not None:
            _check_name(campaign.path, f"{key}.node", fault.node, "host")
        if fault.round > campaign.rounds:
            raise CampaignError(
                campaign.path,
                f"{key}.round",
                f"round {fault.round} is after the campaign's last round "
                f"(rounds: {campaign.rounds}); the fault would never fire",
                f"give a round from 1 to {campaign.rounds}",
            )
        if fault.after_s > campaign.run_deadline_s:
            raise CampaignError(
                campaign.path,
                f"{key}.after_s",
                f"{fault.after_s:g} s is past the run's deadline "
                f"(run_deadline_s: {campaign.run_deadline_s:g}); the fault would "
                "never fire",
                "give a delay within the run",
            )
