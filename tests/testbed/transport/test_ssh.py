"""testbed.transport.ssh against a real OpenSSH sshd started on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.transport.executor import Background, CommandError, Executor
from testbed.transport.known_hosts import ChangedHostKeyError, UnknownHostKeyError
from testbed.transport.processes import ProcessError, read_stamped_log, stop_all
from testbed.transport.ssh import (
    AuthError,
    SSHError,
    SSHExecutor,
    SSHTarget,
    UnreachableError,
    bootstrap_authorize,
    install_authorized_key,
)

SSHD = Path("/usr/sbin/sshd")
pytestmark = pytest.mark.skipif(
    not SSHD.exists() or shutil.which("ssh-keygen") is None,
    reason="needs openssh-server (/usr/sbin/sshd) and ssh-keygen",
)


# ------------------------------------------------------------------ fixtures


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fbssh-test", "-f", path],
        check=True,
    )
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fingerprint(pub: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-lf", pub], check=True, capture_output=True, text=True
    ).stdout
    return out.split()[1]


@dataclass(frozen=True)
class Sshd:
    port: int
    dir: Path
    host_pub: Path
    client_key: Path
    authorized_keys: Path

    def known_hosts(self, tmp: Path) -> Path:
        path = tmp / "known_hosts"
        key_type, blob = self.host_pub.read_text().split()[:2]
        path.write_text(f"[127.0.0.1]:{self.port} {key_type} {blob}\n")
        return path

    def target(self, known_hosts: Path, **kw: object) -> SSHTarget:
        args: dict[str, object] = {
            "name": "testhost",
            "host": "127.0.0.1",
            "port": self.port,
            "user": "root",
            "key_file": self.client_key,
            "known_hosts": known_hosts,
            "connect_timeout_s": 5.0,
        }
        args.update(kw)
        return SSHTarget(**args)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    d = tmp_path_factory.mktemp("sshd")
    host_key = _keygen(d / "host_ed25519")
    client_key = _keygen(d / "client_ed25519")
    authorized = d / "authorized_keys"
    authorized.write_text((d / "client_ed25519.pub").read_text())
    port = _free_port()
    config = d / "sshd_config"
    config.write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {d}/sshd.pid
AuthorizedKeysFile {authorized}
StrictModes no
UsePAM no
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
MaxSessions 30
Subsystem sftp internal-sftp
LogLevel ERROR
SetEnv SHLVL=5
"""
    )
    # SHLVL>1 stops bash from sourcing root's ~/.bashrc for every command (bash
    # does so when started by sshd); on this machine it runs `pyenv init`, 0.3 s.
    with (d / "sshd.log").open("w") as sshd_log:
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", config], stdout=sshd_log, stderr=sshd_log
        )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"sshd did not start: {(d / 'sshd.log').read_text()}")
        time.sleep(0.05)
    yield Sshd(port, d, d / "host_ed25519.pub", client_key, authorized)
    proc.terminate()
    proc.wait(timeout=5)


@pytest.fixture(scope="module")
def executor(
    sshd: Sshd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SSHExecutor]:
    known = sshd.known_hosts(tmp_path_factory.mktemp("kh"))
    with sshd.target(known).connect() as ex:
        yield ex


# --------------------------------------------------------------- run over ssh


def test_executor_satisfies_protocol(executor: SSHExecutor, sshd: Sshd) -> None:
    as_protocol: Executor = executor
    assert isinstance(as_protocol, Executor)
    assert executor.where == f"host testhost (127.0.0.1:{sshd.port}, user root)"


def test_run_passes_hostile_arguments_literally(
    executor: SSHExecutor, tmp_path: Path
) -> None:
    pwned = tmp_path / "PWNED"
    hostile = [
        f"a b; touch {pwned}",
        "$(id)",
        "`id`",
        "it's",
        '"dq"',
        "*",
        "~",
        "x\ny",
        f"$(touch {pwned})",
    ]
    result = executor.run(["printf", r"%s\n", *hostile])
    assert result.stdout == "".join(f"{h}\n" for h in hostile)
    assert not pwned.exists()


def test_run_passes_hostile_env_values_literally(
    executor: SSHExecutor, tmp_path: Path
) -> None:
    pwned = tmp_path / "PWNED-env"
    value = f"x'; touch {pwned}; echo '$(id) `id`"
    result = executor.run(
        ["sh", "-c", 'printf %s "$FB_VALUE"'], env={"FB_VALUE": value}
    )
    assert result.stdout == value
    assert not pwned.exists()


def test_run_exit_codes_and_errors(executor: SSHExecutor, sshd: Sshd) -> None:
    failing = ["sh", "-c", "echo out; echo oops >&2; exit 3"]
    result = executor.run(failing, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "oops\n")
    with pytest.raises(CommandError) as caught:
        executor.run(failing)
    assert caught.value.returncode == 3
    assert caught.value.where == f"host testhost (127.0.0.1:{sshd.port}, user root)"
    assert "oops" in str(caught.value) and "exit code 3" in str(caught.value)
    missing = executor.run(["fb-no-such-command-xyz"], check=False)
    assert missing.returncode == 127
    killed = executor.run(["sh", "-c", "kill -s KILL $$"], check=False, timeout=None)
    assert killed.returncode == 128 + signal.SIGKILL


