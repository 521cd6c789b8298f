"""Campaigns: the model, the run lifecycle, node sites, faults, resume, status."""
