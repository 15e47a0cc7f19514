"""Every SQL statement of tracking: the send a link names, and clicks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select

from cartnudge.db.models import Cart, Click, Send, Shop

sends = Send
carts = Cart
clicks = Click
shops = Shop

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


class TrackingRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def send(self, send_id: int) -> Any:
        """The send a link names, with its cart's return URL and its shop's name; ``None``
        if there is none."""
        return self.conn.execute(_SEND, {"send_id": send_id}).first()

    def add_click(self, shop_id: int, send_id: int, at: datetime) -> None:
        self.conn.execute(insert(clicks), {"shop_id": shop_id, "send_id": send_id, "at": at})
