"""The rules and the voice in the browser: each problem beside its field and nothing stored,
a dry run that changes nothing, a preview composed as the sender would, the history with
what changed, rollback, and the same sign-in, CSRF and role checks as every form."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from cartnudge.db.models import AuditEntry, Cart, Role
from cartnudge.db.session import reading
from cartnudge.intake.examples import storefront_event
from cartnudge.messages.service import VOICE
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.versioned import current_documents, document_history
from cartnudge.timing.service import RULES
from tests.conftest import T0, ShopFactory
from tests.dashboard.helpers import csrf_of, sign_in, user
from tests.delivery.helpers import post
from tests.intake.helpers import post_storefront


def form_of(page: str) -> dict[str, str]:
    """The values a browser would send from a page's document form."""
    values = {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(
            r'<input type="text"[^>]* name="([^"]+)" value="([^"]*)"', page
        )
    }
    for name, body in re.findall(
        r'<textarea[^>]* name="([^"]+)"[^>]*>(.*?)</textarea>', page, re.S
    ):
        values[html.unescape(name)] = html.unescape(body)
    for name, options in re.findall(r'<select[^>]* name="([^"]+)"[^>]*>(.*?)</select>', page, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected', options) or re.search(
            r'<option value="([^"]*)"', options
        )
        values[name] = chosen.group(1) if chosen else ""
    values["csrf"] = re.search(r'name="csrf" value="([^"]*)"', page).group(1)  # type: ignore[union-attr]
    return values


def versions(engine: Engine, shop: ShopRecord, kind: str = "rules") -> list[int]:
    document = RULES if kind == "rules" else VOICE
    with reading(engine) as conn:
        return [v.version for v in document_history(conn, document, shop.id)]


def wakes(engine: Engine, shop: ShopRecord) -> dict[int, object]:
    with reading(engine) as conn:
        rows = conn.execute(select(Cart.c.id, Cart.c.next_wake_at).where(Cart.c.shop_id == shop.id))
        return {row.id: row.next_wake_at for row in rows}


def post_total(client: TestClient, shop: ShopRecord, cart_id: str, total: str) -> None:
    event = storefront_event(cart_id=cart_id, occurred_at=T0)
    item = {"sku": "ONE", "title": "One thing", "quantity": 1, "unit_price": total}
    event.update({"total": total, "items": [item]})
    assert post_storefront(client, shop, event).status_code == 200


@pytest.fixture
def owner(client: TestClient, engine: Engine, shop: ShopRecord) -> TestClient:
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    return client


