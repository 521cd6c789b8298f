"""Everything that acts on machines: executors, shaping, emulation, campaigns."""
