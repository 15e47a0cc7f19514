"""Process counters, exposed at ``/metrics`` in the Prometheus text format."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WEBHOOKS_REJECTED = Counter(
    "cartnudge_webhooks_rejected",
    "Webhook requests refused before anything was stored.",
    ["lane", "reason"],
)
WEBHOOKS_ACCEPTED = Counter(
    "cartnudge_webhooks_accepted",
    "Webhook deliveries committed (or recognised as replays) and acknowledged.",
    ["lane", "outcome"],
)

# Who held SQLite's write lock and for how long (and how long each waited for it): every
# webhook waits behind the holder, so this is where an ack latency tail is found first.
_TURN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
WRITE_TURN_HELD = Histogram(
    "cartnudge_sqlite_write_turn_held_seconds",
    "How long one writer held the SQLite write turn, by holder.",
    ["holder"],
    buckets=_TURN_BUCKETS,
)
WRITE_TURN_WAITED = Histogram(
    "cartnudge_sqlite_write_turn_waited_seconds",
    "How long one writer waited for the SQLite write turn, by holder.",
    ["holder"],
    buckets=_TURN_BUCKETS,
)
