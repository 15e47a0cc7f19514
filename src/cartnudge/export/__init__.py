"""The owner's sheet: a shop's carts as CSV or XLSX, with signed links back to the
dashboard, on demand and every night."""
