"""Schemathesis against the app's own OpenAPI document: every operation, on the real app
over a real migrated database (both engines).

Every answer must be free of 5xx, and its status code, content type, headers and body must
be what the document says (schemathesis' own response checks). The app has no owner login:
its only credentials are the signed tokens in the reminder links (``/c/{token}``,
``/u/{token}``) and the webhook signatures. So the fuzzer is handed what it cannot guess:
part of the link cases carry the real tokens of a real reminder (a click lands, an
unsubscribe happens), part carry well-formed tokens naming any send id; part of the webhook
cases are signed for a real shop (so a generated storefront event is parsed and stored),
part name the real shop unsigned (401), and the rest are whatever schemathesis generates.
A few fixed cases run first in every run, so each outcome below is reached every time.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup, ServerError
from schemathesis.core.result import Ok
from sqlalchemy import Engine, select

from cartnudge.app import create_app
from cartnudge.clock import FrozenClock, system_clock
from cartnudge.config import Settings
from cartnudge.db.engine import make_engine
from cartnudge.db.models import Send
from cartnudge.db.session import reading, writing
from cartnudge.intake.examples import shopify_checkout, storefront_event, stripe_expired_event
from cartnudge.intake.signatures import sign_shopify, sign_standard, sign_stripe
from cartnudge.measurement.heartbeat import beat
from cartnudge.shops.repository import ShopRecord
from cartnudge.tracking.tokens import Purpose, make_token
from tests import tally
from tests.conftest import KEY, POSTAL_ADDRESS, SENDER, T0, ShopFactory
from tests.delivery.helpers import H, Pass
from tests.intake.helpers import post_storefront

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
AnyOperation = APIOperation[Any, Any, Any, Any]
AnyCase = Case[AnyOperation]
BASE = "http://testserver"
LINK_OPS = ("GET /c/{token}", "GET /u/{token}", "POST /u/{token}")
SIGNS = {
    "POST /webhooks/shopify": "shopify",
    "POST /webhooks/stripe/{shop_slug}": "stripe",
    "POST /webhooks/storefront/{shop_slug}": "storefront",
}
# How a case is steered: as schemathesis generated it; with the real shop's credentials
# (a real link token, a signed webhook); or crafted (a well-formed token naming any send,
# a webhook naming the real shop, unsigned).
STEERS = ("real", "crafted", "generated")


def _settings() -> Settings:
    return Settings(home=Path("/nonexistent"), public_url=BASE, secret_key=KEY)


def _operation_labels() -> list[str]:
    """Every operation in the document, read from an app that never opens its database."""
    app = create_app(_settings(), engine=make_engine("sqlite://"))
    paths: dict[str, dict[str, Any]] = app.api.openapi()["paths"]
    return [f"{method.upper()} {path}" for path, ops in paths.items() for method in ops]


LABELS = _operation_labels()


# --- the world the fuzzer runs in -------------------------------------------------------


@dataclass
class World:
    """The app on a test database, with what a fuzzer cannot guess: a shop that exists,
    its secrets, and the link tokens of real reminders."""

    client: TestClient
    shop: ShopRecord
    tokens: dict[Purpose, list[str]]


@pytest.fixture
def world(
    engine: Engine, make_shop: ShopFactory, clock: FrozenClock, tmp_path: Path
) -> Iterator[World]:
    app = create_app(_settings(), engine=engine, clock=clock)
    # A 500 is an answer to check, not an exception in the test.
    with TestClient(app, raise_server_exceptions=False) as client:
        shop = make_shop(sender=SENDER, postal_address=POSTAL_ADDRESS)
        for n, return_url in enumerate(["https://shop.example/cart/c0", None]):
            event = storefront_event(cart_id=f"c{n}", occurred_at=T0, email=f"s{n}@example.com")
            event["return_url"] = return_url  # without one, a click lands on a page of ours
            assert post_storefront(client, shop, event).status_code == 200
        passes = Pass(engine, tmp_path / "outbox")
        try:
            passes(T0 + 2 * H)
        finally:
            passes.providers.close()
        with writing(engine) as conn:  # the loops are running (a 503 is /readyz's own test)
            beat(conn, "fuzz:1", clock())
        sends = Send
        with reading(engine) as conn:
            rows = list(conn.execute(select(sends.c.id, sends.c.shop_id, sends.c.email_key)))
        assert len(rows) == 2, "the seed sends one reminder per cart"
        tokens = {
            purpose: [make_token(KEY.encode(), purpose, r.id, r.shop_id, r.email_key) for r in rows]
            for purpose in (Purpose.CLICK, Purpose.UNSUBSCRIBE)
        }
        yield World(client, shop, tokens)


def token_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def well_formed_tokens() -> st.SearchStrategy[str]:
    """Tokens of the right shape (8-byte send id, 16-byte MAC) naming any send id."""
    return st.binary(min_size=24, max_size=24).map(token_of)


def sign(lane: str, shop: ShopRecord, body: bytes, headers: dict[str, str]) -> str:
    """Sign ``body`` for ``shop`` as the lane's source would; the path to post it to."""
    now = int(system_clock().timestamp())
    if lane == "shopify":
        headers["X-Shopify-Shop-Domain"] = str(shop.shopify_domain)
        headers["X-Shopify-Hmac-Sha256"] = sign_shopify(body, str(shop.shopify_secret))
        return "/webhooks/shopify"
    if lane == "stripe":
        headers["Stripe-Signature"] = sign_stripe(body, str(shop.stripe_secret), now)
        return f"/webhooks/stripe/{shop.slug}"
    msg_id = headers.pop("webhook-id", "") or "generated-id"
    for name in ("webhook-timestamp", "webhook-signature"):
        headers.pop(name, None)
    headers.update(sign_standard(body, msg_id, shop.storefront_secrets[0], now))
    return f"/webhooks/storefront/{shop.slug}"


