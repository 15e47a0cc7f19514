"""Several senders on PostgreSQL over the same outbox: every email leaves once, to a real
SMTP server, and do-not-disturb holds across workers."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update

from cartnudge.db.models import Cart
from cartnudge.db.session import reading, writing
from cartnudge.delivery.sender import Providers, SendReport, send_due
from cartnudge.shops.repository import ShopRecord
from cartnudge.testing.carts import insert_open_carts
from cartnudge.testing.smtp import SmtpSink
from cartnudge.timing.waiter import wake_due
from tests.conftest import POSTAL_ADDRESS, SENDER, T0, ShopFactory
from tests.delivery.helpers import LINKS, sends_t


def run_workers(engine: Engine, tmp_path: Path, count: int) -> list[SendReport]:
    now = T0 + timedelta(hours=2)
    reports: list[SendReport] = []

    def work(n: int) -> None:
        providers = Providers(tmp_path / f"outbox{n}")
        try:
            reports.append(
                send_due(engine, lambda: now, providers, LINKS, limit=50, rng=random.Random(n))
            )
        finally:
            providers.close()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(count)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    return reports


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_four_senders_deliver_thousands_of_reminders_each_exactly_once(
    engine: Engine, make_shop: ShopFactory, tmp_path: Path
) -> None:
    with SmtpSink() as sink:
        shop = make_shop(
            sender=SENDER, postal_address=POSTAL_ADDRESS, mail_url=f"smtp://127.0.0.1:{sink.port}"
        )
        insert_open_carts(
            engine, shop.id, 2000, active_at=T0, wake_at=T0 + 2 * timedelta(hours=1), shoppers=True
        )
        assert wake_due(engine, T0 + timedelta(hours=2)).moves["reminders"] == 2000

        reports = run_workers(engine, tmp_path, 4)

        assert sum(r.counts["sent"] for r in reports) == 2000
        assert sum(1 for r in reports if r.counts["sent"]) > 1  # the work was shared
        received = Counter(r.rcpt_tos for r in sink.wait_for(2000, timeout_s=30))
    assert len(received) == 2000 and set(received.values()) == {1}
    with reading(engine) as conn:
        statuses = dict(
            conn.execute(select(sends_t.c.status, func.count()).group_by(sends_t.c.status)).all()
        )
    assert statuses == {"sent": 2000}


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_do_not_disturb_holds_across_workers(
    engine: Engine, sender_shop: ShopRecord, tmp_path: Path
) -> None:
    # 400 carts, two per address: whichever worker takes either cart of an address, only
    # one reminder may reach it.
    insert_open_carts(
        engine, sender_shop.id, 400, active_at=T0, wake_at=T0 + timedelta(hours=2), shoppers=True
    )
    carts = Cart
    with writing(engine) as conn:
        cart_ids = sorted(conn.execute(select(carts.c.id)).scalars())
        for n, cart_id in enumerate(cart_ids):
            address = f"pair{n // 2}@example.com"
            conn.execute(
                update(carts).where(carts.c.id == cart_id).values(email=address, email_key=address)
            )
    wake_due(engine, T0 + timedelta(hours=2))

    reports = run_workers(engine, tmp_path, 4)

    assert sum(r.counts["sent"] for r in reports) == 200
    assert sum(r.counts["skipped"] for r in reports) == 200
    with reading(engine) as conn:
        per_address = conn.execute(
            select(sends_t.c.email_key, func.count())
            .where(sends_t.c.status == "sent")
            .group_by(sends_t.c.email_key)
        ).all()
    assert len(per_address) == 200 and {n for _, n in per_address} == {1}
