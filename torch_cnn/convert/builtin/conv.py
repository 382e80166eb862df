"""Converters: conv layers (to be written)."""
