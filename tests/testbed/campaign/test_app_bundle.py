"""Bundling apps flowerbed did not write: copy, rewrite, check with Flower."""

from __future__ import annotations

import tomllib
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk
from flwr.common.config import validate_config

from testbed.campaign.app_bundle import (
    CLIENT_COMPONENT,
    SERVER_COMPONENT,
    BundleError,
    prepare_bundle,
)

REPO = Path(__file__).resolve().parents[3]
PLAIN_APP = REPO / "tests" / "apps" / "plain_app"
DIGITS_APP = REPO / "apps" / "digits"

MINIMAL = """
[project]
name = "tiny"
version = "1.0.0"

[tool.flwr.app]
publisher = "me"

[tool.flwr.app.components]
serverapp = "tiny.server:app"
clientapp = "tiny.client:app"
"""


def _write_app(root: Path, pyproject: str, **files: str) -> Path:
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(pyproject)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("app", "server", "client", "own_keys"),
    [
        (
            PLAIN_APP,
            "plainapp.server_app:app",
            "plainapp.client_app:app",
            {"num-server-rounds", "min-nodes", "samples-per-node"},
        ),
        (
            DIGITS_APP,
            "flowerbed_digits.server_app:app",
            "flowerbed_digits.client_app:app",
            {"num-server-rounds", "strategy", "min-nodes", "model-width"},
        ),
    ],
)
def test_bundle_rewrites_components_and_declares_flowerbed_keys(
    tmp_path: Path, app: Path, server: str, client: str, own_keys: set[str]
) -> None:
    original = (app / "pyproject.toml").read_bytes()

    bundle = prepare_bundle(app, tmp_path / "bundle")

    config = tomllib.loads((bundle.path / "pyproject.toml").read_text())
    flwr_app = config["tool"]["flwr"]["app"]
    assert flwr_app["components"] == {
        "serverapp": SERVER_COMPONENT,
        "clientapp": CLIENT_COMPONENT,
    }
    assert (bundle.original_serverapp, bundle.original_clientapp) == (server, client)
    assert flwr_app["config"]["flowerbed-event-log"] == ""
    assert flwr_app["config"]["flowerbed-run-id"] == ""
    assert own_keys <= bundle.config_keys
    assert {"flowerbed-event-log", "flowerbed-run-id"} <= bundle.config_keys
    targets = (bundle.path / "flowerbed_inject" / "targets.py").read_text()
    assert repr(server) in targets and repr(client) in targets
    # Flower accepts it, and its FAB carries the app and our package.
    valid, errors, _ = validate_config(config, check_module=False)
    assert valid, errors
    names = set(zipfile.ZipFile(BytesIO(build_fab_from_disk(bundle.path))).namelist())
    assert "flowerbed_inject/server.py" in names
    assert "flowerbed_inject/client.py" in names
    assert server.split(":")[0].replace(".", "/") + ".py" in names
    # The app itself is untouched.
    assert (app / "pyproject.toml").read_bytes() == original
    assert not (app / "flowerbed_inject").exists()


def test_generated_modules_import_the_wrappers_with_the_original_targets(
    tmp_path: Path,
) -> None:
    bundle = prepare_bundle(PLAIN_APP, tmp_path / "b")
    server = (bundle.path / "flowerbed_inject" / "server.py").read_text()
    client = (bundle.path / "flowerbed_inject" / "client.py").read_text()
    assert "wrap_server_app(SERVERAPP)" in server
    assert "wrap_client_app(CLIENTAPP)" in client
    compile(server, "server.py", "exec")
    compile(client, "client.py", "exec")


def test_copy_skips_git_caches_venvs_results_and_fabs(tmp_path: Path) -> None:
    app = _write_app(
        tmp_path / "app",
        MINIMAL,
        **{
            "tiny/__init__.py": "",
            "tiny/server.py": "app = 1\n",
            "tiny/__pycache__/server.cpython-311.pyc": "x",
            ".git/HEAD": "ref",
            ".venv/lib/x.py": "",
            "results/runs/a.json": "{}",
            "old.fab": "zip",
            "tiny/results/keep.py": "",  # only the top-level results/ is skipped
        },
    )

    bundle = prepare_bundle(app, tmp_path / "bundle")

    copied = {p.relative_to(bundle.path).as_posix() for p in bundle.path.rglob("*")}
    assert "tiny/server.py" in copied and "tiny/results/keep.py" in copied
    for skipped in (".git", ".venv", "results", "old.fab", "tiny/__pycache__"):
        assert skipped not in copied


