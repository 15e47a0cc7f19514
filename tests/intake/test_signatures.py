"""Signature checks against published vectors and each scheme's own rules."""

from __future__ import annotations

import time

import pytest

from cartnudge.intake.signatures import (
    BadSignature,
    sign_shopify,
    sign_standard,
    sign_stripe,
    verify_shopify,
    verify_standard,
    verify_stripe,
)

# Published third-party vector (see shared/fixtures/SOURCES.md).
SHOPIFY_BODY = b'{"id":1234567890,"email":"customer@example.com","total_price":"123.45"}'
SHOPIFY_DIGEST = "QNyObTlKbMx2qDlPF/ZOZcBqg5OgPg+2oky3zldc0Gw="
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_shopify_published_vector() -> None:
    assert sign_shopify(SHOPIFY_BODY, "test-webhook-secret") == SHOPIFY_DIGEST
    verify_shopify(SHOPIFY_BODY, SHOPIFY_DIGEST, "test-webhook-secret")


@pytest.mark.parametrize(
    ("body", "header", "secret"),
    [
        (SHOPIFY_BODY + b" ", SHOPIFY_DIGEST, "test-webhook-secret"),  # one byte more
        (SHOPIFY_BODY, SHOPIFY_DIGEST, "another-secret"),
        (SHOPIFY_BODY, None, "test-webhook-secret"),
        (SHOPIFY_BODY, SHOPIFY_DIGEST, ""),  # an empty secret refuses everything
        (SHOPIFY_BODY, SHOPIFY_DIGEST, None),
    ],
)
def test_shopify_refuses(body: bytes, header: str | None, secret: str | None) -> None:
    with pytest.raises(BadSignature):
        verify_shopify(body, header, secret)


def test_stripe_accepts_its_own_header_and_any_of_several_v1() -> None:
    body = b'{"id":"evt_1","type":"checkout.session.expired"}'
    now = int(time.time())
    header = sign_stripe(body, "whsec_abc", now)
    verify_stripe(body, header, "whsec_abc")
    other = sign_stripe(body, "whsec_other", now).split(",")[1]
    verify_stripe(body, f"{header},{other}", "whsec_abc")


@pytest.mark.parametrize("age_s", [301, 3600])
def test_stripe_refuses_stale_timestamps(age_s: int) -> None:
    body = b"{}"
    header = sign_stripe(body, "whsec_abc", int(time.time()) - age_s)
    with pytest.raises(BadSignature):
        verify_stripe(body, header, "whsec_abc")


def test_stripe_refuses_tampering_and_garbage() -> None:
    body = b'{"a":1}'
    header = sign_stripe(body, "whsec_abc", int(time.time()))
    for bad_body, bad_header in [
        (b'{"a":2}', header),
        (body, "garbage"),
        (body, ""),
        (b"\xff", header),
    ]:
        with pytest.raises(BadSignature):
            verify_stripe(bad_body, bad_header, "whsec_abc")


def test_standard_webhooks_round_trip_and_rotation() -> None:
    body = b'{"x":1}'
    now = int(time.time())
    headers = sign_standard(body, "msg_1", SECRET, now)
    verify_standard(body, headers, [SECRET])
    # The shop holds a new and an old secret during a rotation: either signs.
    verify_standard(body, headers, ["whsec_" + "bmV3LXNlY3JldC1rZXktMTIzNDU2Nzg5MA==", SECRET])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h: {**h, "webhook-id": "msg_2"},  # the id is signed too
        lambda h: {**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) - 600)},
        lambda h: {**h, "webhook-signature": "v1,AAAA"},
        lambda h: {**h, "webhook-signature": "nonsense"},
        lambda h: {k: v for k, v in h.items() if k != "webhook-timestamp"},
    ],
)
def test_standard_webhooks_refuses(mutate: object) -> None:
    body = b'{"x":1}'
    headers = sign_standard(body, "msg_1", SECRET, int(time.time()))
    with pytest.raises(BadSignature):
        verify_standard(body, mutate(headers), [SECRET])  # type: ignore[operator]


def test_standard_webhooks_without_a_secret_refuses() -> None:
    body = b"{}"
    headers = sign_standard(body, "msg_1", SECRET, int(time.time()))
    with pytest.raises(BadSignature):
        verify_standard(body, headers, [])
