"""Delivery: the sender's gates, the outbox loop and the email providers."""
