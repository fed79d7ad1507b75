"""The tool's version, in a module of its own that imports nothing (the engine records it)."""

__version__ = "0.7.0"
