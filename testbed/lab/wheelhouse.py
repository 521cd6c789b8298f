"""The wheelhouse the server builds so nodes install exactly its versions, offline.

It holds flowerbed's own wheel, a wheel of every runtime dependency at the version
installed in the server's environment (dev tools left out), and ``uv`` (which
builds the nodes' virtualenvs). ``requirements.txt`` pins them; ``MANIFEST``
lists each file with its sha256 and size. A wheelhouse is reused while its
inputs (pins and flowerbed's sources) are unchanged.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "flowerbed"
REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_PACKAGES = (
    "inventory",
    "testbed",
    "strategies",
    "instrumentation",
    "analysis",
    "workloads",
)
DEFAULT_ROOT = Path("~/.cache/flowerbed/wheelhouses").expanduser()
UV = "uv"


class WheelhouseError(RuntimeError):
    """The wheelhouse could not be built; says which package and why."""


@dataclass(frozen=True)
class Pin:
    """One runtime distribution at the version installed here."""

    name: str
    version: str

    @property
    def spec(self) -> str:
        """``name==version`` for pip and uv."""
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Wheelhouse:
    """A built wheelhouse: its folder, its pins and the manifest's digest."""

    path: Path
    pins: tuple[Pin, ...]
    digest: str
    files: tuple[tuple[str, str, int], ...]  # (name, sha256, size)

    @property
    def uv_wheel(self) -> str:
        """File name of the uv wheel inside the wheelhouse."""
        for name, _, _ in self.files:
            if name.startswith("uv-") and name.endswith(".whl"):
                return name
        raise WheelhouseError(f"no uv wheel in {self.path}")

    @property
    def size_bytes(self) -> int:
        """Total size of the wheels."""
        return sum(size for _, _, size in self.files)


def runtime_pins(project: str = PROJECT) -> tuple[Pin, ...]:
    """The closure of ``project``'s runtime requirements, at installed versions.

    Extras (``[dev]``) are left out; markers are evaluated for this Python, which
    is also the nodes' target (``inventory check`` tells when a node differs).
    """
    env = {k: str(v) for k, v in default_environment().items()}
    env["extra"] = ""
    seen: dict[str, Pin] = {}
    todo = [project]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise WheelhouseError(
                f"{name} is required by flowerbed but not installed here; "
                "run `make venv` (or pip install -e .) first"
            ) from None
        seen[name] = Pin(str(canonicalize_name(dist.metadata["Name"])), dist.version)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(env):
                todo.append(req.name)
    return tuple(sorted(seen.values(), key=lambda p: p.name))


def source_digest(root: Path = REPO_ROOT) -> str:
    """sha256 over flowerbed's package sources and pyproject.toml."""
    h = hashlib.sha256()
    files = [root / "pyproject.toml"]
    for package in SOURCE_PACKAGES:
        files += sorted((root / package).rglob("*"))
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def wheelhouse_key(pins: tuple[Pin, ...], sources: str) -> str:
    """The folder name of a wheelhouse: what it is built from, hashed."""
    h = hashlib.sha256(json.dumps([p.spec for p in pins]).encode())
    h.update(sources.encode())
    h.update(f"{sys.version_info[:2]}{platform.machine()}".encode())
    return h.hexdigest()[:16]


def download_argv(python: str, dest: Path, specs: list[str]) -> list[str]:
    """pip download of exact binary wheels, no dependency resolution."""
    return [
        python, "-m", "pip", "download", "--quiet", "--no-deps",
        "--only-binary=:all:", "--dest", str(dest), *specs,
    ]  # fmt: skip


def wheel_argv(python: str, dest: Path, source: Path) -> list[str]:
    """pip wheel of flowerbed itself from its source tree."""
    return [
        python, "-m", "pip", "wheel", "--quiet", "--no-deps",
        "--no-build-isolation", "--wheel-dir", str(dest), str(source),
    ]  # fmt: skip


def _pip(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise WheelhouseError(
            f"building the wheelhouse failed while {what}: "
            f"`{' '.join(argv)}` exited {result.returncode}:\n"
            f"{(result.stdout + result.stderr)[-2000:]}\n"
            "If a wheel is missing, the package index is unreachable or has no "
            "binary wheel for this platform"
        )


def _manifest(folder: Path) -> tuple[tuple[str, str, int], ...]:
    rows = []
    for path in sorted(folder.glob("*.whl")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        rows.append((path.name, digest, path.stat().st_size))
    return tuple(rows)


def manifest_text(files: tuple[tuple[str, str, int], ...]) -> str:
    """MANIFEST: ``sha256  size  name`` per wheel."""
    return "".join(f"{digest}  {size}  {name}\n" for name, digest, size in files)


def requirements_text(
    pins: tuple[Pin, ...], files: tuple[tuple[str, str, int], ...]
) -> str:
    """requirements.txt for ``uv pip sync``: every pin, flowerbed first."""
    names = {canonicalize_name(n.split("-")[0]) for n, _, _ in files}
    missing = [p.name for p in pins if canonicalize_name(p.name) not in names]
    if missing:
        raise WheelhouseError(f"no wheel for {', '.join(missing)} in the wheelhouse")
    return "".join(f"{p.spec}\n" for p in pins)


def _dependency_wheels(root: Path, pins: tuple[Pin, ...], python: str) -> Path:
    """Wheels of every pin but flowerbed, downloaded once per set of pins."""
    key = hashlib.sha256(json.dumps([p.spec for p in pins]).encode())
    key.update(f"{sys.version_info[:2]}{platform.machine()}".encode())
    folder = root / f"deps-{key.hexdigest()[:16]}"
    done = folder / ".complete"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        others = [p.spec for p in pins if p.name != PROJECT]
        _pip(download_argv(python, folder, others), "downloading dependencies")
        _pip(download_argv(python, folder, [UV]), "downloading uv")
        done.touch()
    return folder


def build_wheelhouse(
    root: Path = DEFAULT_ROOT, python: str = sys.executable
) -> Wheelhouse:
    """Build (or reuse) the wheelhouse for this environment under ``root``.

    Dependency wheels are downloaded once per set of pins and hard-linked into
    each wheelhouse; only flowerbed's own wheel is rebuilt when its code changes.
    """
    pins = runtime_pins()
    key = wheelhouse_key(pins, source_digest())
    folder = root / key
    done = folder / "MANIFEST"
    if not done.exists():
        deps = _dependency_wheels(root, pins, python)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.whl"):
            stale.unlink()
        for wheel in deps.glob("*.whl"):
            target = folder / wheel.name
            try:
                target.hardlink_to(wheel)
            except OSError:
                shutil.copyfile(wheel, target)
        _pip(wheel_argv(python, folder, REPO_ROOT), "building flowerbed's wheel")
        files = _manifest(folder)
        (folder / "requirements.txt").write_text(requirements_text(pins, files))
        done.write_text(manifest_text(files))
    files = tuple(
        (name, digest, int(size))
        for digest, size, name in (
            line.split("  ") for line in done.read_text().splitlines() if line
        )
    )
    digest = hashlib.sha256(done.read_bytes()).hexdigest()
    return Wheelhouse(folder, pins, digest, files)
