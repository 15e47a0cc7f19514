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

# The loops: what each pass did, and how late the emails went.
WAITER_MOVES = Counter(
    "cartnudge_waiter_moves",
    "The waiter's moves on due carts: reminders decided, timers moved, carts given up, left.",
    ["move"],
)
SENDS = Counter(
    "cartnudge_sends",
    "What the sender did with the sends it claimed, by outcome.",
    ["outcome"],
)
SEND_LAG = Histogram(
    "cartnudge_send_lag_seconds",
    "From a reminder's due time (after quiet hours) to its hand-over to the mail route.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
)
LOOPS_PASS = Histogram(
    "cartnudge_loops_pass_seconds",
    "How long one pass of the loops (timers, waiter, sender) took.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
UNSUBSCRIBES = Counter(
    "cartnudge_unsubscribes",
    "Addresses unsubscribed, by how: the link's page, one-click, or the owner.",
    ["source"],
)
