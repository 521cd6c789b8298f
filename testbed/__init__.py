"""Everything that acts on machines, in layers that import only downward.

cli -> campaign -> lab -> emulation -> transport -> commands -> launch
(tests/test_imports.py; launch is node-side and imports no other testbed layer).
"""
