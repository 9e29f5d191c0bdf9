"""The package version, in the lowest layer so that run folders and the server can stamp it
without importing the package facade (tests/architecture.py)."""

__version__ = "0.1.0"
