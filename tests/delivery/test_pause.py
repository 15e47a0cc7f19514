"""The owner's kill switch: a paused shop's reminders wait, held, from the next hand-off
on (one already claimed included), nothing is cancelled, and resuming sends them."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cartnudge.db.models import AuditEntry
from cartnudge.db.session import reading, writing
from cartnudge.delivery.repository import PAUSED
from cartnudge.shops.controls import ControlError, pause_sending, resume_sending
from cartnudge.shops.repository import ShopRecord, ShopRepository
from cartnudge.timing.waiter import wake_due
from tests.conftest import T0
from tests.delivery.helpers import H, Pass, post, sends
from tests.delivery.test_sender import claimed, deliver
from tests.test_cli import cli  # noqa: F401 - the fixture


def fresh(engine: Engine, shop: ShopRecord) -> ShopRecord:
    with reading(engine) as conn:
        record = ShopRepository(conn).by_id(shop.id)
    assert record is not None
    return record


def pause(engine: Engine, shop: ShopRecord, reason: str | None = "checking the copy") -> None:
    with writing(engine) as conn:
        pause_sending(conn, fresh(engine, shop), T0, actor="owner:test", reason=reason)


def resume(engine: Engine, shop: ShopRecord) -> int:
    with writing(engine) as conn:
        return resume_sending(conn, fresh(engine, shop), T0 + 3 * H, actor="owner:test")


def test_a_paused_shop_holds_its_reminders_and_resuming_sends_them(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    post(client, sender_shop, cart_id="c1")
    pause(engine, sender_shop)
    report = run(T0 + 2 * H)
    assert (report["held"], report["sent"]) == (1, 0)
    [send] = sends(engine)
    assert (send.status, send.reason) == ("queued", PAUSED)
    assert run.emails() == []
    assert resume(engine, sender_shop) == 1
    # Due at once, not after the hold runs out.
    assert run(T0 + 3 * H)["sent"] == 1
    assert len(run.emails()) == 1
    with reading(engine) as conn:
        actions = list(
            conn.execute(
                select(AuditEntry.c.action, AuditEntry.c.actor, AuditEntry.c.reason)
                .where(AuditEntry.c.action.like("shop:%"))
                .order_by(AuditEntry.c.id)
            )
        )
    assert [tuple(a) for a in actions] == [
        ("shop:paused", "owner:test", "checking the copy"),
        ("shop:resumed", "owner:test", None),
    ]


def test_a_pause_stops_a_reminder_claimed_before_it_at_the_hand_off(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    post(client, sender_shop, cart_id="c1")
    wake_due(engine, T0 + 2 * H)
    outgoing = claimed(engine, T0 + 2 * H, run.providers)
    assert len(outgoing) == 1
    pause(engine, sender_shop)  # while the batch waits for its lane
    report = deliver(engine, T0 + 2 * H, run.providers, outgoing)
    assert (report["sent"], report["withdrawn"]) == (0, 1)
    [send] = sends(engine)
    assert (send.status, send.reason, send.handed_at) == ("queued", PAUSED, None)
    assert run.emails() == []
    resume(engine, sender_shop)
    assert run(T0 + 3 * H)["sent"] == 1


def test_pausing_twice_or_resuming_a_running_shop_is_refused(
    engine: Engine, sender_shop: ShopRecord
) -> None:
    try:
        resume(engine, sender_shop)
    except ControlError as exc:
        assert "not paused" in str(exc)
    else:
        raise AssertionError("resumed a shop that was not paused")
    pause(engine, sender_shop)
    try:
        pause(engine, sender_shop)
    except ControlError as exc:
        assert "already paused" in str(exc)
    else:
        raise AssertionError("paused twice")


def test_the_commands_pause_and_resume_and_refuse_bad_input(
    cli: Any,  # noqa: F811
    engine: Engine,
    sender_shop: ShopRecord,
) -> None:
    import json

    assert cli("shop", "resume", sender_shop.slug).exit_code == 2
    assert cli("shop", "pause", "nope").exit_code == 2
    paused = cli("shop", "pause", sender_shop.slug, "--reason", "new copy")
    assert paused.exit_code == 0 and json.loads(paused.output)["paused"] is True
    again = cli("shop", "pause", sender_shop.slug)
    assert again.exit_code == 2 and "already paused" in again.output
    listed = json.loads(cli("shop", "list").output)
    assert listed[0]["sending"]["paused"]["reason"] == "new copy"
    assert json.loads(cli("shop", "resume", sender_shop.slug).output)["released"] == 0
    assert fresh(engine, sender_shop).paused_at is None
