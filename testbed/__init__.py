"""Everything that acts on machines, in layers that import only downward.

cli -> campaign -> lab -> emulation -> transport -> commands (tests/test_imports.py).
"""
