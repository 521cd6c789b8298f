"""The warm launcher's pure parts: version guard, command and env builders, reports."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from testbed.launch import shim
from testbed.launch.guard import TESTED_FLWR_SERIES, warm_supported
from testbed.launch.wiring import (
    shim_env,
    shim_text,
    write_shim,
    zygote_argv,
    zygote_report,
)
from testbed.launch.zygote import masked, refusal, token_of

LAUNCH = Path(__file__).resolve().parents[3] / "testbed" / "launch"


@pytest.mark.parametrize(
    ("version", "ok", "says"),
    [
        ("1.42.0", True, "in the tested series 1.42"),
        ("1.42.3", True, "in the tested series 1.42"),
        ("1.43.0", False, "not in the tested series 1.42"),
        ("1.4.20", False, "not in the tested series"),
        ("2.42.0", False, "not in the tested series"),
        ("1.42.0rc1", False, "not a final release"),
        ("1.42", False, "not a final release"),
        ("", False, "not a final release"),
    ],
)
def test_warm_supported_only_on_tested_final_releases(
    version: str, ok: bool, says: str
) -> None:
    supported, reason = warm_supported(version)
    assert supported is ok and says in reason
    if not ok:
        assert reason.endswith("launching stock")


def test_tested_series_is_the_installed_flower() -> None:
    import flwr

    assert warm_supported(flwr.__version__) == (
        True,
        f"flwr {flwr.__version__} is in the tested series {TESTED_FLWR_SERIES[0]}",
    )


def test_zygote_argv() -> None:
    assert zygote_argv("/v/bin/python", "/run/n1/z.sock", ["torch", "numpy"]) == [
        "/v/bin/python", "-m", "testbed.launch.zygote", "--socket", "/run/n1/z.sock",
        "--preload", "torch", "--preload", "numpy", "--supported-flwr", "1.42",
    ]  # fmt: skip
    assert zygote_argv("py", "/s", supported_flwr=["1.41", "1.42"])[-4:] == [
        "--supported-flwr", "1.41", "--supported-flwr", "1.42",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "message"),
    [("z.sock", "absolute path"), ("/" + "d" * 107, "longer than 107 bytes")],
)
def test_socket_paths_a_unix_socket_cannot_have_are_refused(
    path: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        zygote_argv("py", path)
    with pytest.raises(ValueError, match=message):
        shim_env({}, "/shim", path)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v/bin:/usr/bin", "/shim:/v/bin:/usr/bin"),
        ("/shim:/v/bin", "/shim:/v/bin"),  # not twice
        ("", "/shim"),
    ],
)
def test_shim_env_puts_the_shim_first_and_names_the_socket(
    path: str, expected: str
) -> None:
    base = {"PATH": path, "FLWR_HOME": "/h"}
    env = shim_env(base, "/shim", "/run/z.sock")
    assert env == {"PATH": expected, "FLWR_HOME": "/h", shim.SOCKET_ENV: "/run/z.sock"}
    assert base["PATH"] == path  # the caller's mapping is left alone


def test_shim_text_is_the_stdlib_only_module_behind_a_shebang(tmp_path: Path) -> None:
    text = shim_text("/v/bin/python")
    first, _, body = text.partition("\n")
    assert first == "#!/v/bin/python -IS"
    assert body == (LAUNCH / "shim.py").read_text()
    path = write_shim(tmp_path / "d", "/v/bin/python")
    assert path.name == "flwr-clientapp" and path.read_text() == text
    assert path.stat().st_mode & 0o777 == 0o755
    with pytest.raises(ValueError, match="cannot go in a shebang"):
        shim_text("/my venv/bin/python")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_node_side_modules_import_only_stdlib_flower_and_each_other() -> None:
    import sys

    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    assert _imports(LAUNCH / "shim.py") <= stdlib  # shipped alone, run with -I -S
    for module in ("zygote.py", "guard.py", "wiring.py"):
        outside = _imports(LAUNCH / module) - stdlib - {"flwr"}
        assert outside <= {"testbed"}, (module, outside)
        text = (LAUNCH / module).read_text()
        assert "from testbed." not in text.replace("from testbed.launch", "")


def test_token_is_found_and_masked() -> None:
    assert token_of(["flwr-clientapp", "--token", "secret99", "--insecure"]) == (
        "secret99"
    )
    assert token_of(["x", "--token=abc"]) == "abc"
    assert token_of(["x"]) == ""
    assert masked("secret99") == "secr..." and masked("ab") == "..."


def test_refusal_names_what_differs() -> None:
    import os
    import sys

    real = str(Path(sys.prefix) / "bin" / "flwr-clientapp")
    env = {k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}
    body = {"v": 1, "ns": shim.namespaces(), "env": env, "real": real}
    assert refusal(body, os.getuid()) is None
    assert "uid" in str(refusal(body, os.getuid() + 1))
    assert "protocol" in str(refusal({**body, "v": 2}, os.getuid()))
    other_ns = {**shim.namespaces(), "net": "net:[1]"}
    assert "namespaces" in str(refusal({**body, "ns": other_ns}, os.getuid()))
    bad_env = {**env, "PYTHONHOME": "/elsewhere"}
    assert "PYTHONHOME" in str(refusal({**body, "env": bad_env}, os.getuid()))
    assert "flwr-clientapp is /bin/sh" in str(
        refusal({**body, "real": "/bin/sh"}, os.getuid())
    )


def test_zygote_report_reads_ready_forks_and_exits_from_a_stamped_log() -> None:
    lines = [
        {"event": "ready", "flwr_version": "1.42.0", "reason": "ok",
         "preloaded": {"torch": 1.5}, "preload_failed": {}},
        {"event": "fork", "pid": 10}, {"event": "exit", "pid": 10, "code": 0},
        {"event": "fork", "pid": 11}, {"event": "exit", "pid": 11, "code": -9},
        {"event": "refuse", "reason": "uid"},
    ]  # fmt: skip
    text = "\n".join(f"17965 {json.dumps(e)}" for e in lines) + "\nnoise {not json\n"

    report = zygote_report(text)

    assert report.as_manifest() == {
        "active": True, "reason": "ok", "flwr_version": "1.42.0", "forks": 2,
        "refused": 1, "failed_exits": 1, "preloaded": {"torch": 1.5},
        "preload_failed": {},
    }  # fmt: skip
    assert not zygote_report("").active
    assert "never became ready" in zygote_report("").reason
