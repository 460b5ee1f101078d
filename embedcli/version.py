"""embedcli's version, on its own so that the bottom layer (``contract``) can stamp files
with it without importing the package's public API."""

__version__ = "0.1.0"
