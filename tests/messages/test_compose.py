"""Composing a reminder: what the shopper reads in both parts, money in their locale, the
headers mailbox providers look for, and nothing a shopper typed able to add a header or
markup."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formataddr
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cartnudge.messages.compose import Composed, Draft, Line, compose, one_line
from cartnudge.messages.voice import DEFAULT_DOCUMENT, default_voice, parse_voice

UNSUBSCRIBE = "https://carts.example/u/" + "t" * 120  # longer than a header line
MAILTO = "mailto:hello@tea.example?subject=unsubscribe%20" + "t" * 40
HEADERS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
}
# Shopper data in the subject, so the header tests put it where an attacker would want it.
CHATTY = parse_voice(
    DEFAULT_DOCUMENT.replace(
        'subject: "You left something in your cart at {{ shop_name }}"',
        'subject: "{{ greeting }}, your {{ shop_name }} cart ({{ total }})"',
    )
)


def draft(**overrides: Any) -> Draft:
    values: dict[str, Any] = {
        "step": 1,
        "last_step": False,
        "saved_link": False,
        "shop_name": "Tea House",
        "sender": "Tea House <hello@tea.example>",
        "postal_address": "12 Harbour Street\nPortsmouth PO1 2AB\nUnited Kingdom",
        "to": "ana@example.com",
        "first_name": "Ana",
        "locale": "en-GB",
        "shop_locale": "en",
        "currency": "GBP",
        "total_minor": 4850,
        "items": (
            Line("Linen tote bag", 1, 2450, "https://cdn.tea.example/tote.jpg"),
            Line("Stoneware mug", 2, 1200, "http://cdn.tea.example/mug.jpg"),
        ),
        "return_link": "https://carts.example/c/abc123",
        "unsubscribe_url": UNSUBSCRIBE,
        "unsubscribe_mailto": MAILTO,
        "reply_to": "hello+r-xyz@tea.example",
        "message_id": "<42.xyz@tea.example>",
        "date": datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC),
    }
    values.update(overrides)
    return Draft(**values)


def parts(composed: Composed) -> tuple[str, str]:
    text = composed.message.get_body(("plain",))
    html = composed.message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def reparsed(composed: Composed) -> EmailMessage:
    message = email.message_from_bytes(composed.raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_the_email_has_both_parts_with_everything_the_shopper_needs() -> None:
    composed = compose(draft(), default_voice())
    text, html = parts(composed)

    message = composed.message
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in message.iter_parts())
    assert (composed.variant, composed.subject) == (
        "first",
        "You left something in your cart at Tea House",
    )
    assert text.startswith("Hi Ana,\n\nIt looks like you didn't get to finish your order")
    assert "- Linen tote bag: 1 × £24.50 = £24.50\n- Stoneware mug: 2 × £12.00 = £24.00\n" in text
    assert "Total: £48.50\nShipping and taxes are calculated at checkout.\n" in text
    assert "Return to your cart:\nhttps://carts.example/c/abc123" in text
    assert "just reply to this email" in text
    assert "Tea House\n12 Harbour Street\nPortsmouth PO1 2AB\nUnited Kingdom\n" in text
    assert "because you left items in your cart at Tea House" in text
    assert f"Unsubscribe: {UNSUBSCRIBE}" in text
    # The same in the HTML part, the address kept on its lines.
    assert '<p style="margin:0 0 16px;">Hi Ana,</p>' in html
    for shown in ("Linen tote bag", "2 × £12.00", "£24.50", "£24.00", "£48.50"):
        assert shown in html
    assert '<a href="https://carts.example/c/abc123"' in html
    assert ">Return to your cart</a>" in html
    assert "Tea House<br>12 Harbour Street<br>Portsmouth PO1 2AB<br>United Kingdom" in html
    assert f'<a href="{UNSUBSCRIBE}"' in html


def test_only_https_images_are_shown() -> None:
    _, html = parts(compose(draft(), default_voice()))

    assert '<img src="https://cdn.tea.example/tote.jpg"' in html
    assert "mug.jpg" not in html


def test_without_a_name_a_link_or_a_total_the_email_still_reads_well() -> None:
    composed = compose(draft(first_name="  ", return_link=None, total_minor=None), default_voice())
    text, html = parts(composed)

    assert text.startswith("Hi there,\n")
    assert "Hi there," in html
    assert "Return to your cart" not in text and "Return to your cart" not in html
    assert "/c/" not in text + html
    assert "Total" not in text and "Total" not in html
    assert "£24.50" in text  # the items still have their prices


def test_without_a_currency_no_amount_is_shown() -> None:
    text, _ = parts(compose(draft(currency=None), default_voice()))

    assert "- Linen tote bag\n- Stoneware mug × 2\n" in text
    assert "Total" not in text


@pytest.mark.parametrize(
    ("locale", "shop_locale", "currency", "total_minor", "shown"),
    [
        ("en", "en", "USD", 123456, "$1,234.56"),
        ("fr-FR", "en", "EUR", 123456, "1\u202f234,56\xa0€"),
        ("de_DE", "en", "EUR", 123456, "1.234,56\xa0€"),
        ("en-US", "en", "JPY", 123456, "¥123,456"),  # no minor unit: 123456 is ¥123,456
        ("ja-JP", "en", "JPY", 1200, "￥1,200"),
        (None, "de-DE", "EUR", 995, "9,95\xa0€"),  # the shop's locale when the shopper's is unknown
        ("xx-YY", "fr", "EUR", 995, "9,95\xa0€"),  # an unknown one is skipped
        ("not a locale!", "nor this", "EUR", 995, "€9.95"),  # and English is the last resort
    ],
)
def test_the_total_is_formatted_for_the_shopper(
    locale: str | None, shop_locale: str, currency: str, total_minor: int, shown: str
) -> None:
    text, html = parts(
        compose(
            draft(
                locale=locale, shop_locale=shop_locale, currency=currency, total_minor=total_minor
            ),
            default_voice(),
        )
    )

    assert f"Total: {shown}\n" in text
    assert f">{shown}</td>" in html


def test_the_variant_follows_the_step_and_the_link() -> None:
    voice = default_voice()

    last = compose(draft(step=2, last_step=True), voice)
    only = compose(draft(step=1, last_step=True), voice)
    saved = compose(draft(step=2, last_step=True, saved_link=True, items=draft().items[:1]), voice)

    assert (last.variant, last.subject) == ("last", "Your cart at Tea House is still waiting")
    assert only.variant == "first"
    assert (saved.variant, saved.subject) == ("saved", "Still saving this for later?")
    assert "because you saved a cart at Tea House" in parts(saved)[0]


def test_the_headers_mailbox_providers_look_for() -> None:
    message = reparsed(compose(draft(), default_voice()))

    assert set(message.keys()) == HEADERS
    assert message["From"] == "Tea House <hello@tea.example>"
    assert message["To"] == "ana@example.com"
    assert message["Reply-To"] == "hello+r-xyz@tea.example"
    assert message["Date"] == "Sat, 14 Mar 2026 15:09:26 +0000"
    assert message["Message-ID"] == "<42.xyz@tea.example>"
    assert message["MIME-Version"] == "1.0"
    # RFC 8058 one-click unsubscribe; the long URL arrives whole, never RFC 2047-encoded.
    assert message["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>, <{MAILTO}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert all("MIME-Version" not in part for part in message.iter_parts())


def test_the_bytes_are_seven_bit_with_short_lines_and_the_same_for_the_same_draft() -> None:
    raw = compose(draft(first_name="Zoë"), default_voice()).raw

    assert raw.isascii()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert compose(draft(first_name="Zoë"), default_voice()).raw == raw


def test_a_long_non_ascii_subject_round_trips() -> None:
    composed = compose(
        draft(
            first_name="Zoë Łukasiewicz-Ørsted", shop_name="Théières & Cafetières de Montréal 東京"
        ),
        CHATTY,
    )
    message = reparsed(composed)

    assert len(composed.subject) > 78  # it had to be folded
    assert composed.subject.startswith("Hi Zoë Łukasiewicz-Ørsted, your Théières")
    assert message["Subject"] == composed.subject
    for name in HEADERS - {"Content-Type"}:
        assert message[name] == composed.message[name], name
    assert message["From"].addresses[0].display_name == "Tea House"
    # The bodies too (written with CRLF line ends, as SMTP wants).
    received = (message.get_body(("plain",)), message.get_body(("html",)))
    assert [p.get_content().replace("\r\n", "\n") for p in received if p] == list(parts(composed))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("first_name", "Ana\r\nBcc: victim@example.com"),
        ("first_name", "Ana\nBcc: victim@example.com"),
        ("first_name", "Ana\rBcc: victim@example.com"),
        ("first_name", "Ana\x00\x0b\x0c\x1b\x85\u2028Bcc: victim@example.com"),
        # An encoded word that decodes to a line break: Python's email package would decode
        # it into the header's value and, in some versions, write the break out.
        ("first_name", "=?utf-8?q?Ana=0D=0ABcc:_victim@example.com?="),
        ("shop_name", "Tea House\r\nBcc: victim@example.com"),
        ("shop_name", "=?utf-8?b?VGVhDQpCY2M6IHZpY3RpbUBleGFtcGxlLmNvbQ==?="),
        # Quoted, so the address is the shop's: unquoted, parseaddr reads the encoded word
        # itself as the address, which is no mailbox and is refused before composing.
        ("sender", '"=?utf-8?q?Tea=0D=0ABcc:_victim@example.com?=" <hello@tea.example>'),
    ],
)
def test_nothing_a_shopper_or_store_typed_can_add_a_header(field: str, value: str) -> None:
    composed = compose(draft(**{field: value}), CHATTY)
    raw = composed.raw
    message = reparsed(composed)

    assert set(message.keys()) == HEADERS
    assert b"\nBcc:" not in raw and b"\nbcc:" not in raw.lower()
    for name, header in message.items():
        assert "\r" not in header and "\n" not in header, name
    assert "\n" not in composed.subject and "\r" not in composed.subject


def test_a_title_with_line_breaks_stays_on_its_line() -> None:
    item = Line("Mug\r\nX-Evil: 1\n\n<b>bold</b>", 1, 500, None)
    text, _ = parts(compose(draft(items=(item,)), default_voice()))

    assert "- Mug X-Evil: 1 <b>bold</b>: 1 × £5.00 = £5.00\n" in text


@pytest.mark.parametrize(
    ("field", "value", "escaped"),
    [
        ("first_name", "<b>Ana</b>", "Hi &lt;b&gt;Ana&lt;/b&gt;,"),
        ("shop_name", "Tea & <i>Co</i>", "Tea &amp; &lt;i&gt;Co&lt;/i&gt;"),
    ],
)
def test_names_are_escaped_in_the_html(field: str, value: str, escaped: str) -> None:
    _, html = parts(compose(draft(**{field: value}), default_voice()))

    assert escaped in html
    assert value not in html


@pytest.mark.parametrize(
    "title",
    [
        "<script>alert(1)</script>",
        '"><img src=x onerror=alert(1)>',
        "' onmouseover='alert(1)",
    ],
)
def test_product_titles_are_escaped_in_the_html(title: str) -> None:
    item = Line(title, 1, 500, "https://cdn.tea.example/x.jpg")
    _, html = parts(compose(draft(items=(item,)), default_voice()))

    assert title not in html
    assert "<script" not in html and "<img src=x" not in html and "onerror=alert(1)>" not in html
    # Both in the cell and in the image's alt text, quotes included.
    assert (
        html.count(
            title.replace("&", "&amp;")
            .replace("<", "&lt;")
            .replace(">", "&gt;")
            .replace('"', "&#34;")
            .replace("'", "&#39;")
        )
        == 2
    )


def test_owner_wording_is_text_in_the_html_too() -> None:
    voice = parse_voice(
        DEFAULT_DOCUMENT.replace('button: "Return to your cart"', 'button: "Go <b>now</b>"')
    )

    _, html = parts(compose(draft(), voice))

    assert ">Go &lt;b&gt;now&lt;/b&gt;</a>" in html


_TEXT = st.text(max_size=80)


@settings(max_examples=200, deadline=None)
@given(first_name=st.none() | _TEXT, title=_TEXT, shop_name=_TEXT.filter(one_line))
@example(first_name=None, title="", shop_name=":\r")  # parseaddr lost the address to it
def test_no_text_anywhere_breaks_the_headers(
    first_name: str | None, title: str, shop_name: str
) -> None:
    composed = compose(
        draft(
            first_name=first_name,
            shop_name=shop_name,
            sender=formataddr((shop_name, "hello@tea.example")),  # as ShopRecord.sender
            items=(replace(draft().items[0], title=title),),
        ),
        CHATTY,
    )
    message = reparsed(composed)

    assert set(message.keys()) == HEADERS
    for name in ("Subject", "To", "From"):
        assert len(message.get_all(name) or []) == 1
    for name, header in message.items():
        assert "\r" not in header and "\n" not in header, name
    assert message["Subject"] == composed.subject
    assert message["To"] == "ana@example.com"
    shown_name = one_line(shop_name).replace("=?", "= ?")
    # Python's display-name parser keeps the folding space between two encoded words that
    # RFC 2047 (6.2) tells a reader to drop, so a long non-ASCII name may gain a space here.
    display_name = message["From"].addresses[0].display_name
    assert "".join(display_name.split()) == "".join(shown_name.split())
    assert composed.subject.endswith(f", your {shown_name} cart (£48.50)")


def test_a_subject_made_long_by_a_shoppers_name_is_cut_at_a_word() -> None:
    composed = compose(draft(first_name="Ana " * 100), CHATTY)

    assert len(composed.subject) <= 200
    assert composed.subject.startswith("Hi Ana Ana")
    assert composed.subject.endswith("Ana…")
