"""Check an inventory's hosts before a campaign: access, system, networks, clock, tools.

``check_inventory`` runs, in parallel over the server and every client, a fixed
list of read-only commands through each host's ``Executor`` and turns their
output into ``CheckRow`` results; ``render_text`` and ``CheckReport.to_json``
present them. The commands and the parsers of their output are the pure
functions of :mod:`testbed.commands.checkcmd`, table-tested without a host.

A failure on one host is rows for that host, never an exception: a host that
cannot be reached gets one row, a check that fails gets its row with what to
do, and the other hosts and checks proceed.
"""

from __future__ import annotations

import concurrent.futures
import math
import time
from collections.abc import Callable, Iterator, Mapping

from inventory.models import Host, Inventory
from testbed.lab.check_host import HostChecker, HostOutOfTime
from testbed.lab.check_report import CheckOptions, CheckReport, CheckRow, Role
from testbed.transport.executor import Executor

ExecutorFactory = Callable[[], Executor]


def access_rows(host: Host, inventory: Inventory, exc: BaseException) -> list[CheckRow]:
    """The rows of a host whose executor could not be made or could not log in.

    An exception with a ``kind`` attribute (``testbed.transport.ssh.SSHError``)
    says which step failed; any other exception is a failure of the host with its
    message.
    """
    name, where = host.name, f"{host.ansible_host}:{host.ansible_port}"
    path = inventory.path
    user = host.ansible_user or "the current user"
    kind = getattr(exc, "kind", None)
    if kind == "auth":
        return [
            CheckRow(name, "reachable", True, host.ansible_host),
            CheckRow(name, "host-key", True, "known"),
            CheckRow(
                name,
                "authenticated",
                False,
                user,
                f"{name} refused the login as {user}: {exc}; install your key "
                f"(`ssh-copy-id -p {host.ansible_port} {host.ansible_user or ''}"
                f"{'@' if host.ansible_user else ''}{host.ansible_host}`) or load it "
                f"in ssh-agent, or fix ansible_user in {path}",
            ),
        ]
    if kind in ("unknown-host-key", "changed-host-key"):
        if kind == "unknown-host-key":
            message = (
                f"the host key of {name} ({where}) is not in known_hosts: {exc}; "
                "compare the fingerprint with the one shown on the host's console "
                "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), then rerun "
                "with --accept-new to trust and save it"
            )
        else:
            message = (
                f"THE HOST KEY OF {name} ({where}) HAS CHANGED: {exc}; if {name} was "
                f"re-imaged, remove the old key (`ssh-keygen -R {host.ansible_host}`) "
                "and rerun with --accept-new; otherwise do not connect: someone may "
                "be intercepting the connection"
            )
        return [
            CheckRow(name, "reachable", True, host.ansible_host),
            CheckRow(name, "host-key", False, kind, message),
            CheckRow(
                name,
                "authenticated",
                None,
                None,
                "not tried: the host key was not accepted",
            ),
        ]
    if kind == "unreachable":
        message = (
            f"cannot reach {name} at {where}: {exc}; check that it is powered on and "
            f"on the management network (`ping {host.ansible_host}`), that sshd runs "
            f"there, and ansible_host/ansible_port of {name} in {path}"
        )
    else:
        what = f" ({kind})" if kind is not None else ""
        message = (
            f"connecting to {name} at {where} failed{what}: {exc}; fix that, then "
            "rerun the check"
        )
    return [CheckRow(name, "reachable", False, type(exc).__name__, message)]


