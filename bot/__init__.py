"""Nudge: usage -> owner -> summary -> nudge."""