def test_run_timeout_raises_and_the_remote_command_is_killed(
    executor: SSHExecutor,
) -> None:
    start = time.monotonic()
    with pytest.raises(CommandError) as caught:
        executor.run(["sleep", "31.4159"], timeout=0.5)
    assert caught.value.returncode is None and caught.value.timeout_s == 0.5
    assert 0.5 <= time.monotonic() - start < 2.0
    deadline = time.monotonic() + 5
    while subprocess.run(["pgrep", "-f", "sleep 31.4159"], check=False).returncode == 0:
        assert time.monotonic() < deadline, "remote command outlived its timeout"
        time.sleep(0.1)


def test_one_executor_serves_a_thread_pool(executor: SSHExecutor) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        outs = list(
            pool.map(lambda i: executor.run(["echo", str(i)]).stdout, range(12))
        )
    assert outs == [f"{i}\n" for i in range(12)]


def test_run_reconnects_after_the_connection_drops(sshd: Sshd, tmp_path: Path) -> None:
    with sshd.target(sshd.known_hosts(tmp_path)).connect() as ex:
        assert ex._transport is not None
        ex._transport.close()
        assert ex.run(["echo", "again"]).stdout == "again\n"


def test_run_reports_a_connection_lost_mid_command(sshd: Sshd, tmp_path: Path) -> None:
    with sshd.target(sshd.known_hosts(tmp_path)).connect() as ex:
        transport = ex._transport
        assert transport is not None
        threading.Timer(0.3, transport.close).start()
        start = time.monotonic()
        with pytest.raises(CommandError, match="connection lost") as caught:
            ex.run(["sleep", "5"], timeout=None)
    assert caught.value.returncode == 255 and time.monotonic() - start < 2.0


# ------------------------------------------------------------- start and stop


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie waiting for its reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait_for(predicate: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_start_stamps_log_and_stop_all_kills_the_whole_group(
    executor: SSHExecutor, tmp_path: Path
) -> None:
    log_path = tmp_path / "logs it's $(id)" / "node.log"
    script = (
        'echo "hello $FB_WHO"; echo err >&2; pwd; '
        "(trap '' TERM; exec sleep 60) & echo child $!; wait"
    )
    before = time.time_ns()
    bg = executor.start(
        "node", ["sh", "-c", script], str(log_path), env={"FB_WHO": "a b"}, cwd="/tmp"
    )
    assert isinstance(bg, Background)
    _wait_for(lambda: log_path.exists() and "child" in log_path.read_text())
    after = time.time_ns()

    lines = read_stamped_log(log_path)
    texts = [text for _, text in lines]
    assert texts[:3] == ["hello a b", "err", "/tmp"]
    assert all(before <= stamp <= after for stamp, _ in lines)
    child_pid = int(texts[3].split()[1])
    assert int(Path(f"{log_path}.pid").read_text()) == bg.pgid == os.getpgid(child_pid)
    assert bg.poll() is None and not bg.gone()
    bg.check_alive()
    assert executor.attach("node", str(log_path)).pgid == bg.pgid

    start = time.monotonic()
    stop_all([bg], grace_s=1.0)
    assert time.monotonic() - start >= 1.0  # the TERM-immune child needed SIGKILL
    assert bg.gone()
    assert not _running(child_pid)
    assert Path(f"{log_path}.rc").read_text().strip() == str(128 + signal.SIGTERM)


def test_check_alive_reports_exit_code_and_remote_log_tail(
    executor: SSHExecutor, tmp_path: Path
) -> None:
    log_path = tmp_path / "crash.log"
    bg = executor.start("crasher", ["sh", "-c", "echo boom; exit 4"], str(log_path))
    _wait_for(lambda: bg.poll() is not None)
    assert bg.poll() == 4
    with pytest.raises(ProcessError, match=r"crasher exited with status 4") as caught:
        bg.check_alive()
    assert "boom" in str(caught.value) and "testhost" in str(caught.value)
    _wait_for(bg.gone)
    assert not Path(f"{log_path}.fifo").exists()


# ------------------------------------------------------------------ put / get


def test_put_get_round_trip_with_hostile_path(
    executor: SSHExecutor, tmp_path: Path
) -> None:
    pwned = tmp_path / "PWNED-put"
    payload = os.urandom(300_000)
    local = tmp_path / "payload.bin"
    local.write_bytes(payload)
    remote = tmp_path / "up dir" / f"a b; touch {pwned} $(id)" / "it's.bin"

    executor.put(local, str(remote), mode=0o640)
    executor.put(local, str(remote), mode=0o640)  # overwrites atomically
    back = tmp_path / "back" / "copy.bin"
    executor.get(str(remote), back)

    assert remote.read_bytes() == payload and back.read_bytes() == payload
    assert remote.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in remote.parent.iterdir()) == ["it's.bin"]
    assert sorted(p.name for p in back.parent.iterdir()) == ["copy.bin"]
    assert not pwned.exists()


