"""Everything that acts on machines: executors, link shaping, the emulated cluster, campaigns."""
