"""The cart list: one row per cart, its lifecycle and its audit trail."""