def test_a_bad_rule_is_shown_beside_its_field_and_nothing_is_stored(
    owner: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    post(owner, shop, cart_id="c1")
    before = wakes(engine, shop)
    page = owner.get(f"/shops/{shop.slug}/rules")
    assert page.status_code == 200 and "Version 0" in page.text
    values = form_of(page.text)
    assert values["tiers.1.waits"] == "2h, 22h" and values["steps"] == "2"

    values.update({"tiers.1.waits": "2h, soon", "steps": "4", "action": "save"})
    answer = owner.post(f"/shops/{shop.slug}/rules", data=values)

    assert answer.status_code == 400
    # The message sits right after its own input, which is marked invalid.
    waits = re.search(
        r'name="tiers\.1\.waits"[^>]*>\s*<span class="field-error"[^>]*>([^<]*)', answer.text
    )
    assert waits and "'soon' is not a duration" in html.unescape(waits.group(1))
    steps = re.search(
        r'name="steps"[^>]*aria-invalid="true"[^>]*>\s*<span class="field-error"[^>]*>([^<]*)',
        answer.text,
    )
    assert steps and "less than or equal to 3" in steps.group(1)
    assert 'value="2h, soon"' in answer.text  # what the owner typed stays to be mended
    assert versions(engine, shop) == [0]
    assert wakes(engine, shop) == before


def test_saving_rules_stores_a_version_moves_the_timers_and_is_audited(
    owner: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    post(owner, shop, cart_id="c1")  # 64.00: the medium tier, first wait 2h
    (before,) = wakes(engine, shop).values()
    values = form_of(owner.get(f"/shops/{shop.slug}/rules").text)
    values.update({"tiers.1.waits": "30m, 22h", "action": "save", "note": "sooner for mid carts"})

    answer = owner.post(f"/shops/{shop.slug}/rules", data=values, follow_redirects=False)

    assert answer.status_code == 303 and answer.headers["location"].endswith("?done=saved")
    assert versions(engine, shop) == [0, 1]
    (after,) = wakes(engine, shop).values()
    assert (before - after).total_seconds() == 90 * 60  # 2h became 30m
    with reading(engine) as conn:
        rules = current_documents(conn, RULES, [shop.id])[shop.id]
        audit = conn.execute(select(AuditEntry).where(AuditEntry.c.action == "rules:set")).one()
    assert rules.version == 1 and "waits: [30m, 22h]" in rules.body
    assert audit.actor == "user:owner" and audit.reason == "sooner for mid carts"
    page = owner.get(f"/shops/{shop.slug}/rules?done=saved")
    assert "Version 1" in page.text and "now in force" in page.text


def test_the_dry_run_shows_the_new_times_and_stores_nothing(
    owner: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    post_total(owner, shop, "small", "10.00")
    post_total(owner, shop, "big", "500.00")
    before = wakes(engine, shop)
    values = form_of(owner.get(f"/shops/{shop.slug}/rules").text)
    values.update({"minimum_cart_value": "20", "tiers.2.waits": "3h, 20h", "action": "dry_run"})

    answer = owner.post(f"/shops/{shop.slug}/rules", data=values)

    assert answer.status_code == 200
    run = answer.text.split('id="dry-run"')[1]
    assert "Dry run: nothing was saved" in run
    assert "<strong>1</strong> later" in run and "<strong>1</strong> no longer reminded" in run
    assert "never" in run and "below the minimum of 20" in run
    assert "reminder 1 at" in run
    assert versions(engine, shop) == [0]
    assert wakes(engine, shop) == before


def test_history_shows_what_changed_and_rollback_restores_an_earlier_version(
    owner: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    values = form_of(owner.get(f"/shops/{shop.slug}/rules").text)
    values.update({"steps": "1", "action": "save"})
    owner.post(f"/shops/{shop.slug}/rules", data=values)

    history = owner.get(f"/shops/{shop.slug}/rules/history")
    assert history.status_code == 200
    assert '<span class="diff-add">+steps: 1</span>' in history.text
    assert "Roll back to 0" in history.text

    csrf = csrf_of(owner, f"/shops/{shop.slug}/rules/history")
    answer = owner.post(
        f"/shops/{shop.slug}/rules/rollback",
        data={"csrf": csrf, "version": "0"},
        follow_redirects=False,
    )

    assert answer.status_code == 303 and "done=rolled_back" in answer.headers["location"]
    assert versions(engine, shop) == [0, 1, 2]
    with reading(engine) as conn:
        current = current_documents(conn, RULES, [shop.id])[shop.id]
    assert current.value.steps == 2 and current.body == RULES.default_body
    page = owner.get(f"/shops/{shop.slug}/rules/history?version=2")
    assert "rollback to version 0" in page.text


@pytest.mark.parametrize(
    ("path", "data", "status", "message"),
    [
        ("rules/rollback", {"version": "abc"}, 400, "a version number"),
        ("rules/rollback", {"version": "7"}, 400, "no version 7"),
        ("rules", {"action": "launch"}, 400, "dry_run or save"),
        ("voice", {"action": "launch"}, 400, "preview or save"),
        ("voice", {"action": "preview", "step": "9"}, 400, "choose 1 to 2"),
        ("voice", {"action": "preview", "cart": "x"}, 400, "a cart number"),
        ("voice", {"action": "preview", "cart": "999999"}, 404, "not yours to see"),
        ("nothing/rollback", {"version": "0"}, 404, "not yours to see"),
    ],
)
def test_bad_requests_are_refused_and_change_nothing(
    owner: TestClient,
    engine: Engine,
    shop: ShopRecord,
    path: str,
    data: dict[str, str],
    status: int,
    message: str,
) -> None:
    editor = "voice" if path.startswith("voice") else "rules"
    page = owner.get(f"/shops/{shop.slug}/{editor}")
    values = (
        form_of(page.text)
        if "rollback" not in path
        else {"csrf": csrf_of(owner, f"/shops/{shop.slug}/rules")}
    )
    values.update(data)

    answer = owner.post(f"/shops/{shop.slug}/{path}", data=values)

    assert answer.status_code == status
    assert message in html.unescape(answer.text).lower() or message in html.unescape(answer.text)
    assert versions(engine, shop) == [0] and versions(engine, shop, "voice") == [0]


def test_history_of_a_version_there_is_not_is_a_404(owner: TestClient, shop: ShopRecord) -> None:
    assert owner.get(f"/shops/{shop.slug}/rules/history?version=5").status_code == 404
    assert owner.get(f"/shops/{shop.slug}/looks/history").status_code == 404
    assert owner.get(f"/shops/{shop.slug}/rules/history?version=x").status_code == 422


def test_a_bad_piece_of_wording_is_shown_beside_it(
    owner: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    values = form_of(owner.get(f"/shops/{shop.slug}/voice").text)
    assert "{{ shop_name }}" in values["first.subject"]
    values.update({"last.closing": "See you, {{ nickname }}", "first.button": "", "action": "save"})

    answer = owner.post(f"/shops/{shop.slug}/voice", data=values)

    assert answer.status_code == 400
    closing = re.search(
        r'name="last\.closing"[^>]*>[^<]*</textarea>\s*<span class="field-error"[^>]*>([^<]*)',
        answer.text,
    )
    assert closing and "unknown variable &#39;nickname&#39;" in closing.group(1)
    button = re.search(
        r'name="first\.button"[^>]*>\s*<span class="field-error"[^>]*>([^<]*)', answer.text
    )
    assert button and "renders empty" in button.group(1)
    assert versions(engine, shop, "voice") == [0]


def test_preview_composes_the_new_wording_on_a_real_cart_without_saving(
    owner: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    post(owner, shop, cart_id="c1")
    cart_id = next(iter(wakes(engine, shop)))
    page = owner.get(f"/shops/{shop.slug}/voice")
    assert f'<option value="{cart_id}">cart #{cart_id}' in page.text
    values = form_of(page.text)
    values.update(
        {
            "first.subject": "Still thinking it over, {{ greeting }}?",
            "first.lead": "<script>alert(1)</script> is what you typed",
            "action": "preview",
            "cart": str(cart_id),
            "step": "1",
        }
    )

    answer = owner.post(f"/shops/{shop.slug}/voice", data=values)

    assert answer.status_code == 200
    preview = answer.text.split('id="preview"')[1]
    assert "Still thinking it over, Hi" in preview
    assert f"about cart #{cart_id}" in preview
    frame = re.search(r'<iframe class="email-frame" sandbox [^>]*srcdoc="([^"]*)"', preview)
    assert frame is not None
    email_html = html.unescape(frame.group(1))
    assert "Blue enamel mug" in email_html  # the real cart's item, as the sender would show it
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email_html and "<script>" not in email_html
    assert "<script>alert" not in answer.text
    # Its links lead nowhere, and are disarmed as a sent email's are on its page.
    assert 'title="http://testserver/c/preview"' in email_html and "href=" not in email_html
    assert "style-src 'self' 'unsafe-inline'" in answer.headers["content-security-policy"]
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert versions(engine, shop, "voice") == [0]


def test_saved_wording_is_what_the_cli_shows(
    owner: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    values = form_of(owner.get(f"/shops/{shop.slug}/voice").text)
    values.update({"saved.closing": "Line one.\r\n\r\nLine two.", "action": "save"})

    answer = owner.post(f"/shops/{shop.slug}/voice", data=values, follow_redirects=False)

    assert answer.status_code == 303
    with reading(engine) as conn:
        current = current_documents(conn, VOICE, [shop.id])[shop.id]
    assert current.version == 1 and "closing: |-\n    Line one.\n\n    Line two." in current.body
    again = form_of(owner.get(f"/shops/{shop.slug}/voice").text)
    assert again["saved.closing"] == "Line one.\n\nLine two."


def test_a_viewer_reads_the_rules_but_cannot_change_them(
    client: TestClient, engine: Engine, shop: ShopRecord
) -> None:
    user(engine, "viewer", role=Role.VIEWER, shops=[shop.slug])
    sign_in(client, "viewer")
    page = client.get(f"/shops/{shop.slug}/rules")
    assert page.status_code == 200 and "<fieldset disabled>" in page.text
    assert "Save these rules" not in page.text
    values = form_of(page.text)
    values["action"] = "save"
    values["steps"] = "1"
    assert client.post(f"/shops/{shop.slug}/rules", data=values).status_code == 403
    history = client.get(f"/shops/{shop.slug}/voice/history")
    assert history.status_code == 200 and "Roll back" not in history.text
    answer = client.post(
        f"/shops/{shop.slug}/voice/rollback", data={"csrf": values["csrf"], "version": "0"}
    )
    assert answer.status_code == 403
    assert versions(engine, shop) == [0]


def test_no_sign_in_no_token_or_another_shop_changes_nothing(
    client: TestClient, engine: Engine, shop: ShopRecord, make_shop: ShopFactory
) -> None:
    other = make_shop(slug="other")
    for page in ("rules", "voice", "rules/history", "voice/history"):
        answer = client.get(f"/shops/{shop.slug}/{page}", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")
    user(engine, "owner", shops=[shop.slug])
    sign_in(client, "owner")
    values = form_of(client.get(f"/shops/{shop.slug}/rules").text)
    values.update({"steps": "1", "action": "save"})
    assert client.post(f"/shops/{shop.slug}/rules", data={**values, "csrf": ""}).status_code == 403
    assert client.get(f"/shops/{other.slug}/rules").status_code == 404
    assert client.post(f"/shops/{other.slug}/rules", data=values).status_code == 404
    assert (
        client.post(
            f"/shops/{other.slug}/rules/rollback", data={"csrf": values["csrf"], "version": "0"}
        ).status_code
        == 404
    )
    assert versions(engine, shop) == [0] and versions(engine, other) == [0]
