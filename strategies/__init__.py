"""Flower server strategies, one module per method, with the client-side pieces they need."""
