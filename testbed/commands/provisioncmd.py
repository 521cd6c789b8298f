"""Pure builders of ``cluster provision``'s remote commands (the state probe, the
uv install) and the parser of the probe's output; table-tested without a host."""

from __future__ import annotations

# Remote files whose sha256 tells what is installed (relative to flowerbed_dir,
# except the wheelhouse's, which may be shared).
STAMPS = {
    "venv": "venv/.flowerbed-wheelhouse",
    "app": "app/.flowerbed-digest",
    "ca": "tls/ca.crt",
    "key": "keys/supernode.pub",
    "chrony": "chrony/flowerbed.conf",
}


def probe_argv(base: str, wheelhouse: str) -> list[str]:
    """One remote command printing ``sha256  path`` of every stamp, the boot id
    (which tells hosts sharing a disk apart from distinct machines) and the
    home directory."""
    script = (
        'test -d "$1/runs" && echo "layout ok"; '
        'sha256sum -- "$2/MANIFEST" 2>/dev/null; '
        'echo "boot_id $(cat /proc/sys/kernel/random/boot_id)"; echo "home $HOME"; '
        'cd "$1" 2>/dev/null && shift 2 && sha256sum -- "$@" 2>/dev/null; '
        "exit 0"
    )
    return ["sh", "-c", script, "probe", base, wheelhouse, *STAMPS.values()]


def parse_probe(text: str, wheelhouse: str) -> tuple[dict[str, str], str]:
    """Digests by stamp name (``wheelhouse`` included) and the boot id."""
    by_path = {v: k for k, v in STAMPS.items()}
    by_path[f"{wheelhouse}/MANIFEST"] = "wheelhouse"
    digests: dict[str, str] = {}
    boot_id = ""
    for line in text.splitlines():
        if line.startswith("boot_id "):
            boot_id = line.split(" ", 1)[1].strip()
            continue
        if line == "layout ok":
            digests["layout"] = "ok"
            continue
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[1] in by_path:
            digests[by_path[parts[1]]] = parts[0]
    return digests, boot_id


def uv_argv(uv: str, venv: str, wheelhouse: str, offline: bool) -> list[str]:
    """``uv pip sync`` of the wheelhouse's requirements into ``venv``."""
    argv = [
        uv, "pip", "sync", "--python", f"{venv}/bin/python",
        "--find-links", wheelhouse, "--reinstall-package", "flowerbed",
    ]  # fmt: skip
    if offline:
        argv.append("--no-index")
    return [*argv, f"{wheelhouse}/requirements.txt"]