def check_host(
    host: Host,
    role: Role,
    inventory: Inventory,
    factory: ExecutorFactory,
    options: CheckOptions,
) -> list[CheckRow]:
    """All rows of one host; never raises for problems of the host."""
    deadline_ns = time.monotonic_ns() + int(options.host_timeout_s * 1e9)
    try:
        executor = factory()
    except Exception as exc:  # noqa: BLE001 - the host's failure is its rows
        return access_rows(host, inventory, exc)
    try:
        checker = HostChecker(host, role, inventory, options, executor, deadline_ns)
        try:
            checker.check_access()
        except HostOutOfTime:
            message = (
                f"logging in to {host.name} took longer than the time limit of "
                f"{options.host_timeout_s:g} s; check its network and sshd"
            )
            return [CheckRow(host.name, "time-limit", False, None, message)]
        except Exception as exc:  # noqa: BLE001
            return access_rows(host, inventory, exc)
        checker.check_all()
        return checker.rows
    finally:
        close = getattr(executor, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001, S110 - a failing close loses no result
                pass


def _hosts_of(inventory: Inventory) -> Iterator[tuple[Host, Role]]:
    yield inventory.server, "server"
    for client in inventory.clients:
        yield client, "client"


def _rows_of(
    future: concurrent.futures.Future[list[CheckRow]], name: str
) -> list[CheckRow]:
    exc = future.exception()
    if exc is None:
        return future.result()
    message = (
        f"checking {name} stopped on an internal error: {exc!r}; this is a "
        "flowerbed bug, report it with this message"
    )
    return [CheckRow(name, "internal-error", False, None, message)]


def check_inventory(
    inventory: Inventory,
    executors: Mapping[str, ExecutorFactory],
    options: CheckOptions | None = None,
    progress: Callable[[str, tuple[CheckRow, ...]], None] | None = None,
) -> CheckReport:
    """Check the server and every client of ``inventory`` in parallel.

    Parameters
    ----------
    inventory
        The cluster to check; its server is checked too (give it a local
        executor when the check runs on the server).
    executors
        Host name -> zero-argument callable returning that host's ``Executor``;
        it may connect (and raise an error with a ``kind``) or connect lazily.
    options
        Thresholds and time limits; the defaults suit a Raspberry Pi lab.
    progress
        Called in the calling thread with each host's name and rows as soon as
        that host is done (for a progress display).

    Returns
    -------
    CheckReport
        The rows of every host; ``report.ok`` is False if any check failed.
    """
    options = options or CheckOptions()
    hosts = list(_hosts_of(inventory))
    workers = max(1, min(options.max_workers, len(hosts)))
    results: dict[str, list[CheckRow]] = {}
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix="inventory-check"
    )
    futures: dict[concurrent.futures.Future[list[CheckRow]], str] = {}
    for host, role in hosts:
        factory = executors.get(host.name)
        if factory is None:
            results[host.name] = [
                CheckRow(
                    host.name,
                    "reachable",
                    False,
                    None,
                    f"no executor for {host.name}: the caller gave none; this is a "
                    "flowerbed bug, report it",
                )
            ]
            continue
        future = pool.submit(check_host, host, role, inventory, factory, options)
        futures[future] = host.name
    # Hosts beyond the pool's size wait for a worker, so their limit starts later.
    waves = math.ceil(len(futures) / workers) if futures else 0
    # The grace covers a command that ignores its timeout (a hung SSH channel).
    budget_s = options.host_timeout_s * waves + min(5.0, options.host_timeout_s)
    try:
        for future in concurrent.futures.as_completed(futures, timeout=budget_s):
            name = futures[future]
            results[name] = _rows_of(future, name)
            if progress is not None:
                progress(name, tuple(results[name]))
    except TimeoutError:
        pass
    for name in futures.values():
        if name not in results:
            message = (
                f"checking {name} did not finish within {budget_s:g} s: a command "
                f"hangs there; log in to {name} and look for a stuck mount, DNS "
                "lookup or sshd"
            )
            results[name] = [CheckRow(name, "time-limit", False, None, message)]
    pool.shutdown(wait=False, cancel_futures=True)
    order = [host.name for host, _ in hosts]
    return CheckReport(
        inventory=str(inventory.path),
        hosts=tuple(order),
        roles=tuple(role for _, role in hosts),
        rows=tuple(row for name in order for row in results[name]),
        networks=inventory.network_names,
    )
