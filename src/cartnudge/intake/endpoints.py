"""The three webhook lanes. Order of checks: size, shop, signature, JSON, then the inbox.

Nothing is parsed before the signature over the raw bytes is verified, and nothing is
answered 2xx before the delivery is committed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cartnudge.clock import Clock, parse_instant
from cartnudge.config import MAX_BODY_BYTES
from cartnudge.http import json_response
from cartnudge.intake import stripe_checkout
from cartnudge.intake.events import Unapplicable
from cartnudge.intake.lanes import parse_payload
from cartnudge.intake.service import Delivery, Outcome
from cartnudge.intake.signatures import BadSignature, verify_shopify, verify_standard, verify_stripe
from cartnudge.intake.writer import StorageUnavailable
from cartnudge.measurement.metrics import WEBHOOKS_ACCEPTED, WEBHOOKS_REJECTED
from cartnudge.shops.cache import ShopCache
from cartnudge.shops.repository import ShopRecord

# The lanes are plain Starlette routes, not FastAPI ones: FastAPI's per-request parameter
# and dependency machinery costs more than verifying, parsing and storing a webhook. They
# are described in the OpenAPI document by hand (``openapi_paths``).
Endpoint = Callable[[Request], Awaitable[Response]]
routes: list[Route] = []
openapi_paths: dict[str, dict[str, Any]] = {}


def _lane(
    path: str, summary: str, operation: str, extra: dict[str, Any]
) -> Callable[[Endpoint], Endpoint]:
    def register(endpoint: Endpoint) -> Endpoint:
        routes.append(Route(path, endpoint, methods=["POST"], name=operation))
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", path)
        ]
        operation_doc = {
            "tags": ["webhooks"],
            "summary": summary,
            "operationId": operation,
            **extra,
            "parameters": parameters + extra["parameters"],
        }
        operation_doc["responses"] = {
            "200": {"description": "stored (or a replay); body says applied, duplicate or dead"},
            **extra["responses"],
        }
        openapi_paths[path] = {"post": operation_doc}
        return endpoint

    return register


class Refused(Exception):
    """A request answered with an error before anything was stored."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class Writer(Protocol):
    """Where a verified delivery goes: the in-process writer or the writer process."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    async def deliver(self, delivery: Delivery) -> Outcome: ...


class IntakeContext:
    """What the lanes need, built once at the composition root."""

    def __init__(self, shops: ShopCache, writer: Writer, clock: Clock) -> None:
        self.shops = shops
        self.writer = writer
        self.clock = clock


def context_of(request: Request) -> IntakeContext:
    context: IntakeContext = request.app.state.intake
    return context


def _documented(headers: dict[str, str], body: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAPI for a lane whose headers and body we read raw (signatures need the bytes)."""
    extra: dict[str, Any] = {
        "parameters": [
            {
                "name": name,
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": text,
            }
            for name, text in headers.items()
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": body or {"type": "object"}}},
        },
        "responses": {
            "401": {"description": "missing, wrong or stale signature; nothing stored"},
            "400": {"description": "signed body is not JSON; nothing stored"},
            "404": {"description": "unknown shop"},
            "413": {"description": "body over 1 MiB"},
            "503": {"description": "storage unavailable; retry"},
        },
    }
    return extra


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
        return await context.writer.deliver(delivery)
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


@dataclass(frozen=True, slots=True)
class LaneRules:
    """What differs between lanes; everything else is ``receive``."""

    source: str
    # (cache kind, key) that names the shop in this request
    shop_key: Callable[[Request], tuple[str, str]]
    # raises BadSignature; sees only the raw bytes and headers
    verify: Callable[[bytes, Request, ShopRecord], None]
    # (delivery id for dedupe, topic, source time to use when the payload has none)
    identify: Callable[[bytes, Any, Request], tuple[str, str, datetime | None]]
    # the answer for a delivery kept as a dead letter
    dead_status: int = 200


async def receive(request: Request, lane: LaneRules) -> Response:
    """Size, shop, signature, JSON, then the inbox; 2xx only after the commit."""
    context = context_of(request)
    try:
        body = await read_body(request)
        shop = await find_shop(context, *lane.shop_key(request))
        try:
            lane.verify(body, request, shop)
        except BadSignature as exc:
            raise Refused(401, "bad_signature", str(exc)) from exc
        payload = parse_json(body)
        now = context.clock()
        delivery_id, topic, source_time = lane.identify(body, payload, request)
        parsed = parse_payload(lane.source, topic, delivery_id, payload, shop, source_time or now)
        text = body.decode("utf-8", "replace")
        delivery = Delivery(shop, lane.source, delivery_id, topic or "?", text, parsed, now)
        outcome = await deliver(context, delivery)
    except Refused as refused:
        return refusal(lane.source, refused)
    return answer(lane.source, outcome, dead_status=lane.dead_status)


