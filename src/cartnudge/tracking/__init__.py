"""Tracking: signed links in emails (click, unsubscribe) and what they record."""
