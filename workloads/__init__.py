"""Workloads a campaign trains: datasets made on the spot and the models that learn them."""
