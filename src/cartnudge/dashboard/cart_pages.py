"""The cart list, one cart's page, and the actions on carts (one or many, confirmed
first, audited under the user's name)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from cartnudge.carts.queries import (
    CartFilter,
    carts_of,
    not_reminded,
    page_of_carts,
    show_cart,
)
from cartnudge.dashboard.actions import ACTIONS, ActionRequest, act_on_carts, applies
from cartnudge.dashboard.timeline import Entry, timeline
from cartnudge.dashboard.web import (
    MAX_FORM_FIELD,
    Dashboard,
    PageError,
    field,
    not_found,
    safe_next,
)
from cartnudge.db.models import CartStatus
from cartnudge.db.session import writing
from cartnudge.events import email_key
from cartnudge.money import to_minor
from cartnudge.shops.repository import ShopRecord
from cartnudge.timing.service import rules_of

PAGE_SIZE = 50


# The pause is said by the banner on every page; resuming gets a word of its own.
CONTROL_NOTICES = {"resumed": "Sending resumed: the reminders the pause held go now."}


def _notice(code: str | None) -> str | None:
    """The notice after an action, from the code its redirect carries (``action.done.left``,
    or a control's name): the page writes the words, so a crafted link cannot put its own
    on the page."""
    if not code:
        return None
    if code in CONTROL_NOTICES:
        return CONTROL_NOTICES[code]
    action, _, counts = code.partition(".")
    done, _, left = counts.partition(".")
    if action not in ACTIONS or not done.isdigit() or not left.isdigit():
        return None
    text = f"{ACTIONS[action].done}: {int(done)} cart(s)."
    if int(left):
        text += f" {int(left)} left as they were (already stopped, or no address)."
    return text


def _cart_ids(form: FormData) -> list[int]:
    ids = []
    for value in form.getlist("cart"):
        if not isinstance(value, str) or not value.isdigit() or len(value) > 18:
            raise PageError(400, "a selected cart is not a cart number")
        ids.append(int(value))
    if not ids:
        raise PageError(400, "choose at least one cart")
    if len(ids) > 500:
        raise PageError(400, "at most 500 carts at a time")
    return list(dict.fromkeys(ids))


def _cursor(text: str | None) -> tuple[datetime, int] | None:
    """A page's start, as the previous page's link wrote it: ``<instant>~<cart id>``."""
    if not text:
        return None
    at, _, cart_id = text.rpartition("~")
    try:
        instant = datetime.fromisoformat(at)
    except ValueError:
        raise PageError(400, "that page link is not valid; start from the first page") from None
    if instant.tzinfo is None or not cart_id.isdigit():
        raise PageError(400, "that page link is not valid; start from the first page")
    return instant, int(cart_id)


def _day(text: str | None, shop: ShopRecord, name: str) -> datetime | None:
    """A date typed in a filter, as the instant its day starts in the shop's time zone."""
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise PageError(400, f"{name}: {text!r} is not a date (YYYY-MM-DD)") from None
    return day.replace(tzinfo=ZoneInfo(shop.timezone))


def _filter(
    request: Request, shop: ShopRecord, tiers: list[Any]
) -> tuple[CartFilter, dict[str, str]]:
    """The cart list's filters from its query string, checked; and as given, for the form."""
    given = {
        name: request.query_params.get(name, "")[:MAX_FORM_FIELD]
        for name in ("status", "tier", "since", "until", "email", "reminded")
    }
    status = given["status"] or None
    if status is not None and status not in {s.value for s in CartStatus}:
        raise PageError(400, f"status: no status {status!r}")
    reminded = {"": None, "yes": True, "no": False}.get(given["reminded"], "bad")
    if reminded == "bad":
        raise PageError(400, "reminded: yes or no")
    email = None
    if given["email"]:
        email = email_key(given["email"])
        if email is None:
            raise PageError(400, "email: not one email address")
    until = _day(given["until"], shop, "until")
    total_from = total_below = None
    unknown = False
    if given["tier"]:
        names = [t.name for t in tiers]
        if given["tier"] not in names:
            raise PageError(400, f"tier: no tier {given['tier']!r} in this shop's rules")
        at = names.index(given["tier"])
        total_from = to_minor(Decimal(tiers[at].from_), shop.currency)
        if at + 1 < len(tiers):
            total_below = to_minor(Decimal(tiers[at + 1].from_), shop.currency)
        unknown = at == (len(tiers) - 1) // 2  # a cart with no total takes the middle tier
    where = CartFilter(
        status=status,
        total_from=total_from,
        total_below=total_below,
        with_unknown_total=unknown,
        active_since=_day(given["since"], shop, "since"),
        active_before=until + timedelta(days=1) if until else None,
        email_key=email,
        reminded=reminded if isinstance(reminded, bool) else None,
    )
    return where, given


def cart_router(dash: Dashboard) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    # -- shops and carts -------------------------------------------------------------

    @router.get("/")
    def home(request: Request) -> Response:
        viewer = dash.require(request)
        shops = dash.shops_of(viewer)
        if len(shops) == 1 and not viewer.can_act:  # nothing else to choose or do here
            return RedirectResponse(f"/shops/{shops[0].slug}/today", status_code=303)
        return dash.render("shops.html", {"shops": shops}, viewer=viewer)

    @router.get("/shops/{slug}/carts")
    def cart_list(request: Request, slug: str) -> Response:
        viewer = dash.require(request)
        shop = dash.shop(viewer, slug)
        tiers = list(dash.read(lambda conn: rules_of(conn, [shop.id])[shop.id].value.tiers))
        where, given = _filter(request, shop, tiers)
        after = _cursor(request.query_params.get("after"))
        page = dash.read(
            lambda conn: page_of_carts(conn, shop.id, where, after=after, limit=PAGE_SIZE)
        )
        next_link = None
        if page.next_after is not None:
            at, cart_id = page.next_after
            params = {k: v for k, v in given.items() if v}
            params["after"] = f"{at.isoformat()}~{cart_id}"
            next_link = params
        return dash.render(
            "carts.html",
            {
                "shop": shop,
                "rows": page.rows,
                "given": given,
                "tiers": [t.name for t in tiers],
                "statuses": [s.value for s in CartStatus],
                "next_link": next_link,
                "first_page": after is None,
                "notice": _notice(request.query_params.get("done")),
            },
            viewer=viewer,
            here=request.url.path,
        )

    @router.get("/shops/{slug}/carts/{cart_id}")
    def cart_page(request: Request, slug: str, cart_id: str) -> Response:
        viewer = dash.require(request)
        shop = dash.shop(viewer, slug)
        if not cart_id.isdigit() or len(cart_id) > 18:
            raise not_found()

        def story(conn: Connection) -> tuple[dict[str, Any] | None, list[Entry]]:
            view = show_cart(conn, int(cart_id))
            if view is None or view["shop_id"] != shop.id:
                return None, []
            return view, timeline(conn, view)

        view, entries = dash.read(story)  # the cart and its timeline in one read
        if view is None:
            raise not_found()
        return dash.render(
            "cart.html",
            {
                "shop": shop,
                "cart": view,
                "timeline": entries,
                "reveal": request.query_params.get("reveal") == "address",
                "why_not": not_reminded(view, shop.activated_at),
                "actions": {
                    name: action
                    for name, action in ACTIONS.items()
                    # an address the sender could use: one given, with no problem found
                    if applies(
                        name, view["status"], bool(view["email"]) and not view["address_problem"]
                    )
                },
                "notice": _notice(request.query_params.get("done")),
            },
            viewer=viewer,
            here=request.url.path,
        )

    return router


def action_router(dash: Dashboard) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.post("/shops/{slug}/carts/act")
    async def act(request: Request, slug: str) -> Response:
        """One action on the selected carts: first a page to confirm it, then, with
        ``confirmed``, done and audited; back to where it was asked."""
        form, viewer, shop = await dash.posted(request, slug)
        action = field(form, "action") or ""
        if action not in ACTIONS:
            raise PageError(400, f"no action {action!r}")
        reason = (field(form, "reason") or "").strip() or None
        ids = _cart_ids(form)
        back = safe_next(field(form, "back") or f"/shops/{shop.slug}/carts")
        confirmed = field(form, "confirmed") == "yes"
        error = None
        if confirmed and ACTIONS[action].needs_reason and not reason:
            confirmed, error = False, "a reason is needed: it is kept with the change"
        if not confirmed:
            chosen = await run_in_threadpool(dash.read, lambda conn: carts_of(conn, shop.id, ids))
            if len(chosen) != len(set(ids)):
                raise not_found()
            return dash.render(
                "confirm.html",
                {
                    "shop": shop,
                    "action": ACTIONS[action],
                    "action_name": action,
                    "carts": chosen,
                    "reason": reason,
                    "back": back,
                    "error": error,
                },
                viewer=viewer,
                status=400 if error else 200,
                here=f"/shops/{shop.slug}/carts",
            )
        asked = ActionRequest(action, ids, reason, f"user:{viewer.login}"[:64])

        def apply() -> dict[str, Any]:
            with writing(dash.engine, "dashboard") as conn:
                return act_on_carts(conn, shop.id, asked, dash.clock())

        outcome = await run_in_threadpool(apply)
        done = f"{action}.{outcome['done']}.{len(outcome['skipped'])}"
        separator = "&" if "?" in back else "?"
        return RedirectResponse(f"{back}{separator}done={done}", status_code=303)

    return router