def test_nested_config_keys_are_flattened_like_flower_does(tmp_path: Path) -> None:
    app = _write_app(
        tmp_path / "app",
        MINIMAL
        + "\n[tool.flwr.app.config]\nlr = 0.1\n"
        + '[tool.flwr.app.config.opt]\nname = "sgd"\n',
    )
    bundle = prepare_bundle(app, tmp_path / "bundle")
    assert bundle.config["opt.name"] == "sgd" and bundle.config["lr"] == 0.1


def test_fab_include_lists_get_our_package(tmp_path: Path) -> None:
    pyproject = MINIMAL.replace(
        'publisher = "me"', 'publisher = "me"\nfab-include = ["tiny/*.py"]'
    )
    app = _write_app(
        tmp_path / "app", pyproject, **{"tiny/__init__.py": "", "tiny/server.py": ""}
    )
    bundle = prepare_bundle(app, tmp_path / "bundle")
    config = tomllib.loads((bundle.path / "pyproject.toml").read_text())
    assert config["tool"]["flwr"]["app"]["fab-include"] == [
        "tiny/*.py",
        "flowerbed_inject/*.py",
    ]


def test_legacy_federations_are_dropped_from_the_copy(tmp_path: Path) -> None:
    pyproject = MINIMAL + (
        '\n[tool.flwr.federations]\ndefault = "local"\n'
        "[tool.flwr.federations.local]\noptions.num-supernodes = 2\n"
    )
    app = _write_app(tmp_path / "app", pyproject, **{"tiny/a.py": ""})
    bundle = prepare_bundle(app, tmp_path / "bundle")
    config = tomllib.loads((bundle.path / "pyproject.toml").read_text())
    assert "federations" not in config["tool"]["flwr"]
    assert "federations" in tomllib.loads(pyproject)["tool"]["flwr"]


def test_a_gitignore_that_drops_our_package_is_reported(tmp_path: Path) -> None:
    app = _write_app(
        tmp_path / "app", MINIMAL, **{".gitignore": "flowerbed_*\n", "tiny/a.py": ""}
    )
    with pytest.raises(BundleError, match="lacks.*flowerbed_inject"):
        prepare_bundle(app, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()  # no half-made bundle left behind


@pytest.mark.parametrize(
    ("pyproject", "message"),
    [
        (None, r"pyproject.toml not found"),
        ("[project\nname=", r"not valid TOML"),
        ('[project]\nname = "x"\n', r"no \[tool.flwr.app\] table"),
        (
            '[tool.flwr.app]\npublisher = "me"\n',
            r"no \[tool.flwr.app.components\] table",
        ),
        (
            MINIMAL.replace('clientapp = "tiny.client:app"\n', ""),
            r"has no clientapp",
        ),
        (
            MINIMAL.replace('"tiny.server:app"', '"tiny.server.app"'),
            r'serverapp = "tiny.server.app" is not of the form',
        ),
        (
            MINIMAL.replace('"tiny.client:app"', "3"),
            r"clientapp must be a string",
        ),
        (
            MINIMAL + '\n[tool.flwr.app.config]\nflowerbed-run-id = "x"\n',
            r"already declares \['flowerbed-run-id'\]",
        ),
    ],
)
def test_broken_apps_are_refused_naming_file_and_key(
    tmp_path: Path, pyproject: str | None, message: str
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    if pyproject is not None:
        (app / "pyproject.toml").write_text(pyproject)
    with pytest.raises(BundleError, match=message) as info:
        prepare_bundle(app, tmp_path / "bundle")
    assert str(app / "pyproject.toml") in str(info.value)
    assert not (tmp_path / "bundle").exists()


def test_existing_destination_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bundle").mkdir()
    with pytest.raises(BundleError, match="already exists"):
        prepare_bundle(PLAIN_APP, tmp_path / "bundle")
