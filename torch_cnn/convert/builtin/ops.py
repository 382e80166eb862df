"""Converters: ops layers (to be written)."""
