"""Intake: verify, dedupe and apply every cart event from every source."""
