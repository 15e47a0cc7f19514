"""The three webhook lanes. Order of checks: size, shop, signature, JSON, then the inbox.

Nothing is parsed before the signature over the raw bytes is verified, and nothing is
answered 2xx before the delivery is committed.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from cartnudge.clock import Clock, parse_instant
from cartnudge.config import MAX_BODY_BYTES
from cartnudge.http import json_response
from cartnudge.intake import stripe_checkout
from cartnudge.intake.events import Unapplicable
from cartnudge.intake.lanes import parse_payload
from cartnudge.intake.service import Delivery, Outcome
from cartnudge.intake.signatures import BadSignature, verify_shopify, verify_standard, verify_stripe
from cartnudge.intake.writer import IngestWriter, StorageUnavailable
from cartnudge.measurement.metrics import WEBHOOKS_ACCEPTED, WEBHOOKS_REJECTED
from cartnudge.shops.cache import ShopCache
from cartnudge.shops.repository import ShopRecord

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class Refused(Exception):
    """A request answered with an error before anything was stored."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class IntakeContext:
    """What the lanes need, built once at the composition root."""

    def __init__(self, shops: ShopCache, writer: IngestWriter, clock: Clock) -> None:
        self.shops = shops
        self.writer = writer
        self.clock = clock


def get_context(request: Request) -> IntakeContext:
    context: IntakeContext = request.app.state.intake
    return context


Context = Annotated[IntakeContext, Depends(get_context)]


