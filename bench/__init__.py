"""The intake benchmark: ``make bench`` (see bench/README.md)."""
