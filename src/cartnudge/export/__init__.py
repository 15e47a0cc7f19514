"""The owner's sheet: the carts as rows for a spreadsheet, written to a file or a Google Sheet."""
