"""Timing: when a cart is due for its next look."""
