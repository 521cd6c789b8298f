"""Cluster description: typed models, the Ansible-style YAML loader and its validator."""
