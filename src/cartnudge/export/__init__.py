"""The owner's sheet: a shop's carts as CSV or XLSX or in a Google Sheet, with signed links
back to the dashboard, on demand and every night."""
