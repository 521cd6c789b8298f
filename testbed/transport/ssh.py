"""SSH executor: run, start, put and get on a lab host over paramiko, safely.

Safety model (docs/ssh.md): host keys are checked against a known_hosts file we
own, by :mod:`testbed.transport.known_hosts` (an unknown key is refused unless
``accept_new``, which saves it; a changed key is always refused); authentication
is by key file or SSH agent, passwords only in :func:`bootstrap_authorize`; every
remote argument is ``shlex.quote``-d and file transfers go through SFTP, never a
shell. The remote side needs only a POSIX ``sh``, coreutils and ``setsid``
(util-linux).
"""

from __future__ import annotations

import errno
import getpass
import logging
import re
import secrets
import select
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import paramiko

from testbed.commands.remote import (
    authorize_key_argv,
    remote_command,
    start_argv,
)
from testbed.transport.executor import DEFAULT_TIMEOUT_S, CommandError
from testbed.transport.known_hosts import (
    ChangedHostKeyError,
    SSHError,
    UnknownHostKeyError,
    describe_key,
    preferred_key_types,
    verify_host_key,
)
from testbed.transport.processes import ProcessError
from testbed.transport.remote_processes import SSHBackground

if TYPE_CHECKING:
    from inventory.models import Host

__all__ = [
    "AuthError",
    "ChangedHostKeyError",
    "SSHBackground",
    "SSHError",
    "SSHExecutor",
    "SSHTarget",
    "UnknownHostKeyError",
    "UnreachableError",
    "bootstrap_authorize",
    "install_authorized_key",
    "open_transport",
    "target_for_host",
]

log = logging.getLogger(__name__)

# Host names, IPv4 and IPv6 literals (with a zone). Nothing a known_hosts line
# or a pattern would read specially: no blanks, commas, wildcards or brackets.
_HOST = re.compile(r"[A-Za-z0-9._:%-]+")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
# What ssh(1) returns when the connection, not the command, failed.
_CONNECTION_LOST_RC = 255


# --------------------------------------------------------------------- errors


class UnreachableError(SSHError):
    """No SSH server answered: refused, timed out, no route, unknown name."""

    kind = "unreachable"


class AuthError(SSHError):
    """The server refused every key (or the bootstrap password) we offered."""

    kind = "auth"


# ------------------------------------------------------------------- targets


