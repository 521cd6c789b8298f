"""The warm launcher: a per-node zygote that forks one ``flwr-clientapp`` per message.

Node-side code: the modules here import only the standard library and Flower,
never the rest of flowerbed, so they run on a Pi or in a node's namespace as they
are (docs/warm-launcher.md).
"""
