"""The three webhook lanes. Order of checks: size, shop, signature, JSON, then the inbox.

Nothing is parsed before the signature over the raw bytes is verified, and nothing is
answered 2xx before the delivery is committed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from cartnudge.clock import Clock, parse_instant
from cartnudge.config import MAX_BODY_BYTES
from cartnudge.events import Unapplicable
from cartnudge.intake import stripe_checkout
from cartnudge.intake.lanes import parse_payload
from cartnudge.intake.service import Delivery, Outcome
from cartnudge.intake.signatures import BadSignature, verify_shopify, verify_standard, verify_stripe
from cartnudge.intake.writer import StorageUnavailable
from cartnudge.measurement.metrics import WEBHOOKS_ACCEPTED, WEBHOOKS_REJECTED
from cartnudge.shops.cache import ShopCache
from cartnudge.shops.repository import ShopRecord

# The lanes are one plain ASGI app (``Webhooks``), not FastAPI or Starlette routes: their
# per-request machinery (parameters, routing, Request and Response objects) cost more than
# verifying, parsing and storing a webhook. They are described in the OpenAPI document by
# hand (``openapi_paths``). Which lanes an app serves is chosen where it is composed
# (``cartnudge.app.create_app``).
MAX_DELIVERY_ID = 255  # inbox_events.external_id
MAX_TOPIC = 64  # inbox_events.topic


@dataclass(frozen=True)
class Lane:
    """A lane served at ``path`` (at most one ``{slug}``, at its end), and its OpenAPI."""

    path: str
    prefix: str | None  # the path before its slug, if it has one
    rules: LaneRules
    openapi: dict[str, Any]


def _lane(path: str, rules: LaneRules, summary: str, operation: str, extra: dict[str, Any]) -> Lane:
    params = re.findall(r"{(\w+)}", path)
    prefix = path[: path.index("{")] if params else None
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in params
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
    return Lane(path, prefix, rules, {"post": operation_doc})


def openapi_paths(lanes: Sequence[Lane]) -> dict[str, dict[str, Any]]:
    """The OpenAPI ``paths`` of these lanes."""
    return {lane.path: lane.openapi for lane in lanes}


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


def _documented(
    headers: dict[str, str], body: dict[str, Any] | None = None, *, dead_status: int = 200
) -> dict[str, Any]:
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
            "400": {
                "description": "signed body is not JSON, or its delivery id is over "
                f"{MAX_DELIVERY_ID} characters; nothing stored"
            },
            "404": {"description": "unknown shop"},
            "413": {"description": "body over 1 MiB"},
            "503": {"description": "storage unavailable; retry"},
        },
    }
    if dead_status != 200:
        extra["responses"][str(dead_status)] = {
            "description": "stored as a dead letter: the event cannot be applied (the answer "
            "says why); a repeat is answered the same"
        }
    return extra


@dataclass(frozen=True, slots=True)
class Inbound:
    """One webhook request as the lanes see it: lower-case headers, the slug in its path,
    and the body, read with the size limit."""

    headers: dict[str, str]
    slug: str
    body: bytes


Answer = tuple[int, dict[str, Any]]  # status and JSON body


async def read_body(receive: Receive, headers: dict[str, str]) -> bytes:
    """The raw body, refused with 413 as soon as it passes 1 MiB."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Refused(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refused(400, "disconnected", "the sender went away before the body ended")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Refused(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def find_shop(context: IntakeContext, kind: str, key: str) -> ShopRecord:
    if "\x00" in key:  # no shop has it, and PostgreSQL refuses it in a query
        raise Refused(404, "unknown_shop", f"no shop {key!r}")
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


