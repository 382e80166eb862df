"""Converters: spatial layers (to be written)."""
