"""testbed.transport.known_hosts: parsing and writing OpenSSH known_hosts lines.

How a real sshd's key is accepted, saved or refused on connect is tested end to
end in test_ssh.py.
"""

from __future__ import annotations

from testbed.transport.known_hosts import known_host_entries, known_hosts_line


def test_known_host_entries_match_plain_hashed_negated_and_port() -> None:
    blob = b"\x00\x00\x00\x0bssh-ed25519" + bytes(36)
    hashed = known_hosts_line("[10.0.0.5]:2222", "ssh-ed25519", blob, hashed=True)
    text = (
        "# comment\n"
        + known_hosts_line("10.0.0.5", "ssh-ed25519", blob, hashed=False)
        + hashed
        + "10.0.0.*,!10.0.0.9 ssh-rsa AAAA\n"
        + "@cert-authority * ssh-ed25519 AAAA\n"
    )
    assert [e.line_number for e in known_host_entries(text, "10.0.0.5")] == [2, 4]
    assert [e.line_number for e in known_host_entries(text, "[10.0.0.5]:2222")] == [3]
    assert known_host_entries(text, "10.0.0.9") == []
    assert hashed.startswith("|1|") and "10.0.0.5" not in hashed
