"""cartnudge: abandoned-cart recovery engine."""

__version__ = "0.1.0"