def storable(
    delivery_id: str, topic: str, source_time: datetime | None
) -> tuple[str, str, datetime | None]:
    """The delivery id as the inbox can keep it (else 400: a sender's id that cannot be
    stored would be refused by PostgreSQL on every retry), the topic cut to fit."""
    if len(delivery_id) > MAX_DELIVERY_ID or "\x00" in delivery_id:
        raise Refused(400, "bad_id", f"delivery id: at most {MAX_DELIVERY_ID} characters, no NUL")
    return delivery_id, topic.replace("\x00", "")[:MAX_TOPIC], source_time


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


def answer(lane: str, outcome: Outcome, *, dead_status: int = 200) -> Answer:
    WEBHOOKS_ACCEPTED.labels(lane, outcome.status).inc()
    status = dead_status if outcome.reason is not None else 200
    body: dict[str, Any] = {"status": outcome.status, "cart_id": outcome.cart_id}
    if outcome.closed_cart_id is not None or outcome.not_closed is not None:
        # An order says which cart it closed, or why none.
        body["closed_cart_id"] = outcome.closed_cart_id
        if outcome.not_closed is not None:
            body["not_closed"] = outcome.not_closed
    if outcome.reason is not None:
        body["reason"] = outcome.reason
    return status, body


def refusal(lane: str, refused: Refused) -> Answer:
    WEBHOOKS_REJECTED.labels(lane, refused.reason).inc()
    return refused.status, {"error": refused.message}


@dataclass(frozen=True, slots=True)
class LaneRules:
    """What differs between lanes; everything else is ``receive``."""

    source: str
    # (cache kind, key) that names the shop in this request
    shop_key: Callable[[Inbound], tuple[str, str]]
    # raises BadSignature; sees only the raw bytes and headers
    verify: Callable[[Inbound, ShopRecord], None]
    # (delivery id for dedupe, topic, source time to use when the payload has none)
    identify: Callable[[Inbound, Any], tuple[str, str, datetime | None]]
    # the answer for a delivery kept as a dead letter
    dead_status: int = 200


async def receive(context: IntakeContext, inbound: Inbound, lane: LaneRules) -> Answer:
    """Shop, signature, JSON, then the inbox; 2xx only after the commit."""
    try:
        shop = await find_shop(context, *lane.shop_key(inbound))
        try:
            lane.verify(inbound, shop)
        except BadSignature as exc:
            raise Refused(401, "bad_signature", str(exc)) from exc
        body = inbound.body
        payload = parse_json(body)
        now = context.clock()
        delivery_id, topic, source_time = storable(*lane.identify(inbound, payload))
        parsed = parse_payload(lane.source, topic, delivery_id, payload, shop, source_time or now)
        text = body.decode("utf-8", "replace")
        delivery = Delivery(shop, lane.source, delivery_id, topic or "?", text, parsed, now)
        outcome = await deliver(context, delivery)
    except Refused as refused:
        return refusal(lane.source, refused)
    return answer(lane.source, outcome, dead_status=lane.dead_status)


class Webhooks:
    """The ASGI app for every path under ``/webhooks/``."""

    def __init__(self, context: IntakeContext, lanes: Sequence[Lane]) -> None:
        self.context = context
        self.exact = {lane.path: lane.rules for lane in lanes if lane.prefix is None}
        self.by_prefix = [(lane.prefix, lane.rules) for lane in lanes if lane.prefix is not None]

    def match(self, path: str) -> tuple[LaneRules, str] | None:
        lane = self.exact.get(path)
        if lane is not None:
            return lane, ""
        for prefix, candidate in self.by_prefix:
            if path.startswith(prefix):
                slug = path[len(prefix) :]
                if slug and "/" not in slug:
                    return candidate, slug
        return None

    async def __call__(self, scope: Scope, receive_: Receive, send: Send) -> None:
        found = self.match(scope["path"])
        if found is None:
            await _send(send, 404, {"error": "no such webhook path"})
            return
        if scope["method"] != "POST":
            await _send(send, 405, {"error": "webhooks are POSTed"}, [(b"allow", b"POST")])
            return
        lane, slug = found
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await read_body(receive_, headers)
        except Refused as refused:
            await _send(send, *refusal(lane.source, refused))
            return
        status, answer_body = await receive(self.context, Inbound(headers, slug, body), lane)
        await _send(send, status, answer_body)


