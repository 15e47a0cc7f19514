"""Compose one reminder email from a draft (what the sender knows about the cart and the
shop) and the shop's voice. Pure: no I/O, no clock; the same draft gives the same email,
down to the MIME boundary.

Shoppers type their names and product titles reach us from stores, so neither is trusted:
every control character (CR and LF above all) is collapsed to a space before anything can
reach a header, the encoded-word marker ``=?`` is broken up in header text (Python's email
package decodes encoded words it is handed, newlines included), and the HTML part is
rendered with autoescaping, so a title like ``<script>`` arrives as text.
"""

from __future__ import annotations

import binascii
import email
import email.policy
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from email.header import Header, decode_header, make_header
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from functools import cache, lru_cache
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency
from jinja2 import Environment, PackageLoader, StrictUndefined, Template, select_autoescape

from cartnudge.addresses import mailbox, usable
from cartnudge.messages.totals import Summary, line_total, summarise
from cartnudge.messages.voice import MAX_SUBJECT_CHARS, Voice, choose_variant, greeting
from cartnudge.money import minor_digits


@dataclass(frozen=True, slots=True)
class Line:
    title: str
    quantity: int
    unit_price_minor: int | None
    image_url: str | None
    variant: str | None = None  # what the shopper chose: "Red", "M / Blue"

    @classmethod
    def all_of(cls, items: Any) -> tuple[Line, ...]:
        """The lines of a cart's stored ``items``."""
        return tuple(
            cls(
                title=str(item.get("title") or ""),
                quantity=int(item.get("quantity") or 1),
                unit_price_minor=item.get("unit_price_minor"),
                image_url=item.get("image_url"),
                variant=item.get("variant"),
            )
            for item in items or ()
        )


@dataclass(frozen=True, slots=True)
class Draft:
    step: int  # 1-based reminder number
    last_step: bool  # this is the shop's final reminder
    saved_link: bool  # the cart came from a saved-cart link
    shop_name: str
    sender: str  # formatted From, e.g. 'Demo Shop <hello@demo.example>'
    postal_address: str
    to: str  # the shopper's address (already validated)
    first_name: str | None
    locale: str | None  # the shopper's locale if known, e.g. "fr-FR", "de_DE", "en"
    shop_locale: str  # the fallback, e.g. "en"
    currency: str | None
    total_minor: int | None
    items: tuple[Line, ...]
    return_link: str | None  # our tracked /c/ URL, or None (then no button)
    unsubscribe_url: str  # https .../u/{token}
    unsubscribe_mailto: str  # mailto:...?subject=...
    reply_to: str
    message_id: str  # '<...@...>'
    date: datetime  # aware
    # The parts of the total where the source gave them (see ``messages.totals``).
    subtotal_minor: int | None = None
    discount_minor: int | None = None
    shipping_minor: int | None = None
    tax_minor: int | None = None


