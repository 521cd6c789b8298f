"""Pure argv builders (Flower, ip, tc, iptables, host checks) and their parsers."""
