"""``cluster provision``: bring every host to a known state, idempotently, in parallel.

Per host, in order: the folder layout; the server's wheelhouse (pushed once per
machine and folder); a virtualenv built with uv from it, pinned to the server's
versions; a copy of the app; the cluster CA certificate; a SuperNode
authentication key generated on the host (its private half never leaves it; the
public half is fetched for registration with the SuperLink); optionally chrony
pointed at the lab server. One remote probe reads what is already there, so a
second run finds nothing to do after one round trip per host. A failing host is
a result for that host; the others carry on.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from inventory.models import Host, Inventory, LinkProfile
from testbed.commands import shaping
from testbed.commands.provisioncmd import STAMPS, parse_probe, probe_argv, uv_argv
from testbed.lab.tls import TlsFiles
from testbed.lab.wheelhouse import Wheelhouse
from testbed.transport.executor import CommandError, Executor

StepStatus = Literal["unchanged", "changed", "failed", "skipped"]
Progress = Callable[[str], None]
ExecutorFactory = Callable[[], Executor]

INSTALL_TIMEOUT_S = 900.0


class ProvisionError(RuntimeError):
    """A provisioning step failed on a host; says which step and what to do."""


@dataclass(frozen=True)
class ProvisionOptions:
    """What to install. ``offline`` installs from the wheelhouse only; otherwise
    dependencies may come from the package index (flowerbed's wheel still comes
    from the wheelhouse)."""

    wheelhouse: Wheelhouse
    server_dir: Path
    tls: TlsFiles | None = None
    app: Path | None = None
    chrony_server: str | None = None
    offline: bool = True
    parallel: int = 16
    # Networks whose inventory profile is applied to the hosts' real interfaces
    # (uplink: each host's egress), e.g. to make WiFi behave like a 5G uplink.
    shape: Mapping[str, LinkProfile] = field(default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    """One step on one host."""

    step: str
    status: StepStatus
    detail: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class HostResult:
    """Everything provisioning did (or found) on one host."""

    host: str
    steps: tuple[StepResult, ...]
    seconds: float
    error: str = ""
    error_kind: str = ""

    @property
    def ok(self) -> bool:
        """Whether every step succeeded."""
        return not self.error and all(s.status != "failed" for s in self.steps)

    @property
    def changed(self) -> tuple[str, ...]:
        """The steps that changed something."""
        return tuple(s.step for s in self.steps if s.status == "changed")


@dataclass(frozen=True)
class ProvisionReport:
    """All hosts' results."""

    hosts: tuple[HostResult, ...]
    seconds: float
    wheelhouse: str = ""
    keys: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every host succeeded."""
        return all(h.ok for h in self.hosts)

    @property
    def nothing_to_do(self) -> bool:
        """Whether no host needed any change."""
        return all(not h.changed for h in self.hosts)


def wheelhouse_dir(host: Host) -> str:
    """Where ``host`` keeps the wheelhouse (``flowerbed_wheelhouse``, default
    ``<flowerbed_dir>/wheelhouse``)."""
    return host.wheelhouse_dir or f"{host.flowerbed_dir}/wheelhouse"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def app_archive(app: Path) -> bytes:
    """A deterministic tar.gz of an app folder (no caches, fixed times and owners,
    and a gzip header without a timestamp, so the same app gives the same bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(app.rglob("*")):
            rel = path.relative_to(app)
            if "__pycache__" in rel.parts or path.suffix == ".pyc":
                continue
            info = tar.gettarinfo(str(path), arcname=f"{app.name}/{rel}")
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_file():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return gzip.compress(buffer.getvalue(), compresslevel=6, mtime=0)


class _MachineLocks:
    """One lock per (machine, folder): hosts sharing a disk push a shared
    wheelhouse once, the others wait and then find it there."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._seen: set[tuple[str, str]] = set()

    def get(self, key: tuple[str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def first(self, key: tuple[str, str]) -> bool:
        """True for the first caller with ``key``, False for every later one."""
        with self._guard:
            seen = key in self._seen
            self._seen.add(key)
            return not seen


class _HostProvisioner:
    def __init__(
        self,
        host: Host,
        executor: Executor,
        options: ProvisionOptions,
        locks: _MachineLocks,
        progress: Progress,
    ) -> None:
        self.host, self.ex, self.opt = host, executor, options
        self.locks, self.progress = locks, progress
        self.base = host.flowerbed_dir
        self.wheels = wheelhouse_dir(host)
        self.steps: list[StepResult] = []
        self.digests: dict[str, str] = {}
        self.boot_id = ""
        self.home = ""

    def path(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def remote_path(self, path: str) -> str:
        """An absolute path for SFTP and for files other hosts' commands name."""
        if path.startswith("/") or not self.home:
            return path
        return f"{self.home}/{path}"

    def probe(self) -> None:
        result = self.ex.run(probe_argv(self.base, self.wheels), check=False)
        self.digests, self.boot_id = parse_probe(result.stdout, self.wheels)
        for line in result.stdout.splitlines():
            if line.startswith("home "):
                self.home = line.split(" ", 1)[1].strip()

    def step(self, name: str, action: Callable[[], str | None]) -> None:
        """Run ``action``: it returns None when nothing was needed, else a detail."""
        started = time.monotonic()
        try:
            detail = action()
        except (CommandError, ProvisionError, OSError) as err:
            seconds = time.monotonic() - started
            self.steps.append(StepResult(name, "failed", str(err), seconds))
            self.progress(f"  {self.host.name}: {name} FAILED: {err}")
            raise
        seconds = time.monotonic() - started
        status: StepStatus = "unchanged" if detail is None else "changed"
        self.steps.append(StepResult(name, status, detail or "", seconds))
        if detail is not None:
            self.progress(f"  {self.host.name}: {name}: {detail} ({seconds:.1f} s)")

    # -- steps

    def layout(self) -> str | None:
        folders = ["venv", "app", "tls", "keys", "chrony", "tools", "runs"]
        if "layout" in self.digests:
            return None
        self.ex.run(["mkdir", "-p", *(self.path(f) for f in folders), self.wheels])
        return f"created {self.base}"

    def wheelhouse(self) -> str | None:
        manifest = (self.opt.wheelhouse.path / "MANIFEST").read_bytes()
        if self.digests.get("wheelhouse") == _digest(manifest):
            return None
        key = (self.boot_id or self.host.name, self.remote_path(self.wheels))
        with self.locks.get(key):
            self.probe()  # another host sharing this disk may have pushed it
            if self.digests.get("wheelhouse") == _digest(manifest):
                return None
            return self._push_wheels()

    def _push_wheels(self) -> str:
        self.ex.run(["mkdir", "-p", self.wheels])
        listing = self.ex.run(
            [
                "find",
                self.wheels,
                "-maxdepth",
                "1",
                "-name",
                "*.whl",
                "-printf",
                "%f %s\n",
            ],  # fmt: skip
        ).stdout
        present = {
            name: int(size)
            for name, size in (line.split() for line in listing.splitlines() if line)
        }
        pushed, total = 0, 0
        for name, _, size in self.opt.wheelhouse.files:
            if present.get(name) == size and not name.startswith("flowerbed-"):
                continue
            local = self.opt.wheelhouse.path / name
            self.ex.put(local, self.remote_path(f"{self.wheels}/{name}"))
            pushed, total = pushed + 1, total + size
        sums = "".join(f"{d}  {n}\n" for n, d, _ in self.opt.wheelhouse.files)
        self._put_text(f"{self.wheels}/SHA256SUMS", sums)
        self.ex.run(
            [
                "sh",
                "-c",
                'cd "$1" && sha256sum --quiet -c SHA256SUMS',
                "verify",
                self.wheels,
            ],  # fmt: skip
            timeout=300.0,
        )
        for name in ("requirements.txt", "MANIFEST"):  # MANIFEST last: the marker
            self.ex.put(
                self.opt.wheelhouse.path / name,
                self.remote_path(f"{self.wheels}/{name}"),
            )
        return f"pushed {pushed} wheel(s), {total / 1e6:.0f} MB, checksums verified"

    def _put_text(
        self, remote: str, text: str | bytes, mode: int | None = None
    ) -> None:
        data = text.encode() if isinstance(text, str) else text
        with tempfile.NamedTemporaryFile() as tmp:
            tmp.write(data)
            tmp.flush()
            self.ex.put(Path(tmp.name), self.remote_path(remote), mode)

    def venv(self) -> str | None:
        wanted = self.opt.wheelhouse.digest
        if self.digests.get("venv") == _digest(wanted.encode()):
            return None
        uv_dir = self.path("tools/uv")
        uv_wheel = f"{self.wheels}/{self.opt.wheelhouse.uv_wheel}"
        version = self.opt.wheelhouse.uv_wheel.split("-")[1]
        uv = f"{uv_dir}/uv-{version}.data/scripts/uv"
        python = self.host.python
        self.ex.run(
            [
                "sh",
                "-c",
                'test -x "$3" || { "$4" -m zipfile -e "$1" "$2" && chmod +x "$3"; }',
                "uv",
                uv_wheel,
                uv_dir,
                uv,
                python,
            ],  # fmt: skip
            timeout=120.0,
        )
        venv = self.path("venv")
        env = {"UV_CACHE_DIR": f"{self.wheels}/.uv-cache", "UV_NO_PROGRESS": "1"}
        made = self.ex.run(
            [
                "sh",
                "-c",
                'test -x "$1/bin/python" || "$2" venv --python "$3" "$1"',
                "venv",
                venv,
                uv,
                python,
            ],  # fmt: skip
            timeout=120.0,
            env=env,
            check=False,
        )
        if made.returncode != 0:
            raise ProvisionError(
                f"cannot create the virtualenv {venv} on {self.host.name} with "
                f"{python}: {made.stderr.strip()[-500:]}. flowerbed needs Python "
                ">= 3.11 (Raspberry Pi OS Bookworm or later); set "
                "ansible_python_interpreter if it is not `python3`"
            )
        synced = self.ex.run(
            uv_argv(uv, venv, self.wheels, self.opt.offline),
            timeout=INSTALL_TIMEOUT_S,
            env=env,
            check=False,
        )
        if synced.returncode != 0:
            raise ProvisionError(
                f"installing the wheelhouse into {venv} on {self.host.name} "
                f"failed: {synced.stderr.strip()[-800:]}. The wheelhouse holds "
                "wheels for the server's platform and Python; a host with another "
                "architecture or Python needs a wheelhouse built for it"
            )
        self._verify(venv, uv, env)
        self._put_text(self.path(STAMPS["venv"]), wanted)
        return f"installed {len(self.opt.wheelhouse.pins)} package(s) into {venv}"

    def _verify(self, venv: str, uv: str, env: dict[str, str]) -> None:
        """Import the stack once per machine and wheelhouse (the same wheels on the
        same Python import alike); every venv gets uv's dependency check."""
        self.ex.run(
            [uv, "pip", "check", "--python", f"{venv}/bin/python"],
            timeout=120.0,
            env=env,
        )
        key = (self.boot_id or self.host.name, self.opt.wheelhouse.digest)
        if self.locks.first(key):
            self.ex.run(
                [f"{venv}/bin/python", "-c", "import flwr, torch, instrumentation"],
                timeout=300.0,
            )

    def app(self) -> str | None:
        if self.opt.app is None:
            return None
        archive = app_archive(self.opt.app)
        digest = _digest(archive)
        if self.digests.get("app") == _digest(digest.encode()):
            return None
        name = f"app/{self.opt.app.name}.tar.gz"
        self._put_text(self.path(name), archive)
        self.ex.run(["tar", "-xzf", self.path(name), "-C", self.path("app")])
        self._put_text(self.path(STAMPS["app"]), digest)
        return f"app {self.opt.app.name} ({len(archive) / 1e3:.0f} kB)"

    def ca(self) -> str | None:
        if self.opt.tls is None:
            return None
        cert = self.opt.tls.ca_cert.read_bytes()
        if self.digests.get("ca") == _digest(cert):
            return None
        self._put_text(self.path(STAMPS["ca"]), cert, 0o644)
        return "cluster CA certificate installed"

    def supernode_key(self) -> str | None:
        local = self.opt.server_dir / "supernode-keys" / f"{self.host.name}.pub"
        key = self.path("keys/supernode")
        created = None
        if "key" not in self.digests:
            self.ex.run(
                ["ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "",
                 "-C", f"flowerbed-supernode-{self.host.name}", "-f", key],
            )  # fmt: skip
            created = "SuperNode key generated on the host"
        if created is None and local.exists():
            if _digest(local.read_bytes()) == self.digests["key"]:
                return None
        local.parent.mkdir(parents=True, exist_ok=True)
        self.ex.get(self.remote_path(f"{key}.pub"), local)
        return created or f"public key fetched to {local}"

    def chrony(self) -> str | None:
        if self.opt.chrony_server is None:
            return None
        conf = f"server {self.opt.chrony_server} iburst prefer\n"
        if self.digests.get("chrony") == _digest(conf.encode()):
            return None
        self._put_text(self.path(STAMPS["chrony"]), conf)
        script = (
            'install -m 0644 "$1" /etc/chrony/conf.d/flowerbed.conf && '
            "(chronyc reload sources || systemctl restart chrony)"
        )
        argv = ["sh", "-c", script, "chrony", self.path(STAMPS["chrony"])]
        result = self.ex.run(argv, check=False)
        if result.returncode != 0:
            sudo = self.ex.run(["sudo", "-n", *argv], check=False)
            if sudo.returncode != 0:
                self.ex.run(["rm", "-f", self.path(STAMPS["chrony"])], check=False)
                raise ProvisionError(
                    f"cannot configure chrony on {self.host.name}: "
                    f"{(sudo.stderr or result.stderr).strip()[-300:]}. Install "
                    "chrony and let the login use sudo without a password, or "
                    f"add `{conf.strip()}` to its chrony configuration yourself"
                )
        return f"chrony points at {self.opt.chrony_server}"

    def shaping(self) -> str | None:
        done = []
        for network, profile in self.opt.shape.items():
            iface = self.host.interface(network)
            if iface is None:
                raise ProvisionError(
                    f"{self.host.name} has no interface on {network} to shape; "
                    "add it to the inventory or leave the network out of --shape"
                )
            detail = self._shape(iface.ifname, profile)
            if detail is not None:
                done.append(f"{iface.ifname}: {detail}")
        return "; ".join(done) if done else None

    def _tc(self, argv: list[str], check: bool = True) -> CommandError | None:
        privileged = (self.host.ansible_user or "root") == "root"
        full = argv if privileged else ["sudo", "-n", *argv]
        result = self.ex.run(full, check=False)
        if result.returncode == 0:
            return None
        error = CommandError(full, self.ex.where, result.returncode, result.stderr)
        if check:
            raise ProvisionError(
                f"shaping on {self.host.name} failed: {error}. tc needs root: log "
                "in as root or allow `sudo -n tc`"
            )
        return error

    def _netem_leaf(self, dev: str, profile: LinkProfile) -> CommandError | None:
        limit = shaping.netem_limit(
            profile.uplink_mbit, profile.delay_ms, profile.jitter_ms
        )
        leaf = shaping.netem_leaf(dev, profile.delay_ms, profile.jitter_ms, limit=limit)
        return self._tc(leaf, check=False)

    def _shape(self, dev: str, profile: LinkProfile) -> str | None:
        wanted_bit = shaping.rate_bits(profile.uplink_mbit)
        shown = self.ex.run(shaping.class_show(dev), check=False).stdout
        classes = shaping.parse_class_show(shown)
        qdiscs = shaping.parse_qdisc_show(
            self.ex.run(shaping.qdisc_show(dev), check=False).stdout
        )
        delay = next((q.delay_ms for q in qdiscs if q.kind == "netem"), None)
        rate_ok = any(
            c.classid == shaping.CLASS_ID and c.rate_bit == wanted_bit for c in classes
        )
        delay_ok = (delay or 0.0) == profile.delay_ms
        if rate_ok and delay_ok:
            return None
        if rate_ok and self._netem_leaf(dev, profile) is not None:
            return None  # netem is missing here: reported when the rate was set
        root = next((q for q in qdiscs if q.parent == "root"), None)
        if root is not None and root.kind != "htb":
            self._tc(shaping.qdisc_del_root(dev), check=False)
        for argv in shaping.egress_shaping(
            dev, profile.uplink_mbit, htb_root_present=root is not None and
            root.kind == "htb",
        ):  # fmt: skip
            self._tc(argv)
        detail = f"uplink shaped to {profile.uplink_mbit:g} Mbit/s"
        if profile.needs_delay:
            error = self._netem_leaf(dev, profile)
            if error is None:
                detail += f", delay {profile.delay_ms:g} ms"
            else:
                detail += (
                    f"; delay NOT applied (netem unavailable on {self.host.name}: "
                    f"{error.stderr.strip()[-120:]})"
                )
        return detail

    def run(self) -> None:
        self.probe()
        for name, action in (
            ("layout", self.layout),
            ("wheelhouse", self.wheelhouse),
            ("venv", self.venv),
            ("app", self.app),
            ("tls", self.ca),
            ("supernode-key", self.supernode_key),
            ("chrony", self.chrony),
            ("shaping", self.shaping),
        ):
            self.step(name, action)


def provision_host(
    host: Host,
    connect: ExecutorFactory,
    options: ProvisionOptions,
    locks: _MachineLocks,
    progress: Progress,
) -> HostResult:
    """Provision one host; any failure becomes this host's result."""
    started = time.monotonic()
    steps: list[StepResult] = []
    try:
        executor = connect()
        worker = _HostProvisioner(host, executor, options, locks, progress)
        steps = worker.steps
        worker.run()
    except Exception as err:  # noqa: BLE001 - one host's failure is its result
        kind = str(getattr(err, "kind", "")) or "failed"
        return HostResult(
            host.name, tuple(steps), time.monotonic() - started, str(err), kind
        )
    finally:
        close = getattr(locals().get("executor"), "close", None)
        if callable(close):
            close()
    return HostResult(host.name, tuple(steps), time.monotonic() - started)


def provision(
    inventory: Inventory,
    connectors: Mapping[str, ExecutorFactory],
    options: ProvisionOptions,
    progress: Progress = lambda _: None,
    hosts: Sequence[Host] | None = None,
) -> ProvisionReport:
    """Provision ``hosts`` (default: every client) in a thread pool."""
    started = time.monotonic()
    targets = list(hosts if hosts is not None else inventory.clients)
    locks = _MachineLocks()
    with ThreadPoolExecutor(
        max_workers=max(1, min(options.parallel, len(targets)))
    ) as pool:
        futures = [
            pool.submit(provision_host, h, connectors[h.name], options, locks, progress)
            for h in targets
        ]
        results = tuple(f.result() for f in futures)
    keys = {
        h.name: str(options.server_dir / "supernode-keys" / f"{h.name}.pub")
        for h in targets
    }
    return ProvisionReport(
        results, time.monotonic() - started, str(options.wheelhouse.path), keys
    )


def describe(report: ProvisionReport) -> str:
    """A per-host summary and the overall verdict."""
    lines = []
    for host in report.hosts:
        if host.error:
            lines.append(f"  {host.host}: FAILED ({host.error_kind}): {host.error}")
            continue
        changed = ", ".join(host.changed) or "nothing to do"
        lines.append(f"  {host.host}: ok in {host.seconds:.1f} s ({changed})")
    failed = [h.host for h in report.hosts if not h.ok]
    verdict = (
        f"{len(report.hosts) - len(failed)}/{len(report.hosts)} host(s) provisioned "
        f"in {report.seconds:.1f} s"
    )
    if report.nothing_to_do and not failed:
        verdict += "; nothing to do"
    if failed:
        verdict += f"; failed: {', '.join(failed)}"
    return "\n".join([*lines, verdict])
