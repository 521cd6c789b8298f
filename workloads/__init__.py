"""Workloads a campaign trains: datasets and the models that learn them."""

# The default app's datasets: the grey digits, Digits-5-lite (workloads/digits5.py)
# and multi-domain images from local archives (workloads/domain_files.py).
DATASETS = ("digits", "digits5", "domain-files")
