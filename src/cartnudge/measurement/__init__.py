"""Measurement: counters now; attribution, holdout statistics and reports later."""
