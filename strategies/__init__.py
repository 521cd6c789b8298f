"""Flower server strategies, one module per method, with their client-side pieces."""
