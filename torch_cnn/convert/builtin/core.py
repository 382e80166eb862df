"""Converters: core layers (to be written)."""