@dataclass(frozen=True)
class SSHTarget:
    """How to reach one inventory host over SSH (no secrets: keys are files).

    Parameters
    ----------
    name
        Inventory host name, used in messages and as ``SSHError.host``.
    host, port, user
        Address, SSH port and login user.
    key_file
        Private key file; ``None`` means the SSH agent's keys only.
    known_hosts
        The known_hosts file checked (and, with ``accept_new``, appended to).
    accept_new
        Trust an unknown host key on first use and save it. A changed key is
        still refused.
    connect_timeout_s
        Limit for TCP connect, SSH handshake and authentication.
    hash_known_hosts
        Save accepted keys with hashed host names (like ``HashKnownHosts yes``).
    """

    name: str
    host: str
    user: str
    known_hosts: Path
    port: int = 22
    key_file: Path | None = None
    accept_new: bool = False
    connect_timeout_s: float = 10.0
    hash_known_hosts: bool = False

    def __post_init__(self) -> None:
        """Validate the fields."""
        if not self.name.isprintable() or not self.name.strip():
            raise ValueError(f"SSH target: invalid name {self.name!r}")
        if not _HOST.fullmatch(self.host) or self.host.startswith("-"):
            raise ValueError(
                f"SSH target {self.name}: invalid host {self.host!r} (expected a "
                "host name or an IP address)"
            )
        if not _USER.fullmatch(self.user):
            raise ValueError(f"SSH target {self.name}: invalid user {self.user!r}")
        if not 0 < self.port < 65536:
            raise ValueError(
                f"SSH target {self.name}: port {self.port} not in 1..65535"
            )
        if self.connect_timeout_s <= 0:
            raise ValueError(
                f"SSH target {self.name}: connect_timeout_s must be > 0, "
                f"got {self.connect_timeout_s}"
            )

    @property
    def where(self) -> str:
        """E.g. ``host pi01 (192.168.50.11:22, user pi)``."""
        return f"host {self.name} ({self.host}:{self.port}, user {self.user})"

    @property
    def known_hosts_name(self) -> str:
        """The name known_hosts files use: ``host`` or ``[host]:port``."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def connect(self) -> SSHExecutor:
        """Open a connection (raising an :class:`SSHError`) and return its executor."""
        executor = SSHExecutor(self)
        executor.connect()
        return executor


def target_for_host(
    host: Host,
    known_hosts: Path,
    accept_new: bool = False,
    connect_timeout_s: float = 10.0,
) -> SSHTarget:
    """The :class:`SSHTarget` of an inventory host (no user: the local user, as ssh)."""
    return SSHTarget(
        name=host.name,
        host=host.ansible_host,
        user=host.ansible_user or getpass.getuser(),
        known_hosts=known_hosts,
        port=host.ansible_port,
        key_file=host.ssh_key_file,
        accept_new=accept_new,
        connect_timeout_s=connect_timeout_s,
    )


# ----------------------------------------------------------------- connecting


def _unreachable(target: SSHTarget, err: BaseException) -> UnreachableError:
    if isinstance(err, socket.gaierror):
        why = (
            f"cannot resolve host name {target.host!r} ({err.strerror}); check "
            "ansible_host in the inventory and DNS"
        )
    elif isinstance(err, ConnectionRefusedError):
        why = (
            f"connection refused on port {target.port}: the host is up but no sshd "
            "listens there; check that ssh is enabled on the image and the port "
            "(ansible_port)"
        )
    elif isinstance(err, TimeoutError):
        why = (
            f"no answer within {target.connect_timeout_s:g} s: check that the host "
            "is powered and on the network, its address, and firewalls"
        )
    elif isinstance(err, OSError) and err.errno in (
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
    ):
        why = (
            f"no route to host ({err.strerror}): check the address, that this "
            "machine has an interface on that network, and the cabling/WiFi"
        )
    elif isinstance(err, paramiko.SSHException | EOFError):
        why = (
            "the port answered but the SSH handshake failed or did not finish "
            f"within {target.connect_timeout_s:g} s ({err}); check that the port "
            "belongs to sshd, not another service"
        )
    else:
        why = f"{type(err).__name__}: {err}"
    return UnreachableError(target.name, f"{target.where} unreachable: {why}")


def _load_key(target: SSHTarget) -> paramiko.PKey:
    assert target.key_file is not None
    try:
        return paramiko.PKey.from_path(target.key_file)
    except FileNotFoundError as err:
        raise AuthError(
            target.name,
            f"key file {target.key_file} for {target.where} does not exist; "
            "fix key_file (ansible_ssh_private_key_file) or create one with ssh-keygen",
        ) from err
    except paramiko.PasswordRequiredException as err:
        raise AuthError(
            target.name,
            f"key file {target.key_file} is passphrase-protected; add it to the "
            "SSH agent (`ssh-add`) and leave key_file unset",
        ) from err
    except (paramiko.SSHException, ValueError, OSError) as err:
        raise AuthError(
            target.name,
            f"cannot read key file {target.key_file}: {type(err).__name__}; is it "
            "an OpenSSH private key?",
        ) from err


def _authenticate(
    transport: paramiko.Transport, target: SSHTarget, password: str | None
) -> None:
    tried: list[str] = []
    if password is not None:
        try:
            transport.auth_password(target.user, password)
        except paramiko.SSHException:
            pass
        if transport.is_authenticated():
            return
        tried.append("the bootstrap password")
    else:
        keys: list[tuple[str, paramiko.PKey]] = []
        if target.key_file is not None:
            keys.append((f"key file {target.key_file}", _load_key(target)))
        agent = paramiko.Agent()
        try:
            keys += [("an agent key", k) for k in agent.get_keys()]
            for label, key in keys:
                try:
                    transport.auth_publickey(target.user, key)
                except paramiko.SSHException:
                    pass
                if transport.is_authenticated():
                    return
                tried.append(f"{label} ({describe_key(key.get_name(), key.asbytes())})")
        finally:
            agent.close()
    offered = "; ".join(tried) if tried else "no key (no key_file and no agent keys)"
    raise AuthError(
        target.name,
        f"authentication failed for user {target.user!r} on {target.where}; tried "
        f"{offered}. Check the user (ansible_user) and the key "
        "(ansible_ssh_private_key_file); install the public key into the user's "
        "~/.ssh/authorized_keys (bootstrap_authorize with the image's password, "
        "or ssh-copy-id).",
    )


def open_transport(
    target: SSHTarget, password: str | None = None
) -> paramiko.Transport:
    """Connect, check the host key, authenticate; raise an :class:`SSHError`."""
    try:
        sock = socket.create_connection(
            (target.host, target.port), timeout=target.connect_timeout_s
        )
    except OSError as err:
        raise _unreachable(target, err) from err
    # Small request/reply packets: without this, Nagle + delayed ACK add ~40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    try:
        options = transport.get_security_options()
        options.key_types = preferred_key_types(target, options.key_types)
        transport.banner_timeout = target.connect_timeout_s
        transport.auth_timeout = target.connect_timeout_s
        try:
            transport.start_client(timeout=target.connect_timeout_s)
            # start_client returns quietly on timeout; this raises then.
            key = transport.get_remote_server_key()
        except (paramiko.SSHException, EOFError, OSError) as err:
            raise _unreachable(target, err) from err
        verify_host_key(target, key.get_name(), key.asbytes())
        _authenticate(transport, target, password)
    except BaseException:
        transport.close()
        raise
    transport.set_keepalive(15)
    return transport


# ------------------------------------------------------------------ executor


class SSHExecutor:
    """Runs commands on one SSH host over one reused, lazily re-opened connection."""

    def __init__(self, target: SSHTarget) -> None:
        self.target = target
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.Lock()
        self._sftp_lock = threading.Lock()

    def __repr__(self) -> str:
        """Say where, never how we authenticate."""
        return f"SSHExecutor({self.where})"

    @property
    def where(self) -> str:
        """E.g. ``host pi01 (192.168.50.11:22, user pi)``."""
        return self.target.where

    def connect(self) -> None:
        """Open the connection now (it also opens on first use)."""
        self._live_transport()

    def _live_transport(self) -> paramiko.Transport:
        with self._lock:
            if self._transport is None or not self._transport.is_active():
                if self._transport is not None:
                    self._transport.close()
                    self._sftp = None
                self._transport = open_transport(self.target)
            return self._transport

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._sftp is not None:
                self._sftp.close()
                self._sftp = None
            if self._transport is not None:
                self._transport.close()
                self._transport = None

    def __enter__(self) -> SSHExecutor:
        """Connect."""
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close."""
        self.close()

    def run(
        self,
        argv: Sequence[str],
        check: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` there; ``CommandError`` if it fails (``check``) or times out."""
        argv = list(argv)
        command = remote_command(argv, env, timeout)
        try:
            channel = self._live_transport().open_session(
                timeout=self.target.connect_timeout_s
            )
        except paramiko.SSHException as err:
            raise CommandError(
                argv, self.where, None, f"cannot open a session: {err}"
            ) from err
        try:
            channel.exec_command(command)
            channel.shutdown_write()
            stdout, stderr, finished = _drain(channel, timeout)
            if not finished:
                raise CommandError(
                    argv, self.where, None, stderr.decode(errors="replace"), timeout
                )
            returncode = channel.recv_exit_status()
        finally:
            channel.close()
        if returncode == -1:
            raise CommandError(
                argv,
                self.where,
                _CONNECTION_LOST_RC,
                stderr.decode(errors="replace")
                + "\nSSH connection lost before the command reported its exit status",
            )
        result = subprocess.CompletedProcess(
            argv,
            returncode,
            stdout.decode(errors="replace"),
            stderr.decode(errors="replace"),
        )
        if check and returncode != 0:
            raise CommandError(argv, self.where, returncode, result.stderr)
        return result

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log_path: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> SSHBackground:
        """Start ``argv`` detached in its own session, logging to ``log_path`` there.

        Beside the log: ``log_path.pid`` (process group id, for a later
        :meth:`attach`) and, once the command exits, ``log_path.rc`` (its exit
        code, 128+N if signal N ended it).
        """
        try:
            result = self.run(start_argv(argv, log_path, env, cwd), timeout=20.0)
        except CommandError as err:
            raise ProcessError(
                f"{name}: cannot start `{shlex.join(argv)}` on {self.where}: {err}"
            ) from err
        return SSHBackground(name, self, int(result.stdout.split()[-1]), log_path)

    def attach(self, name: str, log_path: str) -> SSHBackground:
        """The process started earlier with ``log_path`` (read from its ``.pid``)."""
        pid_text = self.run(["cat", "--", f"{log_path}.pid"]).stdout.strip()
        return SSHBackground(name, self, int(pid_text), log_path)

    def _sftp_client(self) -> paramiko.SFTPClient:
        transport = self._live_transport()
        with self._lock:
            channel = None if self._sftp is None else self._sftp.get_channel()
            if self._sftp is None or channel is None or channel.closed:
                self._sftp = paramiko.SFTPClient.from_transport(transport)
            if self._sftp is None:
                raise CommandError(["sftp"], self.where, None, "cannot open SFTP")
            return self._sftp

    def put(self, local: Path, remote: str, mode: int | None = None) -> None:
        """Copy ``local`` to ``remote`` via SFTP: temporary name, then rename."""
        what = ["sftp-put", str(local), remote]
        directory, slash, base = remote.rpartition("/")
        if not base:
            raise ValueError(f"remote path {remote!r} names a directory, not a file")
        tmp = f"{directory}{slash}.{base}.part-{secrets.token_hex(4)}"
        try:
            with self._sftp_lock:
                sftp = self._sftp_client()
                if directory:
                    _sftp_makedirs(sftp, directory)
                try:
                    sftp.put(str(local), tmp)
                    if mode is not None:
                        sftp.chmod(tmp, mode)
                    sftp.posix_rename(tmp, remote)
                except BaseException:
                    _sftp_remove_quietly(sftp, tmp)
                    raise
        except (OSError, paramiko.SSHException) as err:
            raise CommandError(
                what, self.where, 1, f"{type(err).__name__}: {err}"
            ) from err

    def get(self, remote: str, local: Path) -> None:
        """Copy ``remote`` to ``local`` via SFTP: temporary name, then rename."""
        what = ["sftp-get", remote, str(local)]
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.part-{secrets.token_hex(4)}")
        try:
            with self._sftp_lock:
                self._sftp_client().get(remote, str(tmp))
            tmp.replace(local)
        except (OSError, paramiko.SSHException) as err:
            tmp.unlink(missing_ok=True)
            raise CommandError(
                what, self.where, 1, f"{type(err).__name__}: {err}"
            ) from err


def _drain(
    channel: paramiko.Channel, timeout: float | None
) -> tuple[bytes, bytes, bool]:
    """Read stdout and stderr until the command ends or ``timeout`` passes."""
    deadline = None if timeout is None else time.monotonic() + timeout
    stdout, stderr = bytearray(), bytearray()
    while True:
        while channel.recv_ready():
            stdout += channel.recv(65536)
        while channel.recv_stderr_ready():
            stderr += channel.recv_stderr(65536)
        ended = channel.exit_status_ready() and channel.eof_received
        if (ended or channel.closed) and not (
            channel.recv_ready() or channel.recv_stderr_ready()
        ):
            return bytes(stdout), bytes(stderr), True
        remaining = 1.0 if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            return bytes(stdout), bytes(stderr), False
        select.select([channel], [], [], min(remaining, 1.0))


def _sftp_makedirs(sftp: paramiko.SFTPClient, directory: str) -> None:
    parts = directory.split("/")
    for i in range(1, len(parts) + 1):
        path = "/".join(parts[:i])
        if not path:
            continue
        try:
            sftp.stat(path)
        except FileNotFoundError:
            sftp.mkdir(path)


def _sftp_remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        sftp.remove(path)
    except (OSError, paramiko.SSHException):
        pass


# ------------------------------------------------------------------ bootstrap


def install_authorized_key(
    executor: SSHExecutor,
    public_key: str,
    authorized_keys: str = ".ssh/authorized_keys",
) -> bool:
    """Install ``public_key`` idempotently; return whether it was added.

    ``authorized_keys`` is relative to the login user's home unless absolute.
    """
    result = executor.run(authorize_key_argv(public_key, authorized_keys))
    return result.stdout.strip() == "added"


def bootstrap_authorize(
    target: SSHTarget,
    password: str,
    public_key: str,
    authorized_keys: str = ".ssh/authorized_keys",
) -> bool:
    """First contact: log in with ``password`` once and install ``public_key``.

    Host keys are checked as for any connection. The password is used for this
    one authentication only and appears in no message. Returns whether the key
    was added (False: it was already there).
    """
    executor = SSHExecutor(target)
    executor._transport = open_transport(target, password=password)
    try:
        return install_authorized_key(executor, public_key, authorized_keys)
    finally:
        executor.close()
