"""Host-key trust: known_hosts parsing, matching and writing, and accept or refuse.

Reads and writes OpenSSH's format (plain or hashed ``|1|`` names, ``host`` or
``[host]:port``, ``*``/``?``/``!`` patterns, ``@revoked``), so files written here
are read by ``ssh`` and vice versa. :func:`verify_host_key` is the one decision:
a known key passes, an unknown one is refused unless ``accept_new`` (which saves
it), a changed or revoked one is always refused. The :class:`SSHError` base lives
here, not in ``testbed.transport.ssh``, so this module needs nothing from that
one at run time; ``testbed.transport.ssh`` re-exports it with the host-key
errors.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import logging
import os
import re
import secrets
import shlex
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

log = logging.getLogger(__name__)


class HostKeyTarget(Protocol):
    """What host-key checks read of a host (``testbed.transport.ssh.SSHTarget``)."""

    @property
    def name(self) -> str:
        """The inventory name of the host, for errors."""
        ...

    @property
    def where(self) -> str:
        """Human-readable host, address and user, for messages."""
        ...

    @property
    def known_hosts(self) -> Path:
        """The known_hosts file checked (and appended to with ``accept_new``)."""
        ...

    @property
    def known_hosts_name(self) -> str:
        """The name known_hosts files use: ``host`` or ``[host]:port``."""
        ...

    @property
    def accept_new(self) -> bool:
        """Whether an unknown key is saved rather than refused."""
        ...

    @property
    def hash_known_hosts(self) -> bool:
        """Whether a saved key's host name is hashed (``|1|``)."""
        ...


# --------------------------------------------------------------------- errors


class SSHError(RuntimeError):
    """Connecting to an SSH host failed; ``kind`` names the failure for a table."""

    kind: ClassVar[str] = "ssh"

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        super().__init__(message)


class UnknownHostKeyError(SSHError):
    """The host's key is not in known_hosts and ``accept_new`` was not given."""

    kind = "unknown-host-key"

    def __init__(self, host: str, message: str, fingerprint: str) -> None:
        super().__init__(host, message)
        self.fingerprint = fingerprint


class ChangedHostKeyError(SSHError):
    """The host presents a key other than the one known_hosts holds for it."""

    kind = "changed-host-key"

    def __init__(self, host: str, message: str, known_hosts_line: int) -> None:
        super().__init__(host, message)
        self.known_hosts_line = known_hosts_line


# ------------------------------------------------------------------ host keys


def fingerprint_sha256(key_blob: bytes) -> str:
    """``SHA256:...`` fingerprint of a public key blob, as ``ssh-keygen -l`` prints."""
    digest = hashlib.sha256(key_blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def key_type_label(key_type: str) -> str:
    """``ssh-ed25519`` -> ``ED25519``, the label ``ssh-keygen -l`` prints."""
    labels = {"ssh-ed25519": "ED25519", "ssh-rsa": "RSA", "ssh-dss": "DSA"}
    if key_type in labels:
        return labels[key_type]
    if key_type.startswith("ecdsa-sha2-"):
        return "ECDSA"
    if key_type.startswith("sk-ssh-ed25519"):
        return "ED25519-SK"
    if key_type.startswith("sk-ecdsa"):
        return "ECDSA-SK"
    return key_type.upper()


def describe_key(key_type: str, key_blob: bytes) -> str:
    """E.g. ``ED25519 key SHA256:abc...``."""
    return f"{key_type_label(key_type)} key {fingerprint_sha256(key_blob)}"


@dataclass(frozen=True)
class KnownHostEntry:
    """One usable line of a known_hosts file that names our host."""

    line_number: int
    key_type: str
    key_blob: bytes


def _pattern_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):
        try:
            _, _, salt_b64, hash_b64 = pattern.split("|", 3)
            salt = base64.b64decode(salt_b64)
            expected = base64.b64decode(hash_b64)
        except (ValueError, TypeError):
            return False
        actual = hmac.new(salt, name.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(actual, expected)
    # OpenSSH patterns know only `*` and `?`; `[` is literal (`[host]:port`).
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern
    )
    return re.fullmatch(regex, name, flags=re.IGNORECASE) is not None


def _host_field_matches(field: str, name: str) -> bool:
    matched = False
    for pattern in field.split(","):
        if pattern.startswith("!"):
            if _pattern_matches(pattern[1:], name):
                return False
        elif _pattern_matches(pattern, name):
            matched = True
    return matched


