"""The conversational messaging gateway: its version here, everything else in the modules below.

The package is layered (README "Layout"; tests/structure/test_import_layers.py holds the map): a
module imports only from its own layer or lower ones.
"""
__version__ = "0.1.0"
