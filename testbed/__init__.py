"""Everything that acts on machines: executors, shaping, the emulated cluster, campaigns."""
