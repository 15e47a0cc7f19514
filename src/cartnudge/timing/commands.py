"""``cartnudge rules …``: show, set, list and roll back a shop's reminder rules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cartnudge.shops.versioned_commands import document_app

if TYPE_CHECKING:
    from cartnudge.shops.versioned import DocumentKind
    from cartnudge.timing.rules import Rules


def _rules() -> DocumentKind[Rules]:
    from cartnudge.timing.service import RULES

    return RULES


rules_app = document_app(
    "rules",
    _rules,
    summary="A shop's reminder rules (a YAML document).",
    on_set="Open carts' timers move to what the new rules say.",
)
