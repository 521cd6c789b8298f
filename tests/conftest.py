"""Session-wide test hygiene: state folders the tests' emulated clusters leave."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from testbed.emulated_ssh import STATE_ROOT


@pytest.fixture(scope="session", autouse=True)
def _forget_test_cluster_ssh_state() -> Iterator[None]:
    """Remove the SSH state (keys, sshd files) of clusters the tests created.

    ``cluster down`` keeps a cluster's host keys so a real user's nodes keep their
    identity; the tests' clusters are throwaway, so their state goes at the end.
    """
    before = set(STATE_ROOT.iterdir()) if STATE_ROOT.exists() else set()
    yield
    if STATE_ROOT.exists():
        for folder in set(STATE_ROOT.iterdir()) - before:
            shutil.rmtree(folder, ignore_errors=True)
