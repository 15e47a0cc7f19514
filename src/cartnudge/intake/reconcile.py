"""Pull what Stripe webhooks may have missed: Checkout Sessions listed through Stripe's API.

Each expired or completed session is wrapped as the event Stripe would have sent
(``checkout.session.expired`` / ``checkout.session.completed``) and goes through the
Stripe lane's own parser and ``ingest`` with source "stripe". Its event id is
``reconcile:{session}:{status}``, so running reconcile again stores nothing new, and its
cart key is the session id, so a real webhook for the same session lands on the same cart.

Every page is fetched before anything is written: an API error stores nothing.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import stripe
from sqlalchemy import Engine

from cartnudge.events import CartEvent, Unapplicable
from cartnudge.intake import stripe_checkout
from cartnudge.intake.backfill import apply_all
from cartnudge.intake.service import Delivery
from cartnudge.shops.repository import ShopRecord

SOURCE = stripe_checkout.SOURCE
API_KEY_ENV = "CARTNUDGE_STRIPE_API_KEY"
PAGE_SIZE = 100  # Stripe's largest page
HTTP_TIMEOUT_S = 30
# The session status we list, and the webhook event type it stands for.
STATUS_EVENTS = {
    "expired": stripe_checkout.EXPIRED,
    "complete": "checkout.session.completed",
}


class ReconcileError(Exception):
    """Stripe could not be asked (bad key, unreachable, refused); nothing was stored."""


def fetch_sessions(
    api_key: str, since: datetime, *, api_base: str | None = None
) -> list[dict[str, Any]]:
    """Every expired and completed Checkout Session created at or after ``since``.

    ``line_items`` are expanded on the list call (``data.line_items``) so carts get their
    items; Stripe includes the first page of each session's line items.
    """
    if not api_key.strip():
        raise ReconcileError(f"no Stripe API key: pass --api-key or set {API_KEY_ENV}")
    http = stripe.RequestsClient(timeout=HTTP_TIMEOUT_S)
    client = stripe.StripeClient(
        api_key.strip(),
        base_addresses={"api": api_base.rstrip("/")} if api_base else None,
        http_client=http,
    )
    sessions: list[dict[str, Any]] = []
    try:
        for status in STATUS_EVENTS:
            page = client.v1.checkout.sessions.list(
                params={
                    "created": {"gte": int(since.timestamp())},
                    "status": status,
                    "limit": PAGE_SIZE,
                    "expand": ["data.line_items"],
                }
            )
            sessions.extend(session.to_dict() for session in page.auto_paging_iter())
    except stripe.APIConnectionError as exc:
        cause = type(exc.__cause__).__name__ if exc.__cause__ else "network error"
        raise ReconcileError(
            f"could not reach Stripe at {api_base or 'api.stripe.com'} ({cause})"
        ) from exc
    except stripe.StripeError as exc:
        status_code = f" (HTTP {exc.http_status})" if exc.http_status else ""
        message = exc.user_message or str(exc) or type(exc).__name__
        raise ReconcileError(f"Stripe refused the request{status_code}: {message}") from exc
    finally:
        http.close()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
    return sessions


def synthetic_event(session: dict[str, Any]) -> dict[str, Any]:
    """The webhook event Stripe would have sent for ``session``, with a stable id.

    An expired session's event happens when it expired; a completed one's when it was
    created (the session object carries no completion time).
    """
    status = session.get("status")
    kind = STATUS_EVENTS.get(status) if isinstance(status, str) else None
    at = session.get("expires_at") if status == "expired" else session.get("created")
    return {
        "id": f"reconcile:{session.get('id')}:{status}",
        "object": "event",
        "type": kind or f"checkout.session.{status}",
        "created": at,
        "livemode": session.get("livemode"),  # test mode or live, as the session says
        "data": {"object": session},
    }


def deliveries(shop: ShopRecord, sessions: list[dict[str, Any]], now: datetime) -> list[Delivery]:
    out = []
    for session in sessions:
        event = synthetic_event(session)
        body = orjson.dumps(event, default=_wire).decode()
        try:
            # Parse the kept body, not the SDK's objects, so ``events replay`` agrees.
            parsed: CartEvent | Unapplicable = stripe_checkout.parse(orjson.loads(body), shop)
        except Unapplicable as exc:
            parsed = exc
        out.append(Delivery(shop, SOURCE, event["id"][:255], event["type"], body, parsed, now))
    return out


def _wire(value: Any) -> str:
    """The SDK turns Stripe's decimal strings into ``Decimal``; keep them as Stripe sent them."""
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot keep {type(value).__name__} in a JSON body")


def reconcile_stripe(
    engine: Engine,
    shop: ShopRecord,
    api_key: str,
    since: datetime,
    now: datetime,
    *,
    api_base: str | None = None,
) -> dict[str, Any]:
    """Fetch, then ingest; returns the same counts as ``import csv``."""
    sessions = fetch_sessions(api_key, since, api_base=api_base)
    tally = apply_all(engine, shop, deliveries(shop, sessions, now), now)
    return tally.summary(dry_run=False, unit="sessions")