def _is_utf8(body: bytes) -> bool:
    """Stripe and Standard Webhooks sign text: other bodies go unsigned (and get a 401)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def unsigned_for(operation: AnyOperation, shop: ShopRecord, headers: dict[str, str]) -> str:
    """The path that names the real shop; past the shop look-up, the signature is wrong."""
    if "{shop_slug}" in operation.path:
        return operation.path.replace("{shop_slug}", shop.slug)
    headers["X-Shopify-Shop-Domain"] = str(shop.shopify_domain)
    return operation.path


@dataclass
class Run:
    """One operation's run: what was sent and answered, and what the checks said."""

    world: World
    operation: AnyOperation
    cases: int = 0
    server_errors: int = 0
    schema_violations: int = 0

    def exchange(self, case: AnyCase, steer: str) -> None:
        """Send one case (steered) through the real app and check the answer."""
        label = self.operation.label
        kwargs = case.as_transport_kwargs(base_url=BASE)
        assert not kwargs.get("cookies"), "the document declares no cookies"
        headers: dict[str, str] = dict(kwargs["headers"])
        body: bytes | None = None
        if "json" in kwargs:
            body = json.dumps(kwargs["json"]).encode()
        elif kwargs.get("data") is not None:
            data = kwargs["data"]
            body = data if isinstance(data, bytes) else str(data).encode()
        url = kwargs["url"]
        if label in SIGNS and steer != "generated" and body is not None:
            if steer == "real" and (SIGNS[label] == "shopify" or _is_utf8(body)):
                path = sign(SIGNS[label], self.world.shop, body, headers)
            else:
                path = unsigned_for(self.operation, self.world.shop, headers)
            url = BASE + path
        response = self.world.client.request(
            kwargs["method"],
            url,
            params=kwargs.get("params") or None,
            headers=headers,
            content=body,
            follow_redirects=False,
        )
        self.cases += 1
        if response.status_code >= 500:
            self.server_errors += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            self.schema_violations += sum(
                1
                for failure in group.exceptions
                if not isinstance(failure, ServerError) and response.status_code < 500
            )
            raise

    def fixed_cases(self) -> list[tuple[AnyCase, str]]:
        """Cases that run first every time, so every outcome is reached on every run."""
        op, label = self.operation, self.operation.label
        if label in LINK_OPS:
            tokens = [*self.world.tokens[Purpose.CLICK], *self.world.tokens[Purpose.UNSUBSCRIBE]]
            tokens += [token_of(b"\xff" * 24), token_of(b"\x00" * 24), "not-a-token"]
            return [(op.Case(path_parameters={"token": t}), "generated") for t in tokens]
        if label not in SIGNS:
            return [(op.Case(), "generated")]
        lane = SIGNS[label]
        good: dict[str, Any] = {
            "shopify": shopify_checkout(token="t1", cart_token="ct1", updated_at=T0),
            "stripe": stripe_expired_event(session_id="cs_fixed", created=T0),
            "storefront": storefront_event(cart_id="fixed", occurred_at=T0, event_id="fixed"),
        }[lane]
        bodies = [
            (good, "real"),  # stored: 200
            ({**good, "currency": "ZZZ"}, "real"),  # kept as a dead letter: 200 or 422
            (good, "crafted"),  # the real shop, unsigned: 401
            (good, "generated"),  # nobody's shop: 404
        ]
        if lane == "storefront":  # a time that exists only before it is put in UTC
            bodies.append(({**good, "occurred_at": "0001-01-01T00:00:00+01:00"}, "real"))
        cases = []
        for n, (body, steer) in enumerate(bodies):
            headers = {
                "shopify": {"X-Shopify-Topic": "checkouts/create", "X-Shopify-Webhook-Id": f"f{n}",
                            "X-Shopify-Hmac-Sha256": "AA==", "X-Shopify-Shop-Domain": "x"},
                "stripe": {"Stripe-Signature": "t=1,v1=00"},
                "storefront": {"webhook-id": f"f{n}", "webhook-timestamp": "1",
                               "webhook-signature": "v1,AA=="},
            }[lane]  # fmt: skip
            params = {"shop_slug": "nobody"} if "{shop_slug}" in op.path else None
            case = op.Case(
                headers=headers, path_parameters=params, body=body, media_type="application/json"
            )
            cases.append((case, steer))
        return cases


