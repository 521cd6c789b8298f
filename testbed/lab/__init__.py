"""Preparing a lab: inventory check, provisioning, wheelhouse, TLS, SSH access."""
