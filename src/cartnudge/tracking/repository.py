"""Every SQL statement of tracking: the send a link names, clicks, the consent ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select

from cartnudge.db.models import Cart, Click, ConsentEntry, Send, Shop, table_of

sends = table_of(Send)
carts = table_of(Cart)
clicks = table_of(Click)
ledger = table_of(ConsentEntry)
shops = table_of(Shop)

_SEND = (
    select(
        sends.c.id,
        sends.c.shop_id,
        sends.c.cart_id,
        sends.c.step,
        sends.c.email_key,
        carts.c.return_url,
        shops.c.name.label("shop_name"),
    )
    .join(carts, carts.c.id == sends.c.cart_id)
    .join(shops, shops.c.id == sends.c.shop_id)
    .where(sends.c.id == bindparam("send_id"))
)
_LATEST_CONSENT = (
    select(ledger.c.kind)
    .where(
        ledger.c.shop_id == bindparam("shop_id"),
        ledger.c.email_key == bindparam("email_key"),
    )
    .order_by(ledger.c.id.desc())
    .limit(1)
)


class TrackingRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def send(self, send_id: int) -> Any:
        """The send a link names, with its cart's return URL and its shop's name; ``None``
        if there is none."""
        return self.conn.execute(_SEND, {"send_id": send_id}).first()

    def add_click(self, shop_id: int, send_id: int, at: datetime) -> None:
        self.conn.execute(insert(clicks), {"shop_id": shop_id, "send_id": send_id, "at": at})

    def consent_state(self, shop_id: int, email_key: str) -> str | None:
        """The kind of the address's newest ledger entry, ``None`` if it has none."""
        params = {"shop_id": shop_id, "email_key": email_key}
        kind = self.conn.execute(_LATEST_CONSENT, params).scalar()
        return str(kind) if kind is not None else None

    def add_consent(self, values: dict[str, Any]) -> None:
        self.conn.execute(insert(ledger), values)