def test_get_missing_file_is_a_command_error(
    executor: SSHExecutor, tmp_path: Path
) -> None:
    with pytest.raises(CommandError, match="testhost"):
        executor.get(str(tmp_path / "nope"), tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ host keys


def test_unknown_host_key_is_refused_with_its_fingerprint(
    sshd: Sshd, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    with pytest.raises(UnknownHostKeyError) as caught:
        sshd.target(known).connect()
    err = caught.value
    assert (err.kind, err.host) == ("unknown-host-key", "testhost")
    assert err.fingerprint == _fingerprint(sshd.host_pub)
    assert f"ED25519 key {err.fingerprint}" in str(err)
    assert "--accept-new" in str(err)
    assert not known.exists()


@pytest.mark.parametrize("hashed", [False, True])
def test_accept_new_saves_the_key_then_plain_connect_works(
    sshd: Sshd, tmp_path: Path, hashed: bool
) -> None:
    known = tmp_path / "known_hosts"
    target = sshd.target(known, accept_new=True, hash_known_hosts=hashed)
    with target.connect() as ex:
        assert ex.run(["echo", "ok"]).stdout == "ok\n"
    saved = known.read_text()
    assert saved.startswith("|1|") is hashed and saved.count("\n") == 1
    found = subprocess.run(
        ["ssh-keygen", "-F", f"[127.0.0.1]:{sshd.port}", "-f", known],
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0, "OpenSSH does not recognise the saved line"

    with sshd.target(known).connect() as ex:
        assert ex.run(["echo", "again"]).stdout == "again\n"
    assert known.read_text() == saved


def test_changed_host_key_is_refused_even_with_accept_new(
    sshd: Sshd, tmp_path: Path
) -> None:
    old_pub = _keygen(tmp_path / "old_host").with_suffix(".pub")
    key_type, blob = old_pub.read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"# lab\n[127.0.0.1]:{sshd.port} {key_type} {blob}\n")
    before = known.read_text()

    with pytest.raises(ChangedHostKeyError) as caught:
        sshd.target(known, accept_new=True).connect()

    err = caught.value
    message = str(err)
    assert (err.kind, err.known_hosts_line) == ("changed-host-key", 2)
    assert f"line 2 of {known}" in message
    assert _fingerprint(old_pub) in message and _fingerprint(sshd.host_pub) in message
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}' -f {known}" in message
    assert known.read_text() == before


# ----------------------------------------------------- authentication, reach


def test_wrong_key_is_an_auth_error_without_key_material(
    sshd: Sshd, tmp_path: Path
) -> None:
    wrong = _keygen(tmp_path / "wrong")
    with pytest.raises(AuthError) as caught:
        sshd.target(sshd.known_hosts(tmp_path), key_file=wrong).connect()
    message = str(caught.value)
    assert caught.value.kind == "auth" and "'root'" in message and str(wrong) in message
    secret_lines = wrong.read_text().splitlines()[1:-1]
    assert secret_lines and not any(line in message for line in secret_lines)


def test_closed_port_is_unreachable_refused(sshd: Sshd, tmp_path: Path) -> None:
    target = sshd.target(sshd.known_hosts(tmp_path), port=_free_port())
    with pytest.raises(UnreachableError) as caught:
        target.connect()
    assert caught.value.kind == "unreachable" and "connection refused" in str(
        caught.value
    )
    assert isinstance(caught.value, SSHError)


def test_silent_port_is_unreachable_handshake_failed(
    sshd: Sshd, tmp_path: Path
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        target = sshd.target(
            sshd.known_hosts(tmp_path), port=port, connect_timeout_s=0.5
        )
        start = time.monotonic()
        with pytest.raises(UnreachableError, match="SSH handshake failed"):
            target.connect()
    assert time.monotonic() - start < 3.0


def test_wrong_bootstrap_password_is_an_auth_error_that_hides_it(
    sshd: Sshd, tmp_path: Path
) -> None:
    password = "hunter2-not-roots-password"
    pub = (sshd.client_key.with_suffix(".pub")).read_text()
    with pytest.raises(AuthError) as caught:
        bootstrap_authorize(sshd.target(sshd.known_hosts(tmp_path)), password, pub)
    assert "bootstrap password" in str(caught.value)
    assert password not in str(caught.value) and password not in repr(caught.value)


def test_install_authorized_key_is_idempotent_and_grants_access(
    executor: SSHExecutor, sshd: Sshd, tmp_path: Path
) -> None:
    new_key = _keygen(tmp_path / "newcomer")
    pub = new_key.with_suffix(".pub").read_text()
    target = sshd.target(sshd.known_hosts(tmp_path), key_file=new_key)
    with pytest.raises(AuthError):
        target.connect()
    path = str(sshd.authorized_keys)
    before = sshd.authorized_keys.read_text()

    assert install_authorized_key(executor, pub, path) is True
    assert install_authorized_key(executor, pub, path) is False

    after = sshd.authorized_keys.read_text()
    assert after == before + pub
    with target.connect() as ex:
        assert ex.run(["echo", "in"]).stdout == "in\n"
