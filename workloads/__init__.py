"""Workloads a campaign trains: datasets and the models that learn them."""
