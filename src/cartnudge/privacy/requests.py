"""Shopify's compliance requests, acted on by the privacy run.

Intake records each signed ``customers/data_request``, ``customers/redact`` and
``shop/redact`` as a pending request (and answers Shopify 200 at once); this module acts on
them one transaction each, well inside Shopify's 30 days. A request that fails is kept
with the error's kind and tried again on the next run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine

from cartnudge.db.models import RequestState
from cartnudge.db.session import writing
from cartnudge.events import email_key
from cartnudge.privacy.files import PrivacyFiles
from cartnudge.privacy.repository import PrivacyRepository
from cartnudge.privacy.service import Shopper, erase, erase_shop, export
from cartnudge.shops.repository import ShopRepository

log = logging.getLogger(__name__)

DATA_REQUEST = "customers/data_request"
CUSTOMER_REDACT = "customers/redact"
SHOP_REDACT = "shop/redact"
MAX_PER_RUN = 100  # requests are rare; a backlog is finished over the next runs


class BadRequest(ValueError):
    """The request's body does not say whom it is about."""


@dataclass(frozen=True, slots=True)
class Handled:
    request_id: int
    kind: str
    state: str


def shopper_of(body: str | None, orders_field: str) -> Shopper:
    """Whom a customer request names: the customer's address and the orders listed."""
    if body is None:
        raise BadRequest("the request's body is no longer kept")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the request's body is not JSON") from exc
    customer = payload.get("customer") if isinstance(payload, dict) else None
    address = customer.get("email") if isinstance(customer, dict) else None
    listed = payload.get(orders_field) if isinstance(payload, dict) else None
    refs = (
        tuple(str(o) for o in listed if isinstance(o, int | str))
        if isinstance(listed, list)
        else ()
    )
    try:
        return Shopper(email_key(address if isinstance(address, str) else None), refs)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


def process_pending(engine: Engine, now: datetime, files: PrivacyFiles) -> list[Handled]:
    """Act on pending (and earlier failed) requests, oldest first, each in its own
    transaction; what became of each."""
    handled: list[Handled] = []
    last_id = 0  # each request once per run, failed ones included
    for _ in range(MAX_PER_RUN):
        with writing(engine) as conn:
            repo = PrivacyRepository(conn)
            request = repo.claim_request(last_id)
            if request is None:
                break
            last_id = request.id
            try:
                with conn.begin_nested():
                    result = _act(conn, request, now, files)
            except Exception as exc:
                # An exception's text may quote the body: the row and the log keep its kind.
                error = str(exc) if isinstance(exc, BadRequest) else type(exc).__name__
                log.warning("privacy request %s (%s) failed: %s", request.id, request.kind, error)
                repo.finish_request(
                    request.id, {"state": RequestState.FAILED.value, "error": error}
                )
                handled.append(Handled(request.id, request.kind, RequestState.FAILED.value))
                continue
            if request.kind != SHOP_REDACT:  # that request went with its shop
                done = {"state": RequestState.DONE.value, "done_at": now, "result": result}
                repo.finish_request(request.id, {**done, "error": None})
        handled.append(Handled(request.id, request.kind, RequestState.DONE.value))
    return handled


def _act(conn: Connection, request: Any, now: datetime, files: PrivacyFiles) -> dict[str, Any]:
    shop = ShopRepository(conn).by_id(request.shop_id)
    assert shop is not None  # the request row goes with its shop
    actor = f"webhook:{request.kind}"
    if request.kind == DATA_REQUEST:
        shopper = shopper_of(request.payload, "orders_requested")
        document = export(conn, shop, shopper, now, actor=actor, request_id=request.id)
        path = files.write_export(shop.slug, f"data-request-{request.id}.json", document)
        return {"export": str(path), "carts": len(document["carts"])}
    if request.kind == CUSTOMER_REDACT:
        shopper = shopper_of(request.payload, "orders_to_redact")
        return erase(conn, shop, shopper, now, files, actor=actor, request_id=request.id)
    if request.kind == SHOP_REDACT:
        return erase_shop(conn, shop, now, files, actor=actor)
    raise BadRequest(f"unknown request kind {request.kind!r}")
