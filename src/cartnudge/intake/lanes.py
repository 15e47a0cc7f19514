"""One dispatcher from (source, topic, payload) to a canonical event: used by the
webhook lanes and again by ``events replay`` so a replay parses exactly as a delivery."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cartnudge.events import Unapplicable
from cartnudge.intake import csv_import, shopify, storefront, stripe_checkout
from cartnudge.intake.service import Parsed
from cartnudge.shops.repository import ShopRecord


def parse_payload(
    source: str,
    topic: str,
    external_id: str,
    payload: Any,
    shop: ShopRecord,
    triggered_at: datetime,
) -> Parsed:
    """The canonical event, or the ``Unapplicable`` reason it cannot be one."""
    try:
        if source == shopify.SOURCE:
            return shopify.parse(topic, external_id, payload, shop=shop, triggered_at=triggered_at)
        if source == stripe_checkout.SOURCE:
            return stripe_checkout.parse(payload, shop)
        if source == storefront.SOURCE:
            return storefront.parse(external_id, payload, shop=shop)
        if source == csv_import.SOURCE:
            return csv_import.parse_row(payload, external_id, shop)
    except Unapplicable as exc:
        return exc
    return Unapplicable(f"unknown source {source!r}")
