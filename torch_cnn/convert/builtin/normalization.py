"""Converters: normalization layers (to be written)."""
