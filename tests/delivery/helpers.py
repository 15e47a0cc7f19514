"""What the sender's tests share: one pass of the waiter and the sender at a chosen
instant, with the file outbox in a temporary folder."""

from __future__ import annotations

import email
import random
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cartnudge.db.models import Send
from cartnudge.db.session import reading
from cartnudge.delivery.sender import Links, Providers, send_due
from cartnudge.intake.examples import storefront_event
from cartnudge.shops.repository import ShopRecord
from cartnudge.timing.waiter import wake_due
from tests.conftest import KEY, T0
from tests.intake.helpers import post_storefront

H = timedelta(hours=1)
sends_t = Send
LINKS = Links("http://testserver", KEY.encode())


def sends(engine: Engine) -> list[Any]:
    with reading(engine) as conn:
        return list(conn.execute(select(sends_t).order_by(sends_t.c.cart_id, sends_t.c.step)))


class Pass:
    """One waiter pass and one sender pass at a chosen instant, the file outbox in tmp."""

    def __init__(self, engine: Engine, outbox: Path) -> None:
        self.engine = engine
        self.outbox = outbox
        self.providers = Providers(outbox)

    def __call__(self, at: datetime) -> dict[str, int]:
        wake_due(self.engine, at)
        report = send_due(self.engine, lambda: at, self.providers, LINKS, rng=random.Random(7))
        return report.as_dict()

    def emails(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(path.read_bytes(), _class=EmailMessage, policy=policy.default)
            for path in sorted(self.outbox.rglob("*.eml"))
        ]


def post(client: TestClient, shop: ShopRecord, **event: Any) -> None:
    event.setdefault("occurred_at", T0)
    response = post_storefront(client, shop, storefront_event(**event))
    assert response.status_code == 200, response.text