async def _send(
    send: Send, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    content = orjson.dumps(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
        *(extra or ()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def _shopify_identity(inbound: Inbound, _payload: Any) -> tuple[str, str, datetime | None]:
    headers = inbound.headers
    delivery_id = (
        headers.get("x-shopify-webhook-id")
        or headers.get("x-shopify-event-id")
        or body_digest(inbound.body)
    )
    topic = headers.get("x-shopify-topic", "").strip()
    return delivery_id, topic, _header_time(headers.get("x-shopify-triggered-at"))


def _stripe_identity(inbound: Inbound, payload: Any) -> tuple[str, str, datetime | None]:
    try:
        event_id = stripe_checkout.event_id(payload)
    except Unapplicable:
        event_id = body_digest(inbound.body)
    return event_id, _topic(payload), None


def _standard_headers(inbound: Inbound) -> dict[str, str]:
    return {
        name: value
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        if (value := inbound.headers.get(name)) is not None
    }


# Shopify retries anything but 2xx and drops subscriptions that keep failing; a dead letter
# is kept and replayable, so it is acknowledged.
SHOPIFY = LaneRules(
    source="shopify",
    shop_key=lambda inbound: ("shopify", inbound.headers.get("x-shopify-shop-domain", "")),
    verify=lambda inbound, shop: verify_shopify(
        inbound.body, inbound.headers.get("x-shopify-hmac-sha256"), shop.shopify_secret
    ),
    identify=_shopify_identity,
)
# Stripe expects 2xx for events an endpoint does not handle; those are kept as dead letters
# for the owner to see, not bounced back for days of retries.
STRIPE = LaneRules(
    source="stripe",
    shop_key=lambda inbound: ("slug", inbound.slug),
    verify=lambda inbound, shop: verify_stripe(
        inbound.body, inbound.headers.get("stripe-signature"), shop.stripe_secret
    ),
    identify=_stripe_identity,
)
# Our own senders are developers: a delivery we kept but could not apply gets a 422 naming
# the problem (the dead letter can be replayed after their fix).
STOREFRONT = LaneRules(
    source="storefront",
    shop_key=lambda inbound: ("slug", inbound.slug),
    verify=lambda inbound, shop: verify_standard(
        inbound.body, _standard_headers(inbound), shop.storefront_secrets
    ),
    # verified, so webhook-id is present
    identify=lambda inbound, payload: (inbound.headers["webhook-id"], _topic(payload), None),
    dead_status=422,
)
SHOPIFY_LANE = _lane(
    "/webhooks/shopify",
    SHOPIFY,
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
STRIPE_LANE = _lane(
    "/webhooks/stripe/{shop_slug}",
    STRIPE,
    "Stripe Checkout events",
    "stripe_webhook",
    _documented({"Stripe-Signature": "t=<unix time>,v1=<hex HMAC-SHA256>; 300 s tolerance"}),
)
STOREFRONT_LANE = _lane(
    "/webhooks/storefront/{shop_slug}",
    STOREFRONT,
    "Any storefront (Standard Webhooks)",
    "storefront_webhook",
    _documented(
        {
            "webhook-id": "message id; a repeat is answered as the first time and ignored",
            "webhook-timestamp": "unix seconds; 5 minutes tolerance",
            "webhook-signature": "v1,<base64 HMAC-SHA256>; several, space-separated",
        },
        {"$ref": "#/components/schemas/StorefrontEvent"},
        dead_status=STOREFRONT.dead_status,
    ),
)


def _topic(payload: Any) -> str:
    topic = payload.get("type") if isinstance(payload, dict) else None
    return str(topic) if topic else "?"


def _header_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parse_instant(value)
    except ValueError:
        return None