def known_host_entries(text: str, name: str) -> list[KnownHostEntry]:
    """Entries of known_hosts ``text`` for ``name`` (``host`` or ``[host]:port``).

    ``@cert-authority`` lines are skipped; ``@revoked`` lines are returned with
    line numbers negated so the caller refuses those keys.
    """
    entries: list[KnownHostEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        revoked = fields[0] == "@revoked"
        if fields[0].startswith("@"):
            if not revoked:
                continue
            fields = fields[1:]
        if len(fields) < 3 or not _host_field_matches(fields[0], name):
            continue
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except ValueError:
            continue
        entries.append(KnownHostEntry(-number if revoked else number, fields[1], blob))
    return entries


def known_hosts_line(name: str, key_type: str, key_blob: bytes, hashed: bool) -> str:
    """The line to append to known_hosts for ``name`` (hashed like OpenSSH if asked)."""
    if hashed:
        salt = secrets.token_bytes(20)
        digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
        name = (
            f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
        )
    return f"{name} {key_type} {base64.b64encode(key_blob).decode()}\n"


_known_hosts_lock = threading.Lock()


def _append_known_host(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _known_hosts_lock, path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def rekey_hint(target: HostKeyTarget) -> str:
    """The commands that forget a re-imaged host's old key and learn the new one."""
    forget = shlex.join(
        ["ssh-keygen", "-R", target.known_hosts_name, "-f", str(target.known_hosts)]
    )
    return f"`{forget}`, then connect once with --accept-new"


def verify_host_key(target: HostKeyTarget, key_type: str, key_blob: bytes) -> None:
    """Accept, save (``accept_new``) or refuse the key the server presented.

    Raises
    ------
    UnknownHostKeyError
        No key for this host and ``accept_new`` is off.
    ChangedHostKeyError
        known_hosts holds another key for this host (or revokes this one).
    """
    try:
        text = target.known_hosts.read_text()
    except FileNotFoundError:
        text = ""
    name = target.known_hosts_name
    entries = known_host_entries(text, name)
    presented = describe_key(key_type, key_blob)
    for entry in entries:
        if entry.line_number < 0 and entry.key_blob == key_blob:
            raise ChangedHostKeyError(
                target.name,
                f"{target.where} presents {presented}, which line "
                f"{-entry.line_number} of {target.known_hosts} marks @revoked; "
                "refusing to connect.",
                -entry.line_number,
            )
    valid = [e for e in entries if e.line_number > 0]
    if any(e.key_type == key_type and e.key_blob == key_blob for e in valid):
        return
    if valid:
        same_type = [e for e in valid if e.key_type == key_type]
        old = (same_type or valid)[0]
        raise ChangedHostKeyError(
            target.name,
            f"HOST KEY CHANGED for {target.where}: it now presents {presented}, "
            f"but line {old.line_number} of {target.known_hosts} holds "
            f"{describe_key(old.key_type, old.key_blob)}. Either someone is "
            "intercepting the connection or the host was re-imaged. Refusing to "
            "connect, even with --accept-new. If you re-imaged it, forget the old "
            f"key with {rekey_hint(target)}.",
            old.line_number,
        )
    if not target.accept_new:
        raise UnknownHostKeyError(
            target.name,
            f"unknown host key for {target.where}: it presents {presented}, which "
            f"is not in {target.known_hosts}. Check the fingerprint on the host "
            "(`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on its console), "
            "then run again with --accept-new to trust and save it.",
            fingerprint_sha256(key_blob),
        )
    _append_known_host(
        target.known_hosts,
        known_hosts_line(name, key_type, key_blob, target.hash_known_hosts),
    )
    log.warning(
        "%s: trusted new host key %s (saved to %s)",
        target.where,
        presented,
        target.known_hosts,
    )


def preferred_key_types(target: HostKeyTarget, offered: Sequence[str]) -> list[str]:
    """Put the host key types known_hosts holds first, as OpenSSH does."""
    try:
        text = target.known_hosts.read_text()
    except FileNotFoundError:
        return list(offered)
    known = [e.key_type for e in known_host_entries(text, target.known_hosts_name)]
    wanted: list[str] = []
    for key_type in known:
        if key_type == "ssh-rsa":
            wanted += ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
        else:
            wanted.append(key_type)
    first = [t for t in dict.fromkeys(wanted) if t in offered]
    return first + [t for t in offered if t not in first]