@dataclass(frozen=True, slots=True)
class Composed:
    raw: bytes  # the email as it goes on the wire: CRLF line ends, 7-bit but for an
    # international (SMTPUTF8) address, which its headers carry in UTF-8
    subject: str
    variant: str  # "first" | "last" | "saved"

    @property
    def message(self) -> EmailMessage:
        """The email parsed back, for reading (previews and tests); the sender sends ``raw``."""
        # Read with Python's own line ends, as a mail client would show it.
        text = self.raw.replace(b"\r\n", b"\n")
        parsed = email.message_from_bytes(text, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass(frozen=True, slots=True)
class _Item:
    """One line of the cart as the layout shows it."""

    title: str
    variant: str | None
    quantity: int
    price: str  # the unit price, formatted; "" when unknown
    line_total: str  # the quantity times the unit price, formatted; "" when unknown
    image_url: str | None  # only an https image: a plain-http one would be blocked or warned
    text: str  # the whole line for the plain-text part


@dataclass(frozen=True, slots=True)
class _Figure:
    """One part of the total, shown under the lines and above the total."""

    label: str
    amount: str


# Shopify's name for the only variant of a product that has none to choose from.
_NO_VARIANT = "default title"
_AT_CHECKOUT = {
    ("shipping", "taxes"): "Shipping and taxes are calculated at checkout.",
    ("shipping",): "Shipping is calculated at checkout.",
    ("taxes",): "Taxes are calculated at checkout.",
}


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
FALLBACK_LOCALE = "en"


def one_line(text: str) -> str:
    """``text`` with every control character and run of white space made one space."""
    return " ".join(_CONTROL.sub(" ", text).split())


def _header_text(text: str) -> str:
    # A literal "=?…?=" would be decoded by the email package as an encoded word, and an
    # encoded word may carry a newline: keep the text, lose the marker.
    return one_line(text).replace("=?", "= ?")


@cache
def _layout() -> tuple[Template, Template]:
    """The text and HTML layouts, compiled once per process."""
    env = Environment(
        loader=PackageLoader("cartnudge.messages", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    return env.get_template("reminder.txt"), env.get_template("reminder.html")


@lru_cache(maxsize=512)
def _known_locale(tag: str | None) -> Locale | None:
    if not tag or not tag.strip():
        return None
    try:
        return Locale.parse(tag.strip().replace("-", "_"))
    except (ValueError, TypeError, UnknownLocaleError):
        return None


def money_locale(shopper: str | None, shop: str | None) -> Locale:
    """The shopper's locale, else the shop's, else English (an unknown tag is skipped)."""
    return _known_locale(shopper) or _known_locale(shop) or Locale.parse(FALLBACK_LOCALE)


@lru_cache(maxsize=4096)  # a shop's prices and totals recur from cart to cart
def format_money(minor: int, currency: str, locale: Locale) -> str:
    amount = Decimal(minor).scaleb(-minor_digits(currency))
    return str(format_currency(amount, currency, locale=locale))


def _shortened(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word, if it is longer: the owner's
    subject fits, but a shopper's name can be any length."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,.;:-") + "…"


def _paragraphs(text: str) -> list[list[str]]:
    """Paragraphs (split on blank lines) of lines, for the owner's lead and closing."""
    out = []
    for block in _PARAGRAPH_BREAK.split(text):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if lines:
            out.append(lines)
    return out


def _variant(line: Line, title: str) -> str | None:
    variant = one_line(line.variant or "")
    if not variant or variant.casefold() in (_NO_VARIANT, title.casefold()):
        return None
    return variant


def _item(line: Line, currency: str | None, locale: Locale) -> _Item:
    title = one_line(line.title) or "Item"
    variant = _variant(line, title)
    price = total = ""
    amount = line_total(line.quantity, line.unit_price_minor)
    if currency is not None and line.unit_price_minor is not None and amount is not None:
        price = format_money(line.unit_price_minor, currency, locale)
        total = format_money(amount, currency, locale)
    image = line.image_url if line.image_url and line.image_url.startswith("https://") else None
    text = f"{title} ({variant})" if variant else title
    if price:
        text += f": {line.quantity} × {price} = {total}"
    elif line.quantity != 1:
        text += f" × {line.quantity}"
    return _Item(title, variant, line.quantity, price, total, image, text)


def _summary(draft: Draft) -> Summary:
    if draft.currency is None:
        return Summary()
    return summarise(
        [line_total(line.quantity, line.unit_price_minor) for line in draft.items],
        total=draft.total_minor,
        subtotal=draft.subtotal_minor,
        discount=draft.discount_minor,
        shipping=draft.shipping_minor,
        tax=draft.tax_minor,
    )


def _notes(summary: Summary, currency: str | None, locale: Locale) -> list[str]:
    notes = []
    if summary.included_tax_minor is not None and currency is not None:
        notes.append(f"Includes {format_money(summary.included_tax_minor, currency, locale)} tax.")
    if summary.at_checkout:
        notes.append(_AT_CHECKOUT[summary.at_checkout])
    if summary.unlisted:
        notes.append("The total includes charges or savings not listed above.")
    return notes


def compose(draft: Draft, voice: Voice) -> Composed:
    """The reminder for ``draft`` in ``voice``: multipart/alternative, text and HTML."""
    if draft.date.tzinfo is None:
        raise ValueError("a draft's date must be timezone-aware")
    variant = choose_variant(draft.step, last_step=draft.last_step, saved_link=draft.saved_link)
    locale = money_locale(draft.locale, draft.shop_locale)
    shop_name = one_line(draft.shop_name)
    first_name = one_line(draft.first_name or "") or None
    items = [_item(line, draft.currency, locale) for line in draft.items]
    summary = _summary(draft)
    total = ""
    if draft.currency is not None and summary.total_minor is not None:
        total = format_money(summary.total_minor, draft.currency, locale)
    figures = [
        _Figure(figure.label, format_money(figure.minor, draft.currency, locale))
        for figure in summary.figures
        if draft.currency is not None
    ]
    wording = voice.render(
        variant,
        shop_name=shop_name,
        first_name=first_name,
        item_count=sum(line.quantity for line in draft.items),
        total=total,
        step=draft.step,
    )
    subject = _shortened(_header_text(wording.subject), MAX_SUBJECT_CHARS)
    kept = "saved a cart" if draft.saved_link else "left items in your cart"
    context = {
        "lang": (_known_locale(draft.shop_locale) or locale).language,
        "subject": subject,
        "greeting": greeting(first_name),
        "lead": _paragraphs(wording.lead),
        "items": items,
        "figures": figures,
        "total": total,
        "notes": _notes(summary, draft.currency, locale),
        "return_link": draft.return_link,
        "button": one_line(wording.button),
        "closing": _paragraphs(wording.closing),
        "shop_name": shop_name,
        "address_lines": [
            line.strip() for line in draft.postal_address.splitlines() if line.strip()
        ],
        "reason": f"You got this email because you {kept} at {shop_name} with this address.",
        "unsubscribe_url": draft.unsubscribe_url,
    }
    text_layout, html_layout = _layout()
    raw = _wire(draft, subject, text_layout.render(context), html_layout.render(context))
    return Composed(raw=raw, subject=subject, variant=variant)


CRLF = "\r\n"


def _wire(draft: Draft, subject: str, text: str, html: str) -> bytes:
    """The email's bytes, written directly: every header here is ours and already one
    line of safe text, so the email package's general parser and folder (most of what
    composing cost) have nothing to add. Non-ASCII goes into RFC 2047 encoded words, the
    bodies into quoted-printable, so the whole email is 7-bit."""
    # "=_" cannot occur in quoted-printable text, so no part can contain the boundary;
    # taken from the bodies, so the same draft gives the same bytes.
    boundary = "=_" + hashlib.blake2b(f"{text}\0{html}".encode(), digest_size=16).hexdigest()
    unsubscribe = (
        f"<{one_line(draft.unsubscribe_url)}>,{CRLF} <{one_line(draft.unsubscribe_mailto)}>"
    )
    headers = [
        f"From: {_sender_header(draft.sender)}",
        f"To: {_address(draft.to)}",
        f"Subject: {_encoded(subject)}",
        f"Date: {format_datetime(draft.date)}",
        f"Message-ID: {one_line(draft.message_id)}",
        f"Reply-To: {_address(draft.reply_to)}",
        f"List-Unsubscribe: {unsubscribe}",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",  # RFC 8058
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
    ]
    out = [CRLF.join(headers), "", ""]
    for body, subtype in ((text, "plain"), (html, "html")):
        # Quoted-printable keeps the parts 7-bit and every line short whatever the owner
        # or a store wrote; binascii encodes it in C.
        encoded = binascii.b2a_qp(body.encode(), istext=True).decode("ascii")
        out += [
            f"--{boundary}",
            f'Content-Type: text/{subtype}; charset="utf-8"',
            "Content-Transfer-Encoding: quoted-printable",
            "",
            CRLF.join(encoded.splitlines()),
        ]
    out += [f"--{boundary}--", ""]
    # 7-bit, but for an international address in a header (sent only with SMTPUTF8).
    return CRLF.join(out).encode("utf-8")


def _encoded(text: str) -> str:
    """Header text as it may appear on the wire: as it is if ASCII, else encoded words."""
    if text.isascii():
        return text
    return Header(text, "utf-8", header_name="Subject").encode(linesep=CRLF)


@lru_cache(maxsize=1024)  # a shop's From is the same on every email
def _sender_header(sender: str) -> str:
    return _address(sender)


def _address(value: str) -> str:
    """``Name <addr>`` or ``addr`` as a header address, its name cleaned of anything that
    could break out of the header and encoded when not ASCII. Control characters are made
    spaces before the parse: ``parseaddr`` loses the whole address to a carriage return in
    a quoted name (a shop named ``":\r"``), and the name is cleaned of them anyway."""
    name, addr = parseaddr(_CONTROL.sub(" ", value))
    if not usable(addr):  # the gate's own test: nothing that needs quoting
        raise ValueError(f"not an email address: {value!r}")
    addr = mailbox(addr).wire
    display = _header_text(str(make_header(decode_header(name)))) if name else ""
    if not addr.isascii():
        # An international address (RFC 6532) goes in UTF-8 as it is: it is only ever
        # sent with SMTPUTF8. ``formataddr`` refuses such an address, so it quotes or
        # encodes the name around a stand-in, and the address takes the stand-in's place.
        return formataddr((display, "@"), charset="utf-8")[:-3] + f"<{addr}>" if display else addr
    return formataddr((display, addr), charset="utf-8")
