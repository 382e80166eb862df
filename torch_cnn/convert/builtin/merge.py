"""Converters: merge layers (to be written)."""
