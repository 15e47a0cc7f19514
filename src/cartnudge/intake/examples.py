"""Correctly signed example deliveries for each lane: a newcomer's first event.

``cartnudge events send-example`` posts one to a running server; tests and benchmarks use
the same builders so that what we demonstrate is what we test.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from cartnudge.intake.signatures import sign_shopify, sign_standard, sign_stripe
from cartnudge.shops.repository import ShopRecord

LANES = ("storefront", "shopify", "stripe")


@dataclass(frozen=True, slots=True)
class ExampleRequest:
    path: str
    headers: dict[str, str]
    body: bytes


def storefront_event(
    *,
    cart_id: str,
    occurred_at: datetime,
    event_id: str | None = None,
    kind: str = "checkout_started",
    email: str | None = "shopper@example.com",
    order_id: str | None = None,
) -> dict[str, object]:
    return {
        "event_id": event_id or f"evt_{secrets.token_hex(8)}",
        "type": kind,
        "cart_id": cart_id,
        "occurred_at": occurred_at.isoformat(),
        "email": email,
        "first_name": "Alex",
        "locale": "en-GB",
        "timezone": "Europe/London",
        "currency": "GBP",
        "total": "64.00",
        "items": [
            {
                "sku": "MUG-BLUE",
                "title": "Blue enamel mug",
                "quantity": 2,
                "unit_price": "12.00",
                "image_url": "https://shop.example/img/mug-blue.jpg",
                "url": "https://shop.example/p/mug-blue",
            },
            {
                "sku": "TEA-EARL",
                "title": "Earl Grey, 250 g",
                "quantity": 1,
                "unit_price": "40.00",
                "image_url": None,
                "url": "https://shop.example/p/tea-earl",
            },
        ],
        "return_url": f"https://shop.example/cart/{cart_id}",
        "accepts_marketing": True,
        "order_id": order_id,
    }


def signed_storefront(
    shop: ShopRecord, event: dict[str, object], now: datetime, *, msg_id: str | None = None
) -> ExampleRequest:
    body = orjson.dumps(event)
    msg_id = msg_id or f"msg_{secrets.token_hex(10)}"
    headers = sign_standard(body, msg_id, shop.storefront_secrets[0], int(now.timestamp()))
    headers["content-type"] = "application/json"
    return ExampleRequest(f"/webhooks/storefront/{shop.slug}", headers, body)


def shopify_checkout(
    *, token: str, cart_token: str, updated_at: datetime, email: str = "shopper@example.com"
) -> dict[str, object]:
    """A checkout as recent API versions send it: ``token`` and ``cart_token``, no ``id``."""
    return {
        "token": token,
        "cart_token": cart_token,
        "email": email,
        "created_at": (updated_at - timedelta(minutes=3)).isoformat(),
        "updated_at": updated_at.isoformat(),
        "completed_at": None,
        "currency": "USD",
        "presentment_currency": "USD",
        "customer_locale": "en-US",
        "buyer_accepts_marketing": True,
        # The parts of the total, as Shopify states them: 398.00 of lines, 11.94 of tax.
        "total_line_items_price": "398.00",
        "subtotal_price": "398.00",
        "total_discounts": "0.00",
        "shipping_lines": [],
        "total_tax": "11.94",
        "total_price": "409.94",
        "abandoned_checkout_url": f"https://demo.myshopify.com/checkouts/{token}/recover",
        "line_items": [
            {
                "title": "IPod Nano - 8GB",
                "variant_title": "Red",
                "quantity": 1,
                "price": "199.00",
                "sku": "IPOD2008RED",
            },
            {
                "title": "IPod Nano - 8GB",
                "variant_title": "Pink",
                "quantity": 1,
                "price": "199.00",
                "sku": "IPOD2008PINK",
            },
        ],
        "customer": {"first_name": "Bob", "email": email},
    }


def signed_shopify(
    shop: ShopRecord, topic: str, payload: dict[str, object], *, webhook_id: str | None = None
) -> ExampleRequest:
    if not shop.shopify_domain or not shop.shopify_secret:
        raise ValueError(f"shop {shop.slug} has no Shopify domain and secret")
    body = orjson.dumps(payload)
    headers = {
        "content-type": "application/json",
        "x-shopify-topic": topic,
        "x-shopify-shop-domain": shop.shopify_domain,
        "x-shopify-hmac-sha256": sign_shopify(body, shop.shopify_secret),
        "x-shopify-webhook-id": webhook_id or secrets.token_hex(16),
        "x-shopify-api-version": "2025-10",
    }
    return ExampleRequest("/webhooks/shopify", headers, body)


def stripe_expired_event(
    *, session_id: str, created: datetime, email: str = "shopper@example.com"
) -> dict[str, object]:
    """A ``checkout.session.expired`` event: Stripe's Checkout Session object with
    ``status: "expired"`` in Stripe's Event envelope (no published sample exists)."""
    return {
        "id": f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": "2025-09-30.clover",
        "created": int(created.timestamp()),
        "type": "checkout.session.expired",
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {
            "object": {
                "id": session_id,
                "object": "checkout.session",
                "created": int((created - timedelta(hours=24)).timestamp()),
                "status": "expired",
                "mode": "payment",
                "currency": "eur",
                "amount_total": 5800,
                "customer_email": None,
                "customer_details": {"email": email, "name": "Alex Martin"},
                "locale": "fr",
                "consent": {"promotions": "opt_in", "terms_of_service": None},
                "after_expiration": {
                    "recovery": {
                        "enabled": True,
                        "allow_promotion_codes": False,
                        "url": f"https://buy.stripe.com/r/{session_id}",
                        "expires_at": int((created + timedelta(days=30)).timestamp()),
                    }
                },
                "recovered_from": None,
            }
        },
    }


def signed_stripe(shop: ShopRecord, event: dict[str, object], now: datetime) -> ExampleRequest:
    if not shop.stripe_secret:
        raise ValueError(f"shop {shop.slug} has no Stripe signing secret")
    body = orjson.dumps(event)
    headers = {
        "content-type": "application/json",
        "stripe-signature": sign_stripe(body, shop.stripe_secret, int(now.timestamp())),
    }
    return ExampleRequest(f"/webhooks/stripe/{shop.slug}", headers, body)


# One shopper per lane: three examples are three shoppers' carts, each reminded on its
# own, not one shopper's three carts, of which do-not-disturb lets only one be reminded.
EXAMPLE_SHOPPERS = {
    "storefront": "alex@example.com",
    "shopify": "bob@example.com",
    "stripe": "alex.martin@example.com",
}


def example_request(shop: ShopRecord, lane: str, now: datetime) -> ExampleRequest:
    """One fresh, signed example delivery for ``lane``."""
    tag = secrets.token_hex(6)
    email = EXAMPLE_SHOPPERS.get(lane, "")
    if lane == "storefront":
        event = storefront_event(cart_id=f"cart-{tag}", occurred_at=now, email=email)
        return signed_storefront(shop, event, now)
    if lane == "shopify":
        payload = shopify_checkout(
            token=f"chk{tag}", cart_token=f"crt{tag}", updated_at=now, email=email
        )
        return signed_shopify(shop, "checkouts/create", payload)
    if lane == "stripe":
        expired = stripe_expired_event(session_id=f"cs_test_{tag}", created=now, email=email)
        return signed_stripe(shop, expired, now)
    raise ValueError(f"unknown lane {lane!r}; choose one of {', '.join(LANES)}")
