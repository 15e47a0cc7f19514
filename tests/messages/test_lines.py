"""The reminder's lines show what the shopper chose, and its figures add up to its total.

Real payloads (shared/fixtures) go in through the webhooks, the waiter decides and the
sender writes the email to the file outbox; the tests read both parts as a shopper would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from email.message import EmailMessage
from html.parser import HTMLParser
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine

from cartnudge.intake.examples import storefront_event
from cartnudge.messages.totals import summarise
from cartnudge.shops.repository import ShopRecord
from tests.conftest import T0, load_fixture
from tests.delivery.helpers import Pass
from tests.intake.helpers import carts, post_shopify, post_storefront, post_stripe
from tests.intake.test_stripe_lane import expired_event

H = timedelta(hours=1)


# -- reading an email as a shopper would ---------------------------------------------------
@dataclass
class Cell:
    text: list[str] = field(default_factory=list)
    images: int = 0

    @property
    def shown(self) -> str:
        return " ".join("".join(self.text).split())


class Tables(HTMLParser):
    """Every table of an HTML part as rows of cells; a cell holds the text and images of
    the tables nested in it."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tables: list[list[list[Cell]]] = []
        self._open: list[list[list[Cell]]] = []
        self.feed(html)

    def _cells(self) -> list[Cell]:
        return [table[-1][-1] for table in self._open if table and table[-1]]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
            self._open.append(self.tables[-1])
        elif tag == "tr" and self._open:
            self._open[-1].append([])
        elif tag == "td" and self._open:
            self._open[-1][-1].append(Cell())
        elif tag == "img":
            for cell in self._cells():
                cell.images += 1
        elif tag == "br":
            self.handle_data(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for cell in self._cells():
            cell.text.append(data)


def lines_table(html: str) -> list[list[Cell]]:
    """The table of the cart's lines: the one whose last figure is the total."""
    [table] = [t for t in Tables(html).tables if any(row and row[0].shown == "Total" for row in t)]
    return table


def amount(shown: str) -> Decimal:
    """A US-English dollar amount as shown ("$1,234.50", "-$10.00")."""
    assert re.fullmatch(r"-?\$[\d,]+\.\d\d", shown), shown
    return Decimal(shown.replace("$", "").replace(",", ""))


def assert_html_adds_up(html: str) -> list[list[str]]:
    """Each row is a line or a figure with its amount; the lines add up to the subtotal (or
    the total), the figures to the total. Returns the rows as text."""
    rows = lines_table(html)
    labels = {"Subtotal", "Discount", "Shipping", "Tax", "Total"}
    shown = [[cell.shown for cell in row] for row in rows if len(row) == 2]
    lines = [row for row in shown if row[0] not in labels]
    figures = {row[0]: amount(row[1]) for row in shown if row[0] in labels}
    lines_sum = sum(amount(total) for _, total in lines)
    if "Subtotal" in figures:
        assert lines_sum in (0, figures["Subtotal"])  # no lines (Stripe) or all of them
        assert sum(figures.values()) - figures["Total"] == figures["Total"]
    else:
        assert set(figures) == {"Total"}
        assert not lines or lines_sum == figures["Total"]
    for row in rows:  # two cells, or one note across both; never an empty cell
        assert len(row) == 2 or len(row) == 1, row
        assert all(cell.shown for cell in row), row
    return shown


def text_and_html(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    # The outbox keeps the wire's CRLF line ends; read them as a mail client shows them.
    return (
        text.get_content().replace("\r\n", "\n"),
        html.get_content().replace("\r\n", "\n"),
    )


def reminder(engine: Engine, shop: ShopRecord, run: Pass) -> tuple[str, str]:
    """The first reminder about the shop's only cart, whenever the rules send it."""
    [cart] = carts(engine, shop.id)
    at = cart.next_wake_at
    for _ in range(48):  # past any quiet hours
        run(at)
        if emails := run.emails():
            return text_and_html(emails[0])
        at += H
    raise AssertionError("no reminder was sent")


def shopify_checkout(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = load_fixture("shopify/rest/abandoned_checkout.json")["checkout"]
    payload["buyer_accepts_marketing"] = True  # the fixture's shopper did not opt in
    payload.update(changes)
    return payload


# -- the emails ----------------------------------------------------------------------------
def test_two_variants_of_one_product_are_two_lines_that_add_up_to_the_checkout_total(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    post_shopify(client, sender_shop, "checkouts/create", shopify_checkout(), "wh-1")

    text, html = reminder(engine, sender_shop, run)

    assert (
        "- IPod Nano - 8GB (Red): 1 × $199.00 = $199.00\n"
        "- IPod Nano - 8GB (Pink): 1 × $199.00 = $199.00\n"
        "\n"
        "Subtotal: $398.00\n"
        "Tax: $11.94\n"
        "Total: $409.94\n"
    ) in text
    assert "calculated at checkout" not in text  # the checkout knows its shipping and tax
    assert assert_html_adds_up(html) == [
        ["IPod Nano - 8GB Red 1 × $199.00", "$199.00"],
        ["IPod Nano - 8GB Pink 1 × $199.00", "$199.00"],
        ["Subtotal", "$398.00"],
        ["Tax", "$11.94"],
        ["Total", "$409.94"],
    ]
    # The fixture's lines have no image: no image, and no cell kept for one.
    assert "<img" not in html
    assert all(cell.images == 0 for row in lines_table(html) for cell in row)


def test_a_discount_and_shipping_are_shown_and_counted(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    # The fixture's TENOFF code applied, and a paid shipping line: Shopify's own sums.
    checkout = shopify_checkout(
        total_discounts="10.00",
        subtotal_price="388.00",
        shipping_lines=[{"title": "Standard", "price": "5.00", "code": "Standard"}],
        total_price="404.94",
    )
    post_shopify(client, sender_shop, "checkouts/create", checkout, "wh-1")

    text, html = reminder(engine, sender_shop, run)

    assert (
        "Subtotal: $398.00\nDiscount: -$10.00\nShipping: $5.00\nTax: $11.94\nTotal: $404.94\n"
    ) in text
    assert assert_html_adds_up(html)[2:] == [
        ["Subtotal", "$398.00"],
        ["Discount", "-$10.00"],
        ["Shipping", "$5.00"],
        ["Tax", "$11.94"],
        ["Total", "$404.94"],
    ]


def test_tax_included_in_the_prices_is_said_not_added(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    checkout = shopify_checkout(taxes_included=True, total_price="398.00")
    post_shopify(client, sender_shop, "checkouts/create", checkout, "wh-1")

    text, html = reminder(engine, sender_shop, run)

    assert "Total: $398.00\nIncludes $11.94 tax.\n" in text
    assert "Tax:" not in text and "Subtotal" not in text
    assert assert_html_adds_up(html)[-1] == ["Total", "$398.00"]
    assert lines_table(html)[-1][0].shown == "Includes $11.94 tax."


def test_parts_that_do_not_add_up_leave_the_total_alone(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    # Duties the lane does not read: 398.00 + 11.94 is not 429.94.
    post_shopify(
        client, sender_shop, "checkouts/create", shopify_checkout(total_price="429.94"), "wh-1"
    )

    text, html = reminder(engine, sender_shop, run)

    assert "Total: $429.94\n" in text
    for part in ("Subtotal", "Tax", "Discount", "Shipping", "calculated at checkout"):
        assert part not in text and part not in html
    # The lines do not make the total, and the email says why rather than leave a gap.
    assert "Total: $429.94\nThe total includes charges or savings not listed above.\n" in text
    rows = [[cell.shown for cell in row] for row in lines_table(html)]
    assert rows[-2:] == [
        ["Total", "$429.94"],
        ["The total includes charges or savings not listed above."],
    ]


def test_a_cart_without_shipping_or_tax_says_they_come_at_checkout(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    cart = load_fixture("shopify/rest/carts.json")["carts"][0]
    checkout = shopify_checkout(cart_token=cart["token"], line_items=[], total_price=None)
    for name in ("subtotal_price", "total_line_items_price", "total_tax", "shipping_lines"):
        del checkout[name]
    # The checkout gives the contact; the later cart gives the basket, and nothing else.
    post_shopify(client, sender_shop, "checkouts/create", checkout, "wh-1")
    cart.update(updated_at="2030-01-01T00:00:00Z")
    post_shopify(client, sender_shop, "carts/update", cart, "wh-2")

    text, html = reminder(engine, sender_shop, run)

    assert (
        "- test: 1 × $1.00 = $1.00\n\nTotal: $1.00\nShipping and taxes are calculated at checkout."
    ) in text
    assert assert_html_adds_up(html) == [["test 1 × $1.00", "$1.00"], ["Total", "$1.00"]]
    assert lines_table(html)[-1][0].shown == "Shipping and taxes are calculated at checkout."


def test_a_stripe_session_without_lines_shows_its_total(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    paid = load_fixture("stripe/checkout.session.completed.json")["data"]["object"]
    event = expired_event(
        amount_subtotal=paid["amount_subtotal"],
        amount_total=paid["amount_total"],
        total_details=paid["total_details"],
        consent={"promotions": "opt_in"},
        after_expiration={"recovery": {"enabled": True, "url": "https://buy.stripe.com/r/x"}},
    )
    post_stripe(client, sender_shop, event)

    text, html = reminder(engine, sender_shop, run)

    # Nothing taken off, no shipping, no tax: the subtotal would only repeat the total.
    assert "\nTotal: $30.00\n" in text
    assert "Subtotal" not in text and "calculated at checkout" not in text
    assert assert_html_adds_up(html) == [["Total", "$30.00"]]


def test_a_line_without_an_image_takes_no_room_for_one(
    client: TestClient, engine: Engine, sender_shop: ShopRecord, run: Pass
) -> None:
    event = storefront_event(cart_id="c-1", occurred_at=T0)  # one image, one without
    event["items"][0]["variant"] = "Blue"  # type: ignore[index]
    event.update(locale="en-US", currency="USD", subtotal="64.00", discount="6.40", shipping="4.95")
    event["total"] = "62.55"
    post_storefront(client, sender_shop, event)

    text, html = reminder(engine, sender_shop, run)

    assert "- Blue enamel mug (Blue): 2 × $12.00 = $24.00\n" in text
    assert "- Earl Grey, 250 g: 1 × $40.00 = $40.00\n" in text
    assert "Taxes are calculated at checkout." in text
    rows = lines_table(html)
    mug, tea = rows[0], rows[1]
    assert (mug[0].images, tea[0].images) == (1, 0)
    assert [cell.shown for cell in tea] == ["Earl Grey, 250 g 1 × $40.00", "$40.00"]
    assert assert_html_adds_up(html)[2:] == [
        ["Subtotal", "$64.00"],
        ["Discount", "-$6.40"],
        ["Shipping", "$4.95"],
        ["Total", "$62.55"],
    ]


# -- the rule, for any numbers -------------------------------------------------------------
_MONEY = st.integers(min_value=0, max_value=10**9)
_PART = st.none() | _MONEY


@given(
    lines=st.lists(st.none() | _MONEY, max_size=5),
    total=st.none() | _MONEY,
    subtotal=_PART,
    discount=_PART,
    shipping=_PART,
    tax=_PART,
    consistent=st.booleans(),
)
def test_what_is_shown_always_adds_up(
    lines: list[int | None],
    total: int | None,
    subtotal: int | None,
    discount: int | None,
    shipping: int | None,
    tax: int | None,
    consistent: bool,
) -> None:
    if consistent:  # most sources: the parts add up, with or without a subtotal given
        base = subtotal if subtotal is not None else sum(t or 0 for t in lines)
        total = base - (discount or 0) + (shipping or 0) + (tax or 0)

    summary = summarise(
        lines, total=total, subtotal=subtotal, discount=discount, shipping=shipping, tax=tax
    )

    assert summary.total_minor == total
    known = bool(lines) and None not in lines
    lines_sum = sum(t or 0 for t in lines)
    if summary.figures:
        assert sum(f.minor for f in summary.figures) == total
        assert summary.figures[0].label == "Subtotal"
        assert not known or lines_sum == summary.figures[0].minor
    elif known and total is not None and not summary.unlisted:
        assert lines_sum == total  # the lines shown make the total, or the email says not
    agree = subtotal is None or not known or lines_sum == subtotal
    if consistent and (subtotal is not None or known) and agree:
        # Nothing was left out: a source whose parts add up gets its breakdown.
        changes = [x for x in (discount, shipping, tax) if x]
        assert len(summary.figures) == (len(changes) + 1 if changes else 0)
        assert summary.included_tax_minor is None


def test_an_inconsistent_source_gets_no_breakdown() -> None:
    # Stripe's published fixture: generator values that add up to nothing.
    session = load_fixture("stripe/checkout.session.object.openapi_fixture.json")
    details = session["total_details"]

    summary = summarise(
        [],
        total=4200,
        subtotal=3000,
        discount=details["amount_discount"],
        shipping=details["amount_shipping"],
        tax=details["amount_tax"],
    )

    assert (summary.figures, summary.total_minor, summary.at_checkout) == ((), 4200, ())
