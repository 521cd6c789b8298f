"""A measured copy of any Flower app: components routed through flowerbed's wrappers.

:func:`prepare_bundle` copies a Flower 1.42 Message-API app directory, points
``[tool.flwr.app.components]`` at a small generated package, ``flowerbed_inject``,
whose ``server:app`` and ``client:app`` load the app's own ServerApp and ClientApp
and wrap them (``instrumentation.inject_server`` / ``inject_client``), and declares
the run-config keys flowerbed passes (``flwr run --run-config`` accepts only keys
the app declares). The app's own files are copied unchanged; only the copy's
``pyproject.toml`` is rewritten.
"""

from __future__ import annotations

import shutil
import tomllib
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import tomli_w

from instrumentation.inject_server import EVENT_LOG_KEY, RUN_ID_KEY
from instrumentation.patience import NODE_WAIT_KEY
from instrumentation.reply_backoff import REPLY_BACKOFF_KEY
from instrumentation.wake import REPLY_PULL_KEY, WAKE_KEY

INJECT_PACKAGE = "flowerbed_inject"
SERVER_COMPONENT = f"{INJECT_PACKAGE}.server:app"
CLIENT_COMPONENT = f"{INJECT_PACKAGE}.client:app"
INJECTED_CONFIG: Mapping[str, str | float | bool] = {
    EVENT_LOG_KEY: "",
    RUN_ID_KEY: "",
    NODE_WAIT_KEY: 0.0,
    REPLY_PULL_KEY: 0.0,
    WAKE_KEY: False,
    REPLY_BACKOFF_KEY: False,
}

# Never copied: version control, caches, environments, earlier results and FABs.
_SKIPPED_DIRS = frozenset(
    {
        ".git",
        "__pycache__",
        ".venv",
        ".flwr",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
    }
)
_SKIPPED_TOP_LEVEL = frozenset({"results"})
_SKIPPED_SUFFIXES = (".fab",)

ConfigValue = str | int | float | bool


class BundleError(ValueError):
    """An app folder that cannot be bundled; the message says where and what to do."""


