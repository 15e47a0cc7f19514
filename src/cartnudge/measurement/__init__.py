"""Measurement: the counters, Today's tallies, and the statistics of an honest lift
(attribution, the holdout comparison and reports build on them)."""
