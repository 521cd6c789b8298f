"""TLS material for a lab's SuperLink: a cluster CA and a server certificate.

The CA and the server key stay on the server (mode 0600); nodes receive only the
CA certificate. The server certificate names every address the SuperLink listens
on (the server's address on each network under test, plus localhost), so a
SuperNode on any network verifies it. Files are reused while they still cover
those addresses and are more than 30 days from expiry.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from inventory.models import Inventory

VALID_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the server-side TLS files."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def tls_files(folder: Path) -> TlsFiles:
    """The TLS files kept in ``folder``."""
    return TlsFiles(
        folder / "ca.crt",
        folder / "ca.key",
        folder / "server.pem",
        folder / "server.key",
    )


def server_addresses(inventory: Inventory) -> list[ipaddress.IPv4Address]:
    """Every address a SuperLink of ``inventory`` may listen on."""
    found = [net.server_address for net in inventory.networks]
    if inventory.management is not None:
        found.append(inventory.management.server_address)
    found.append(ipaddress.IPv4Address("127.0.0.1"))
    return sorted(set(found))


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "flowerbed"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _covers(cert_path: Path, addresses: list[ipaddress.IPv4Address]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (FileNotFoundError, ValueError, x509.ExtensionNotFound):
        return False
    have = set(names.value.get_values_for_type(x509.IPAddress))
    fresh = cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE
    return fresh and set(addresses) <= have


def ensure_tls(inventory: Inventory, folder: Path) -> tuple[TlsFiles, bool]:
    """Create (or keep) the CA and server certificate; return them and whether
    anything was (re)generated."""
    files = tls_files(folder)
    addresses = server_addresses(inventory)
    now = dt.datetime.now(dt.UTC)
    changed = False
    if not (files.ca_cert.exists() and files.ca_key.exists()):
        ca_key = ec.generate_private_key(ec.SECP384R1())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"flowerbed CA {inventory.name}"))
            .issuer_name(_name(f"flowerbed CA {inventory.name}"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=VALID_DAYS * 2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(files.ca_key, ca_key)
        files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        files.server_cert.unlink(missing_ok=True)
        changed = True
    if changed or not _covers(files.server_cert, addresses):
        ca_key_loaded = serialization.load_pem_private_key(
            files.ca_key.read_bytes(), None
        )
        if not isinstance(ca_key_loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{files.ca_key} is not an EC key; delete {folder}")
        ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP384R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"flowerbed SuperLink {inventory.server.name}"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(a) for a in addresses] + [x509.DNSName("localhost")]
                ),
                False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .sign(ca_key_loaded, hashes.SHA256())
        )
        _write_key(files.server_key, key)
        files.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        changed = True
    return files, changed
