"""Converters: activation layers (to be written)."""
