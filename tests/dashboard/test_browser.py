"""The dashboard driven in a real browser: Debian's Chromium through Playwright, against a
real ``cartnudge serve``. Each test saves screenshots under ``var/screenshots`` (ignored
by git) as a record of what the owner saw."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cartnudge.intake.examples import storefront_event
from cartnudge.intake.signatures import sign_standard
from tests.e2e.test_first_run import cli, start_server

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
PASSWORD = "a browser's password"
# As root in a container, and on a machine with no way out: no sandbox, nothing fetched.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    process, env, base = start_server(tmp_path)
    try:
        yield env, base
    finally:
        process.terminate()
        process.communicate(timeout=30)


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context()
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in_admin(page: Any, base: str, target: str | None = None) -> None:
    """Signed in as the admin: at ``target``, asked for sign-in on the way, or at once."""
    page.goto(f"{base}{target or '/signin'}")
    page.fill("#login", "admin")
    page.fill("#password", PASSWORD)
    page.click("form[action='/signin'] button")
    if target:
        page.wait_for_url(f"{base}{target}")


def admin_password(env: dict[str, str]) -> None:
    done = subprocess.run(
        [*cli_command(), "user", "passwd", "admin", "--password-stdin"],
        env=env,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def cli_command() -> list[str]:
    from tests.e2e.test_first_run import CARTNUDGE

    return [CARTNUDGE]


def shop_with_carts(env: dict[str, str], base: str, emails: list[str]) -> str:
    """A shop that can send, and one storefront cart per address; its slug."""
    added = cli(
        env,
        "shop",
        "add",
        "browser",
        "--name",
        "Browser <b>Shop</b>",
        "--timezone",
        "Europe/London",
        "--currency",
        "GBP",
        "--sender",
        "Shop <hello@shop.example>",
        "--address",
        "1 High Street, London",
    )
    assert added.returncode == 0, added.stderr
    secret = json.loads(added.stdout)["webhooks"]["storefront"]["secret"]
    now = datetime.now(UTC)
    for n, email in enumerate(emails):
        body = json.dumps(
            storefront_event(cart_id=f"browser-{n}", occurred_at=now, email=email)
        ).encode()
        headers = sign_standard(body, f"msg_browser_{n}", secret, int(now.timestamp()))
        headers["content-type"] = "application/json"
        answer = httpx.post(f"{base}/webhooks/storefront/browser", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
    return "browser"


def test_sign_in_find_a_cart_read_its_timeline_suppress_it_and_no_email_goes(
    served: tuple[dict[str, str], str], page: Any, tmp_path: Path
) -> None:
    env, base = served
    admin_password(env)
    slug = shop_with_carts(env, base, ["keep@example.com", "stop@example.com"])

    page.goto(f"{base}/shops/{slug}/carts")
    assert page.url.startswith(f"{base}/signin")
    page.fill("#login", "admin")
    page.fill("#password", "not it at all")
    page.click("button[type=submit]")
    assert "wrong login or password" in page.inner_text("[role=alert]")
    page.fill("#login", "admin")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/shops/{slug}/carts")
    shot(page, "01-cart-list")
    assert page.locator("tbody tr").count() == 2
    assert "Browser <b>Shop</b>" in page.inner_text("h1")  # the name, as text

    page.fill("#email", "stop@example.com")
    page.click("text=Show")
    page.wait_for_function("document.querySelectorAll('tbody tr').length === 1")
    page.click("tbody a")
    shot(page, "02-cart-timeline")
    assert "received checkout_started" in page.inner_text(".timeline")
    assert "s•••@example.com" in page.inner_text("body")

    page.click("text=Suppress…")
    assert "Send no reminder about these carts?" in page.inner_text("h1")
    page.fill("#reason", "asked by phone")
    page.click("form[action$='/carts/act'] button.danger")
    page.wait_for_selector("[role=status]")
    shot(page, "03-suppressed")
    assert "Suppressed: 1 cart(s)." in page.inner_text("[role=status]")
    assert "status:suppressed by user:admin" in page.inner_text(".timeline")

    # Noon the next day in London: the other cart's first reminder goes, this one's not.
    noon = (datetime.now(UTC) + timedelta(days=1)).replace(hour=12, minute=0, second=0)
    ticked = cli(env, "tick", "--now", noon.isoformat())
    assert ticked.returncode == 0, ticked.stderr
    outbox = Path(env["CARTNUDGE_HOME"]) / "outbox" / slug
    sent = [p.read_text() for p in outbox.glob("*.eml")]
    assert len(sent) == 1
    assert "keep@example.com" in sent[0] and "stop@example.com" not in sent[0]


def test_pause_the_shop_and_nothing_goes_until_it_resumes(
    served: tuple[dict[str, str], str], page: Any
) -> None:
    env, base = served
    admin_password(env)
    slug = shop_with_carts(env, base, ["one@example.com"])
    sign_in_admin(page, base)
    page.goto(f"{base}/shops/{slug}/carts")
    page.fill("input[name=reason]", "checking the copy")
    page.click("text=Pause all sending")
    page.wait_for_selector(".paused")
    shot(page, "04-paused")
    banner = page.inner_text(".paused")
    assert "Sending is paused for Browser <b>Shop</b>" in banner and "checking the copy" in banner
    page.click("tbody a")  # every page of the shop says so
    assert "Sending is paused" in page.inner_text(".paused")

    noon = (datetime.now(UTC) + timedelta(days=1)).replace(hour=12, minute=0, second=0)
    held = cli(env, "tick", "--now", noon.isoformat())
    assert json.loads(held.stdout)["sender"]["held"] == 1
    outbox = Path(env["CARTNUDGE_HOME"]) / "outbox" / slug
    assert list(outbox.glob("*.eml")) == []

    page.click("text=Resume sending")
    page.wait_for_selector("[role=status]")
    assert page.locator(".paused").count() == 0
    sent = cli(env, "tick", "--now", (noon + timedelta(minutes=1)).isoformat())
    assert json.loads(sent.stdout)["sender"]["sent"] == 1
    assert len(list(outbox.glob("*.eml"))) == 1


def test_add_a_shop_and_send_its_test_event(served: tuple[dict[str, str], str], page: Any) -> None:
    env, base = served
    admin_password(env)
    sign_in_admin(page, base)
    page.click("text=Add a shop")
    page.fill("#slug", "tea-house")
    page.fill("#name", "Tea House")
    page.fill("#timezone", "Mars/Olympus")
    page.fill("#currency", "EUR")
    page.click("form[action='/shops/new'] button")
    assert "not an IANA time zone" in page.inner_text("#timezone-error")  # beside the field
    page.fill("#timezone", "Europe/Paris")
    page.click("form[action='/shops/new'] button")
    shot(page, "05-shop-added")
    assert "shown in full on this page only" in page.inner_text("[role=status]")
    assert "/webhooks/storefront/tea-house" in page.inner_text("table")
    page.click("form[action$='/test-event'] button")
    page.wait_for_selector(".arrived")
    shot(page, "06-test-event")
    assert "Arrived: answered 200, applied" in page.inner_text(".arrived")
    assert "✓ a first event received" in page.inner_text(".checklist")
    page.click(".arrived a")
    assert "received checkout_started" in page.inner_text(".timeline")


def test_today_shows_the_days_figures(served: tuple[dict[str, str], str], page: Any) -> None:
    env, base = served
    admin_password(env)
    slug = shop_with_carts(env, base, ["one@example.com", "two@example.com"])
    sign_in_admin(page, base, f"/shops/{slug}/today")
    shot(page, "07-today")
    seen = page.locator("table.figures tr", has_text="Carts seen").inner_text()
    assert seen.split()[-3:] == ["2", "2", "2"]
    assert page.locator("svg[role=img]").count() == 1


def test_edit_the_rules_see_the_error_dry_run_save_and_roll_back(
    served: tuple[dict[str, str], str], page: Any
) -> None:
    env, base = served
    admin_password(env)
    slug = shop_with_carts(env, base, ["one@example.com"])
    sign_in_admin(page, base)
    page.goto(f"{base}/shops/{slug}/rules")
    page.fill("input[name='tiers.1.waits']", "2h, tomorrow")
    page.click("button[value=save]")
    shot(page, "08-rule-error")
    error = page.locator("input[name='tiers.1.waits'] + .field-error")
    assert "'tomorrow' is not a duration" in error.inner_text()  # right beside the field
    assert page.get_attribute("input[name='tiers.1.waits']", "aria-invalid") == "true"
    assert "Version 0" in page.inner_text("main")

    page.fill("input[name='tiers.1.waits']", "2h, 22h")
    page.fill("#f-minimum_cart_value", "100")  # the cart of 64.00 falls below it
    page.click("button[value=dry_run]")
    page.wait_for_selector("#dry-run")
    shot(page, "09-dry-run")
    run = page.inner_text("#dry-run")
    assert "nothing was saved" in run and "1 no longer reminded" in run
    assert "below the minimum of 100" in run
    assert "Version 0" in page.inner_text("main")

    page.fill("#f-note", "only carts of 100 or more")
    page.click("button[value=save]")
    page.wait_for_selector("[role=status]")
    assert "Version 1 is in force" in page.inner_text("main")

    page.click("text=Every version")
    diff = page.inner_text("pre.diff")
    assert "-minimum_cart_value: 0" in diff and "+minimum_cart_value: 100" in diff
    page.click("text=Roll back to 0")
    page.wait_for_selector("[role=status]")
    shot(page, "10-rolled-back")
    assert "Rolled back" in page.inner_text("[role=status]")
    assert "rollback to version 0" in page.inner_text("table.versions")
    shown = cli(env, "rules", "show", "--shop", slug)
    assert (
        "# browser: rules version 2" in shown.stdout
        and "medium, from: 40, waits: [2h, 22h]" in (shown.stdout)
    )


def test_preview_new_wording_on_a_real_cart(served: tuple[dict[str, str], str], page: Any) -> None:
    env, base = served
    admin_password(env)
    slug = shop_with_carts(env, base, ["one@example.com"])
    sign_in_admin(page, base)
    page.goto(f"{base}/shops/{slug}/voice")
    page.fill("#f-first\\.subject", "Your {{ item_count }} things at {{ shop_name }}")
    page.select_option("#f-cart", index=1)
    page.click("button[value=preview]")
    page.wait_for_selector("#preview")
    assert "Your 3 things at Browser <b>Shop</b>" in page.inner_text("#preview .subject")
    frame = page.frame_locator("iframe.email-frame")
    assert "Blue enamel mug" in frame.locator("body").inner_text()
    page.locator("#preview").scroll_into_view_if_needed()
    shot(page, "11-voice-preview")
    assert "Version 0" in page.inner_text("main")  # a preview saves nothing


def test_open_a_reminder_from_its_cart_and_read_it_as_the_shopper_saw_it(
    served: tuple[dict[str, str], str], page: Any
) -> None:
    env, base = served
    admin_password(env)
    slug = shop_with_carts(env, base, ["reader@example.com"])
    noon = (datetime.now(UTC) + timedelta(days=1)).replace(hour=12, minute=0, second=0)
    sent = cli(env, "tick", "--now", noon.isoformat())
    assert json.loads(sent.stdout)["sender"]["sent"] == 1
    sign_in_admin(page, base, f"/shops/{slug}/carts")
    page.click("tbody a")
    page.click(".timeline a.email-link")
    page.wait_for_selector("iframe.email-html")
    frame = page.frame_locator("iframe.email-html")
    assert "Blue enamel mug" in frame.locator("body").inner_text()
    # The shopper's links are there to read, not to follow.
    assert frame.locator("a").count() >= 1
    assert frame.locator("a[href]").count() == 0
    assert "/u/" in (frame.locator("a").last.get_attribute("title") or "")
    shot(page, "12-email")
    # A sandboxed frame is drawn by a process of its own, which a full-page screenshot
    # leaves blank, and which paints a moment after its document is ready: the frame in
    # view, as the owner sees it, once painted.
    page.locator("iframe.email-html").scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SCREENSHOTS / "13-email-frame.png"))
    text = page.inner_text("pre.email-text")
    assert "Blue enamel mug" in text and "1 High Street, London" in text
    assert "r•••@example.com" in page.inner_text("table.facts")
    assert "reader@example.com" not in page.content()
