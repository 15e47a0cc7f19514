"""Signature checks over the raw request bytes. Each fails closed: no secret, no entry.

Stripe's SDK is imported when a Stripe signature is first checked or made, not before: it
is about 20 MiB of a process's memory, which a shop without Stripe never needs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

STRIPE_TOLERANCE_S = 300


class BadSignature(Exception):
    """The request is not provably from the shop's source; nothing about it is stored."""


def sign_shopify(body: bytes, secret: str) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_shopify(body: bytes, header: str | None, secret: str | None) -> None:
    if not secret or not header:
        raise BadSignature("missing Shopify HMAC or shop secret")
    if not hmac.compare_digest(sign_shopify(body, secret).encode(), header.strip().encode()):
        raise BadSignature("Shopify HMAC does not match")


def verify_stripe(body: bytes, header: str | None, secret: str | None) -> None:
    """Check ``Stripe-Signature`` with Stripe's own library (300 s tolerance)."""
    if not secret or not header:
        raise BadSignature("missing Stripe-Signature or endpoint secret")
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadSignature("body is not UTF-8") from exc
    import stripe

    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, STRIPE_TOLERANCE_S)
    except stripe.SignatureVerificationError as exc:
        raise BadSignature(f"Stripe signature: {exc.user_message or exc}") from exc


def verify_standard(body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    """Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).

    The header may carry several ``v1,…`` signatures and the shop may hold two secrets
    during a rotation; any valid pair is enough.
    """
    wanted = {
        name: headers[name]
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        if name in headers
    }
    if len(wanted) < 3:
        raise BadSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    usable = [secret for secret in secrets if secret]
    if not usable:
        raise BadSignature("the shop has no storefront secret")
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadSignature("body is not UTF-8") from exc
    last_error = "no matching signature"
    for secret in usable:
        try:
            Webhook(secret).verify(payload, wanted, json_parse=False)
            return
        except WebhookVerificationError as exc:
            last_error = str(exc)
        except (ValueError, TypeError) as exc:  # a malformed signature list
            raise BadSignature(f"malformed webhook-signature: {exc}") from exc
    raise BadSignature(last_error)


def sign_stripe(body: bytes, secret: str, timestamp: int) -> str:
    """A ``Stripe-Signature`` header, as Stripe would send it (for examples and tests)."""
    import stripe

    header: str = stripe.WebhookSignature.generate_signature_header(
        body.decode("utf-8"), secret, timestamp
    )
    return header


def sign_standard(body: bytes, msg_id: str, secret: str, timestamp: int) -> dict[str, str]:
    """Standard Webhooks headers for ``body`` (for examples, tests and benchmarks)."""
    from datetime import UTC, datetime

    signature = Webhook(secret).sign(
        msg_id, datetime.fromtimestamp(timestamp, UTC), body.decode("utf-8")
    )
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
