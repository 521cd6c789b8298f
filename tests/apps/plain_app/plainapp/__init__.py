"""A plain Flower app: linear regression on random data, averaged with FedAvg."""
