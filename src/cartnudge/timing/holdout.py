"""The holdout: which carts get no reminder, so that what reminders add can be measured
against carts that got none.

A cart is assigned once, when its first reminder comes due (the waiter asks
``held_out``), by a hash of the shop and the cart: the same cart gets the same answer
after any restart, on any worker, and whatever the shop's rules say. The assignment is
stored on the cart, so changing the shop's share later moves only carts not yet assigned.
"""

from __future__ import annotations

import hashlib

WHY = (
    "held out: no reminder about this cart, one of the {percent}% of the shop's carts "
    "kept aside to measure what reminders add"
)


def share_of(shop_id: int, cart_id: int) -> float:
    """Where the cart falls in [0, 1): uniform over carts, the same every time."""
    digest = hashlib.sha256(f"holdout:{shop_id}:{cart_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def held_out(shop_id: int, cart_id: int, percent: int) -> bool:
    return share_of(shop_id, cart_id) < percent / 100
