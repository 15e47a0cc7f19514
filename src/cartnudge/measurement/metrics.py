"""Process counters, exposed at ``/metrics`` in the Prometheus text format."""

from __future__ import annotations

from prometheus_client import Counter

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
