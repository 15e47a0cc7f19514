"""A sheet link's token: it says its shop, cart, action and expiry, and none of them can be
changed, nor the link made with another key, without it being refused."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from cartnudge.export.links import (
    SHEET_ACTIONS,
    LinkRefused,
    SheetLink,
    make_link_token,
    read_link_token,
)
from tests.conftest import T0

KEY = b"the installation's key"


def test_a_token_reads_back_as_the_link_it_signs() -> None:
    for action in SHEET_ACTIONS:
        link = SheetLink(7, 2**40, action, T0 + timedelta(days=30))
        assert read_link_token(KEY, make_link_token(KEY, link), T0) == link


def test_an_altered_token_or_another_key_is_refused_as_not_valid() -> None:
    token = make_link_token(KEY, SheetLink(7, 42, "suppress", T0 + timedelta(days=30)))
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    altered = []
    for at in (7, 15, 16, 24, len(raw) - 1):  # shop, cart, action, expiry, MAC
        changed = bytearray(raw)
        changed[at] ^= 1
        altered.append(base64.urlsafe_b64encode(bytes(changed)).rstrip(b"=").decode())
    for bad in [*altered, token[:-2], token + "AA", "", "!!!", "x" * 500]:
        with pytest.raises(LinkRefused) as refused:
            read_link_token(KEY, bad, T0)
        assert not refused.value.expired
    with pytest.raises(LinkRefused):
        read_link_token(b"another key", token, T0)


def test_a_link_past_its_time_is_refused_as_expired() -> None:
    token = make_link_token(KEY, SheetLink(7, 42, "unsubscribe", T0))
    read_link_token(KEY, token, T0 - timedelta(seconds=1))
    with pytest.raises(LinkRefused, match="expired on 2026-03-14 15:09 UTC") as refused:
        read_link_token(KEY, token, T0)
    assert refused.value.expired
