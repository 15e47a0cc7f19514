"""The consent ledger: every fact appended with its source and evidence, what stops an
address, and each send's recorded basis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cartnudge.db.models import ConsentEntry
from cartnudge.db.session import reading, writing
from cartnudge.privacy.consent import history, stopped, suppression_key
from cartnudge.shops.repository import ShopRecord
from cartnudge.testing.smtp import SmtpSink
from cartnudge.tracking.service import unsubscribe
from tests.conftest import POSTAL_ADDRESS, SENDER, T0, ShopFactory
from tests.delivery.helpers import H, Pass, sends
from tests.intake.helpers import post_shopify
from tests.privacy.helpers import BOB, checkout, iso

ledger_t = ConsentEntry


def ledger(engine: Engine) -> list[tuple[str, str, str]]:
    with reading(engine) as conn:
        rows = conn.execute(select(ledger_t).order_by(ledger_t.c.id))
        return [(r.kind, r.source, r.email_key) for r in rows]


def test_the_choice_at_checkout_is_recorded_once_per_answer_with_its_evidence(
    client: TestClient, engine: Engine, sender_shop: ShopRecord
) -> None:
    ticked = checkout("tA", "cA", iso(0))
    post_shopify(client, sender_shop, "checkouts/create", ticked, "w1")
    # The same answer again (an update, and a replay) adds nothing.
    post_shopify(client, sender_shop, "checkouts/update", {**ticked, "updated_at": iso(1)}, "w2")
    post_shopify(client, sender_shop, "checkouts/update", {**ticked, "updated_at": iso(1)}, "w2")
    unticked = {**ticked, "updated_at": iso(2), "buyer_accepts_marketing": False}
    post_shopify(client, sender_shop, "checkouts/update", unticked, "w3")

    source = "shopify:buyer_accepts_marketing"
    assert ledger(engine) == [("opt_in", source, BOB), ("declined", source, BOB)]
    with reading(engine) as conn:
        entries = history(conn, sender_shop.id, BOB)
    assert [e["evidence"]["event"] for e in entries] == ["shopify:w1", "shopify:w3"]
    assert entries[0]["at"] == iso(0) and entries[1]["at"] == iso(2)
    assert all(isinstance(e["evidence"]["cart"], int) for e in entries)


def test_a_send_records_the_consent_it_relied_on(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    post_shopify(client, sender_shop, "checkouts/create", checkout("tA", "cA", iso(0)), "w1")
    run(T0 + 2 * H)
    [send] = sends(engine)
    assert (send.status, send.consent_basis) == ("sent", "opt_in:shopify:buyer_accepts_marketing")


def test_a_later_opt_in_does_not_lift_an_unsubscribe(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    with writing(engine) as conn:
        unsubscribe(conn, sender_shop.id, BOB, T0, source="one_click", actor="shopper")
    post_shopify(client, sender_shop, "checkouts/create", checkout("tA", "cA", iso(1)), "w1")
    run(T0 + 3 * H)

    assert [kind for kind, *_ in ledger(engine)] == ["unsubscribe", "opt_in"]
    [send] = sends(engine)
    assert (send.status, send.reason) == ("skipped", "address unsubscribed")


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


def test_a_bounce_stops_the_address_and_a_policy_refusal_does_not(
    client: TestClient, engine: Engine, make_shop: ShopFactory, run: Pass, sink: SmtpSink
) -> None:
    shop = make_shop(
        sender=SENDER, postal_address=POSTAL_ADDRESS, mail_url=f"smtp://{sink.host}:{sink.port}"
    )
    # A policy refusal fails the send but says nothing about the address.
    sink.fail_next("rcpt", "550 5.7.1 Service unavailable; client host blocked")
    post_shopify(client, shop, "checkouts/create", checkout("tA", "cA", iso(0)), "w1")
    run(T0 + 2 * H)
    assert [(s.status, s.email_key) for s in sends(engine)] == [("failed", BOB)]
    with reading(engine) as conn:
        assert stopped(conn, shop.id, [BOB]) == {}

    # Its second reminder is tried: "no such mailbox" is a bounce in the ledger, and the
    # reminder about a later cart is skipped.
    sink.fail_next("rcpt", "550 5.1.1 The email account that you tried to reach does not exist")
    run(T0 + 52 * H)
    post_shopify(client, shop, "checkouts/create", checkout("tC", "cC", iso(100)), "w3")
    run(T0 + 102 * H)

    first, second, later = sends(engine)
    assert (first.step, second.step, later.step) == (1, 2, 1)
    assert second.status == "failed" and "5.1.1" in (second.reason or "")
    assert (later.status, later.reason) == (
        "skipped",
        "address bounced (the server refused it for good)",
    )
    assert [e for e in ledger(engine) if e[0] == "bounce"] == [("bounce", "smtp", BOB)]
    assert len(sink.received) == 0


def test_the_one_way_key_hides_the_address_and_is_stable_per_shop() -> None:
    key = suppression_key(7, BOB)
    assert key.startswith("sha256:") and "bob" not in key
    assert suppression_key(7, BOB) == key  # the stop is found again after an erasure
    assert suppression_key(8, BOB) != key  # the same shopper is not linkable across shops


def test_owner_recorded_complaint_is_kept_with_its_note(
    engine: Engine, sender_shop: ShopRecord, tmp_path: Path
) -> None:
    from cartnudge.db.models import ConsentKind
    from cartnudge.privacy.consent import stop

    with writing(engine) as conn:
        first = stop(
            conn,
            sender_shop.id,
            BOB,
            T0,
            kind=ConsentKind.COMPLAINT,
            source="owner",
            actor="owner:cli",
            evidence={"note": "feedback loop report 2026-03-14"},
        )
        again = stop(
            conn, sender_shop.id, BOB, T0, kind=ConsentKind.COMPLAINT, source="owner", actor="x"
        )
    assert (first, again) == (True, False)
    with reading(engine) as conn:
        assert stopped(conn, sender_shop.id, [BOB, "someone@else.example"]) == {
            BOB: ConsentKind.COMPLAINT
        }
        [entry] = history(conn, sender_shop.id, BOB)
    assert entry["evidence"] == {"note": "feedback loop report 2026-03-14"}