@pytest.mark.parametrize("label", LABELS)
def test_every_operation_answers_as_documented(world: World, label: str) -> None:
    served = world.client.get("/openapi.json")
    assert served.status_code == 200
    schema = schemathesis.openapi.from_dict(served.json())
    operations = [op.ok() for op in schema.get_all_operations() if isinstance(op, Ok)]
    assert sorted(op.label for op in operations) == sorted(LABELS), "the document is whole"
    operation = schema.find_operation_by_label(label)
    assert operation is not None
    run = Run(world, operation)
    # Negative cases (data that breaks the document) exist only where there is data to
    # break: the webhook lanes' headers and bodies.
    modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if label in SIGNS else [])
    cases = st.one_of([operation.as_strategy(generation_mode=mode) for mode in modes])

    # Short (CI) runs are derandomized: the same cases every run, so a red CI run is
    # reproducible locally and never caused by a case someone else's change happened to
    # draw. The full run draws new cases each time to find what the short one cannot.
    @settings(
        max_examples=tally.scaled(30, 400),
        deadline=None,  # requests go through a real database; time is not the property
        database=None,  # no example database in the repository's .hypothesis/
        derandomize=not tally.FULL,
        print_blob=tally.FULL,
        # Steering draws from hypothesis too; a schemathesis case plus a token is a lot
        # of data for some operations, which is what the fuzzer is for.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=cases, steer=st.sampled_from(STEERS), data=st.data())
    def fuzz(case: AnyCase, steer: str, data: st.DataObject) -> None:
        if label in LINK_OPS and steer != "generated":
            purpose = data.draw(st.sampled_from([Purpose.CLICK, Purpose.UNSUBSCRIBE]))
            real = st.sampled_from(world.tokens[purpose])
            case.path_parameters["token"] = data.draw(
                real if steer == "real" else well_formed_tokens()
            )
        run.exchange(case, steer)

    try:
        for case, steer in run.fixed_cases():
            run.exchange(case, steer)
        fuzz()
    finally:
        tally.record(
            "schemathesis",
            operations=1,
            cases=run.cases,
            server_errors=run.server_errors,
            schema_violations=run.schema_violations,
        )