def _shopify_identity(
    body: bytes, _payload: Any, request: Request
) -> tuple[str, str, datetime | None]:
    headers = request.headers
    delivery_id = (
        headers.get("x-shopify-webhook-id")
        or headers.get("x-shopify-event-id")
        or body_digest(body)
    )
    topic = headers.get("x-shopify-topic", "").strip()
    return delivery_id, topic, _header_time(headers.get("x-shopify-triggered-at"))


def _stripe_identity(
    body: bytes, payload: Any, _request: Request
) -> tuple[str, str, datetime | None]:
    try:
        event_id = stripe_checkout.event_id(payload)
    except Unapplicable:
        event_id = body_digest(body)
    return event_id, _topic(payload), None


def _standard_headers(request: Request) -> dict[str, str]:
    return {
        name: value
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        if (value := request.headers.get(name)) is not None
    }


# Shopify retries anything but 2xx and drops subscriptions that keep failing; a dead letter
# is kept and replayable, so it is acknowledged.
SHOPIFY = LaneRules(
    source="shopify",
    shop_key=lambda request: ("shopify", request.headers.get("x-shopify-shop-domain", "")),
    verify=lambda body, request, shop: verify_shopify(
        body, request.headers.get("x-shopify-hmac-sha256"), shop.shopify_secret
    ),
    identify=_shopify_identity,
)
# Stripe expects 2xx for events an endpoint does not handle; those are kept as dead letters
# for the owner to see, not bounced back for days of retries.
STRIPE = LaneRules(
    source="stripe",
    shop_key=lambda request: ("slug", request.path_params["shop_slug"]),
    verify=lambda body, request, shop: verify_stripe(
        body, request.headers.get("stripe-signature"), shop.stripe_secret
    ),
    identify=_stripe_identity,
)
# Our own senders are developers: a delivery we kept but could not apply gets a 422 naming
# the problem (the dead letter can be replayed after their fix).
STOREFRONT = LaneRules(
    source="storefront",
    shop_key=lambda request: ("slug", request.path_params["shop_slug"]),
    verify=lambda body, request, shop: verify_standard(
        body, _standard_headers(request), shop.storefront_secrets
    ),
    # verified, so webhook-id is present
    identify=lambda _body, payload, request: (request.headers["webhook-id"], _topic(payload), None),
    dead_status=422,
)


@_lane(
    "/webhooks/shopify",
    "Shopify webhooks (checkouts, carts, orders, compliance)",
    "shopify_webhook",
    _documented(
        {
            "X-Shopify-Shop-Domain": "the shop, as name.myshopify.com",
            "X-Shopify-Hmac-Sha256": "base64 HMAC-SHA256 of the body with the app secret",
            "X-Shopify-Topic": "e.g. checkouts/update",
            "X-Shopify-Webhook-Id": "delivery id; a repeat is answered 200 and ignored",
        }
    ),
)
async def shopify_webhook(request: Request) -> Response:
    return await receive(request, SHOPIFY)


@_lane(
    "/webhooks/stripe/{shop_slug}",
    "Stripe Checkout events",
    "stripe_webhook",
    _documented({"Stripe-Signature": "t=<unix time>,v1=<hex HMAC-SHA256>; 300 s tolerance"}),
)
async def stripe_webhook(request: Request) -> Response:
    return await receive(request, STRIPE)


@_lane(
    "/webhooks/storefront/{shop_slug}",
    "Any storefront (Standard Webhooks)",
    "storefront_webhook",
    _documented(
        {
            "webhook-id": "message id; a repeat is answered as the first time and ignored",
            "webhook-timestamp": "unix seconds; 5 minutes tolerance",
            "webhook-signature": "v1,<base64 HMAC-SHA256>; several, space-separated",
        },
        {"$ref": "#/components/schemas/StorefrontEvent"},
    ),
)
async def storefront_webhook(request: Request) -> Response:
    return await receive(request, STOREFRONT)


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
