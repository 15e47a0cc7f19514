"""Privacy: the consent ledger, data requests, erasure, retention and data keys."""