@dataclass(frozen=True)
class Bundle:
    """A prepared copy of an app, ready for ``flwr run <path> ...``."""

    path: Path
    original_serverapp: str
    original_clientapp: str
    config: Mapping[str, ConfigValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("original_serverapp", "original_clientapp"):
            check_component(getattr(self, name), name, self.path / "pyproject.toml")

    @property
    def config_keys(self) -> frozenset[str]:
        """Run-config keys the bundled app declares (its own plus flowerbed's)."""
        return frozenset(self.config)


def check_component(value: object, key: str, where: Path) -> str:
    """Return ``value`` if it is a ``"module:attr"`` reference, else raise."""
    if not isinstance(value, str):
        raise BundleError(
            f"{where}: [tool.flwr.app.components] {key} must be a string "
            f'"package.module:attribute", got {value!r}'
        )
    module, sep, attr = value.partition(":")
    parts = module.split(".") + attr.split(".")
    if not sep or not all(p.isidentifier() for p in parts):
        raise BundleError(
            f'{where}: [tool.flwr.app.components] {key} = "{value}" is not of the '
            'form "package.module:attribute"; fix it to name the module and the '
            f"{'ServerApp' if 'server' in key else 'ClientApp'} object in it"
        )
    return value


def flatten_config(
    table: Mapping[str, Any], prefix: str = ""
) -> dict[str, ConfigValue]:
    """Run-config keys as Flower sees them: nested tables joined with dots."""
    flat: dict[str, ConfigValue] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def _ignore(root: Path) -> Any:
    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = {
            n for n in names if n in _SKIPPED_DIRS or n.endswith(_SKIPPED_SUFFIXES)
        }
        if Path(directory) == root:
            skipped |= {n for n in names if n in _SKIPPED_TOP_LEVEL}
        return skipped

    return ignore


def read_app_config(pyproject: Path) -> dict[str, Any]:
    """The parsed ``pyproject.toml`` of an app, checked for what bundling needs."""
    if not pyproject.is_file():
        raise BundleError(
            f"{pyproject} not found: a Flower app directory must hold a "
            "pyproject.toml with [tool.flwr.app]; point the campaign's app at one"
        )
    try:
        config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise BundleError(f"{pyproject}: not valid TOML ({err}); fix the file") from err
    app = config.get("tool", {}).get("flwr", {}).get("app")
    if not isinstance(app, dict):
        raise BundleError(
            f"{pyproject}: no [tool.flwr.app] table; this is not a Flower app "
            "(add [tool.flwr.app] with publisher, components and config)"
        )
    components = app.get("components")
    if not isinstance(components, dict):
        raise BundleError(
            f"{pyproject}: no [tool.flwr.app.components] table; add "
            'serverapp = "pkg.module:app" and clientapp = "pkg.module:app"'
        )
    for key in ("serverapp", "clientapp"):
        if key not in components:
            raise BundleError(
                f"{pyproject}: [tool.flwr.app.components] has no {key}; add "
                f'{key} = "pkg.module:app"'
            )
        check_component(components[key], key, pyproject)
    run_config = app.get("config", {})
    if not isinstance(run_config, dict):
        raise BundleError(f"{pyproject}: [tool.flwr.app.config] must be a table")
    clash = INJECTED_CONFIG.keys() & run_config.keys()
    if clash:
        raise BundleError(
            f"{pyproject}: [tool.flwr.app.config] already declares {sorted(clash)}, "
            "which flowerbed reserves; rename them in the app"
        )
    return config


def rewrite_config(config: dict[str, Any]) -> dict[str, Any]:
    """A parsed pyproject with components and run config rewritten, no federations."""
    app = dict(config["tool"]["flwr"]["app"])
    app["components"] = {
        **app["components"],
        "serverapp": SERVER_COMPONENT,
        "clientapp": CLIENT_COMPONENT,
    }
    app["config"] = {**app.get("config", {}), **INJECTED_CONFIG}
    include = app.get("fab-include")
    if isinstance(include, list):
        # The app narrowed what goes into its FAB: let our package in too.
        app["fab-include"] = [*include, f"{INJECT_PACKAGE}/*.py"]
    # Legacy connection settings: `flwr run` would migrate them into FLWR_HOME;
    # flowerbed names its connection explicitly, so the copy does without them.
    flwr = {k: v for k, v in config["tool"]["flwr"].items() if k != "federations"}
    flwr["app"] = app
    return {**config, "tool": {**config["tool"], "flwr": flwr}}


def inject_package_files(serverapp: str, clientapp: str) -> dict[str, str]:
    """The generated ``flowerbed_inject`` package: file name -> text."""
    return {
        "__init__.py": (
            '"""Generated by flowerbed: loads the app\'s components with '
            'measurement around them."""\n'
        ),
        "targets.py": (
            '"""The app\'s original components (from its pyproject.toml)."""\n\n'
            f"SERVERAPP = {serverapp!r}\n"
            f"CLIENTAPP = {clientapp!r}\n"
        ),
        "server.py": (
            '"""The app\'s ServerApp with flowerbed\'s grid proxy and timers."""\n\n'
            "from instrumentation.inject_server import wrap_server_app\n\n"
            f"from {INJECT_PACKAGE}.targets import SERVERAPP\n\n"
            "app = wrap_server_app(SERVERAPP)\n"
        ),
        "client.py": (
            '"""The app\'s ClientApp with flowerbed\'s timing mod around it."""\n\n'
            "from instrumentation.inject_client import wrap_client_app\n\n"
            f"from {INJECT_PACKAGE}.targets import CLIENTAPP\n\n"
            "app = wrap_client_app(CLIENTAPP)\n"
        ),
    }


def _check_fab(dest: Path) -> None:
    """Build the FAB as ``flwr run`` will and check our package made it in."""
    from flwr.cli.build import build_fab_from_disk

    try:
        fab = build_fab_from_disk(dest)
    except ValueError as err:
        raise BundleError(
            f"Flower refuses to build the bundled app in {dest}: {err}"
        ) from err
    names = set(zipfile.ZipFile(BytesIO(fab)).namelist())
    missing = [
        f"{INJECT_PACKAGE}/{n}"
        for n in inject_package_files("a:b", "a:b")
        if f"{INJECT_PACKAGE}/{n}" not in names
    ]
    if missing:
        raise BundleError(
            f"the FAB built from {dest} lacks {missing}: the app's .gitignore or "
            f"fab-exclude removes them; let {INJECT_PACKAGE}/ through"
        )


def prepare_bundle(app_dir: Path, dest: Path) -> Bundle:
    """Copy ``app_dir`` to ``dest`` (which must not exist) and inject flowerbed."""
    app_dir = app_dir.resolve()
    pyproject = app_dir / "pyproject.toml"
    config = read_app_config(pyproject)
    if (app_dir / INJECT_PACKAGE).exists():
        raise BundleError(
            f"{app_dir} already has a {INJECT_PACKAGE}/ folder, the name flowerbed "
            "generates; rename it in the app"
        )
    if dest.exists():
        raise BundleError(f"bundle folder {dest} already exists; remove it first")
    shutil.copytree(app_dir, dest, symlinks=True, ignore=_ignore(app_dir))
    try:
        components = config["tool"]["flwr"]["app"]["components"]
        bundle = Bundle(
            path=dest,
            original_serverapp=components["serverapp"],
            original_clientapp=components["clientapp"],
            config=flatten_config(
                {**config["tool"]["flwr"]["app"].get("config", {}), **INJECTED_CONFIG}
            ),
        )
        header = f"# Rewritten by flowerbed from {pyproject}: components wrapped.\n"
        text = header + tomli_w.dumps(rewrite_config(config))
        tomllib.loads(text)  # fail here, not inside flwr, if we wrote bad TOML
        (dest / "pyproject.toml").write_text(text, encoding="utf-8")
        package = dest / INJECT_PACKAGE
        package.mkdir()
        files = inject_package_files(
            bundle.original_serverapp, bundle.original_clientapp
        )
        for name, source in files.items():
            (package / name).write_text(source, encoding="utf-8")
        _check_fab(dest)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)  # no half-made bundle left behind
        raise
    return bundle
