"""Converters: pooling layers (to be written)."""
