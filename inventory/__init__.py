"""Cluster description: typed models, the Ansible-style YAML loader, its validator."""
