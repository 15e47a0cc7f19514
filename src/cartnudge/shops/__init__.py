"""Shops: who owns every row, with their webhook secrets and settings."""