async def read_body(request: Request) -> bytes:
    """The raw body, refused with 413 as soon as it passes 1 MiB."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Refused(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Refused(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def find_shop(context: IntakeContext, kind: str, key: str) -> ShopRecord:
    shop = context.shops.cached(kind, key)
    if shop is None:
        try:
            if kind == "slug":
                shop = await run_in_threadpool(context.shops.by_slug, key)
            else:
                shop = await run_in_threadpool(context.shops.by_shopify_domain, key)
        except SQLAlchemyError as exc:
            raise Refused(503, "unavailable", "storage unavailable; retry later") from exc
    if shop is None:
        raise Refused(404, "unknown_shop", f"no shop {key!r}")
    return shop


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, "bad_json", f"malformed JSON: {exc}") from exc


def body_digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


async def deliver(context: IntakeContext, delivery: Delivery) -> Outcome:
    try:
        return await asyncio.wrap_future(context.writer.submit(delivery))
    except StorageUnavailable as exc:
        raise Refused(503, "unavailable", "storage unavailable; retry later") from exc


def answer(lane: str, outcome: Outcome, *, dead_status: int = 200) -> Response:
    WEBHOOKS_ACCEPTED.labels(lane, outcome.status).inc()
    status = dead_status if outcome.reason is not None else 200
    body: dict[str, Any] = {"status": outcome.status, "cart_id": outcome.cart_id}
    if outcome.reason is not None:
        body["reason"] = outcome.reason
    return json_response(body, status_code=status)


def refusal(lane: str, refused: Refused) -> Response:
    WEBHOOKS_REJECTED.labels(lane, refused.reason).inc()
    return json_response({"error": refused.message}, status_code=refused.status)


@router.post("/shopify", summary="Shopify webhooks (checkouts, carts, orders, compliance)")
async def shopify_webhook(
    request: Request,
    context: Context,
    x_shopify_shop_domain: Annotated[str | None, Header()] = None,
    x_shopify_hmac_sha256: Annotated[str | None, Header()] = None,
    x_shopify_topic: Annotated[str | None, Header()] = None,
    x_shopify_webhook_id: Annotated[str | None, Header()] = None,
    x_shopify_event_id: Annotated[str | None, Header()] = None,
    x_shopify_triggered_at: Annotated[str | None, Header()] = None,
) -> Response:
    try:
        body = await read_body(request)
        shop = await find_shop(context, "shopify", x_shopify_shop_domain or "")
        try:
            verify_shopify(body, x_shopify_hmac_sha256, shop.shopify_secret)
        except BadSignature as exc:
            raise Refused(401, "bad_signature", str(exc)) from exc
        payload = parse_json(body)
        now = context.clock()
        topic = (x_shopify_topic or "").strip()
        triggered = _header_time(x_shopify_triggered_at) or now
        delivery_id = x_shopify_webhook_id or x_shopify_event_id or body_digest(body)
        parsed = parse_payload("shopify", topic, delivery_id, payload, shop, triggered)
        outcome = await deliver(
            context,
            Delivery(
                shop,
                "shopify",
                delivery_id,
                topic or "?",
                body.decode("utf-8", "replace"),
                parsed,
                now,
            ),
        )
    except Refused as refused:
        return refusal("shopify", refused)
    # Shopify retries anything but 2xx and drops subscriptions that keep failing; a dead
    # letter is kept and replayable, so it is acknowledged.
    return answer("shopify", outcome)


@router.post("/stripe/{shop_slug}", summary="Stripe Checkout events")
async def stripe_webhook(
    shop_slug: str,
    request: Request,
    context: Context,
    stripe_signature: Annotated[str | None, Header()] = None,
) -> Response:
    try:
        body = await read_body(request)
        shop = await find_shop(context, "slug", shop_slug)
        try:
            verify_stripe(body, stripe_signature, shop.stripe_secret)
        except BadSignature as exc:
            raise Refused(401, "bad_signature", str(exc)) from exc
        payload = parse_json(body)
        try:
            event_id = stripe_checkout.event_id(payload)
        except Unapplicable:
            event_id = body_digest(body)
        topic = _topic(payload)
        now = context.clock()
        parsed = parse_payload("stripe", topic, event_id, payload, shop, now)
        outcome = await deliver(
            context,
            Delivery(
                shop,
                "stripe",
                event_id,
                topic,
                body.decode("utf-8"),
                parsed,
                now,
            ),
        )
    except Refused as refused:
        return refusal("stripe", refused)
    # Stripe expects 2xx for events an endpoint does not handle; those are kept as dead
    # letters for the owner to see, not bounced back for days of retries.
    return answer("stripe", outcome)


@router.post("/storefront/{shop_slug}", summary="Any storefront (Standard Webhooks)")
async def storefront_webhook(
    shop_slug: str,
    request: Request,
    context: Context,
    webhook_id: Annotated[str | None, Header()] = None,
    webhook_timestamp: Annotated[str | None, Header()] = None,
    webhook_signature: Annotated[str | None, Header()] = None,
) -> Response:
    try:
        body = await read_body(request)
        shop = await find_shop(context, "slug", shop_slug)
        headers = {
            name: value
            for name, value in (
                ("webhook-id", webhook_id),
                ("webhook-timestamp", webhook_timestamp),
                ("webhook-signature", webhook_signature),
            )
            if value is not None
        }
        try:
            verify_standard(body, headers, shop.storefront_secrets)
        except BadSignature as exc:
            raise Refused(401, "bad_signature", str(exc)) from exc
        payload = parse_json(body)
        assert webhook_id is not None  # verified above
        topic = _topic(payload)
        now = context.clock()
        parsed = parse_payload("storefront", topic, webhook_id, payload, shop, now)
        outcome = await deliver(
            context,
            Delivery(
                shop,
                "storefront",
                webhook_id,
                topic,
                body.decode("utf-8"),
                parsed,
                now,
            ),
        )
    except Refused as refused:
        return refusal("storefront", refused)
    # Our own senders are developers: a delivery we kept but could not apply gets a 422
    # naming the problem (the dead letter can be replayed after their fix).
    return answer("storefront", outcome, dead_status=422)


def _topic(payload: Any) -> str:
    topic = payload.get("type") if isinstance(payload, dict) else None
    return str(topic)[:64] if topic else "?"


def _header_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parse_instant(value)
    except ValueError:
        return None
