"""The rules and the voice in the browser: edit either as a form (each problem beside its
field, nothing stored until the whole document is valid), a dry run of new rules over the
shop's open carts, a preview of new wording on a made-up or a real cart, every version
with what changed, and rollback. Saving and rolling back are the CLI's use cases
(``shops.versioned``), audited under the user's name."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Connection, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from cartnudge.dashboard.accounts import Viewer
from cartnudge.dashboard.document_forms import (
    CONSENT_CHOICES,
    VOICE_FIELDS,
    Filled,
    fill_rules,
    fill_voice,
    rules_field_names,
    rules_values,
    tier_rows,
    voice_values,
)
from cartnudge.dashboard.dry_run import dry_run
from cartnudge.dashboard.emails import read_email
from cartnudge.dashboard.web import Dashboard, PageError, field, not_found
from cartnudge.db.models import Cart
from cartnudge.db.session import writing
from cartnudge.messages.service import VOICE
from cartnudge.messages.voice import VARIANTS, Voice
from cartnudge.shops.repository import ShopRecord
from cartnudge.shops.versioned import (
    Current,
    DocumentKind,
    DocumentVersionError,
    current_documents,
    document_history,
    rollback_document,
    set_document,
)
from cartnudge.timing.rules import Rules
from cartnudge.timing.service import RULES

KINDS: dict[str, DocumentKind[Any]] = {"rules": RULES, "voice": VOICE}
NOTICES = {
    "saved": "Saved: this version is now in force.",
    "unchanged": "Nothing changed: the version in force stays.",
    "rolled_back": "Rolled back: the earlier version is in force again, as a new version.",
}
# Group problems shown beside a group of fields rather than above the form.
RULES_GROUPS = {"tiers", "quiet_hours"}


def document_router(dash: Dashboard) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    _rules_routes(router, dash)
    _voice_routes(router, dash)
    _history_routes(router, dash)
    return router


def _rules_routes(router: APIRouter, dash: Dashboard) -> None:
    @router.get("/shops/{slug}/rules")
    def rules_page(request: Request, slug: str) -> Response:
        viewer, shop, current = _current(dash, request, slug, RULES)
        values = rules_values(current.value)
        return _rules(dash, request, viewer, shop, Filled(values), current.version)

    @router.post("/shops/{slug}/rules")
    async def rules_post(request: Request, slug: str) -> Response:
        asked = await _posted(dash, request, slug, RULES, "dry_run")
        filled = fill_rules(_texts(asked.form, rules_field_names(_all_texts(asked.form))))
        page = partial(_rules, dash, request, asked.viewer, asked.shop, filled, asked.version)
        if not filled.valid:
            return page(status=400)
        if asked.action == "dry_run":
            current: Rules = asked.current.value
            proposed: Rules = filled.value
            run = await run_in_threadpool(
                dash.read,
                lambda conn: dry_run(
                    conn, asked.shop.id, asked.shop.timezone, current, proposed, dash.clock()
                ),
            )
            return page(run=run)
        return await _save(dash, RULES, asked, filled)


def _voice_routes(router: APIRouter, dash: Dashboard) -> None:
    @router.get("/shops/{slug}/voice")
    def voice_page(request: Request, slug: str) -> Response:
        viewer, shop, current = _current(dash, request, slug, VOICE)
        filled = Filled(voice_values(current.body))
        return _voice(dash, request, viewer, shop, filled, current.version)

    @router.post("/shops/{slug}/voice")
    async def voice_post(request: Request, slug: str) -> Response:
        asked = await _posted(dash, request, slug, VOICE, "preview")
        filled = fill_voice(_texts(asked.form, VOICE_FIELDS))
        page = partial(_voice, dash, request, asked.viewer, asked.shop, filled, asked.version)
        if not filled.valid:
            return page(status=400)
        if asked.action == "preview":
            preview = await run_in_threadpool(_preview, dash, asked.shop, filled.value, asked.form)
            return page(preview=preview)
        return await _save(dash, VOICE, asked, filled)


@dataclass(frozen=True)
class _Asked:
    """A posted editor form, checked: who, which shop, which button, and the version in
    force."""

    form: FormData
    viewer: Viewer
    shop: ShopRecord
    action: str
    current: Current[Any]

    @property
    def version(self) -> int:
        return self.current.version


def _current(
    dash: Dashboard, request: Request, slug: str, kind: DocumentKind[Any]
) -> tuple[Viewer, ShopRecord, Current[Any]]:
    viewer = dash.require(request)
    shop = dash.shop(viewer, slug)
    return viewer, shop, dash.read(lambda conn: current_documents(conn, kind, [shop.id])[shop.id])


async def _posted(
    dash: Dashboard, request: Request, slug: str, kind: DocumentKind[Any], trial: str
) -> _Asked:
    """An editor's form, with the button pressed: ``trial`` (changes nothing) or save."""
    form, viewer, shop = await dash.posted(request, slug)
    action = field(form, "action")
    if action not in (trial, "save"):
        raise PageError(400, f"action: {trial} or save")
    current = await run_in_threadpool(
        dash.read, lambda conn: current_documents(conn, kind, [shop.id])[shop.id]
    )
    return _Asked(form, viewer, shop, action, current)


def _history_routes(router: APIRouter, dash: Dashboard) -> None:
    @router.get("/shops/{slug}/{kind}/history")
    def history_page(
        request: Request, slug: str, kind: str, version: int | None = None
    ) -> Response:
        document = KINDS.get(kind)
        if document is None:
            raise not_found()
        viewer = dash.require(request)
        shop = dash.shop(viewer, slug)
        versions = dash.read(lambda conn: document_history(conn, document, shop.id))
        numbers = [v.version for v in versions]
        chosen = numbers[-1] if version is None else version
        if chosen not in numbers:
            raise PageError(404, f"The {kind} have no version {chosen}.")
        index = numbers.index(chosen)
        before = versions[index - 1] if index else None
        return dash.render(
            "history.html",
            {
                "shop": shop,
                "kind": kind,
                "versions": list(reversed(versions)),
                "current": numbers[-1],
                "chosen": versions[index],
                "diff": _diff(before.body if before else "", versions[index].body),
                "before": before,
                "notice": NOTICES.get(request.query_params.get("done", "")),
            },
            viewer=viewer,
            here=request.url.path,
        )

    @router.post("/shops/{slug}/{kind}/rollback")
    async def rollback(request: Request, slug: str, kind: str) -> Response:
        document = KINDS.get(kind)
        if document is None:
            raise not_found()
        form, viewer, shop = await dash.posted(request, slug)
        version = field(form, "version") or ""
        if not version.isdigit():
            raise PageError(400, "version: a version number, 0 or more")

        def back() -> bool:
            with writing(dash.engine, "dashboard") as conn:
                _, changed = rollback_document(
                    conn, document, shop, int(version), dash.clock(), actor=_actor(viewer)
                )
            return changed

        try:
            changed = await run_in_threadpool(back)
        except DocumentVersionError as exc:
            raise PageError(400, str(exc)) from None
        done = "rolled_back" if changed else "unchanged"
        return RedirectResponse(f"/shops/{shop.slug}/{kind}/history?done={done}", status_code=303)


async def _save(
    dash: Dashboard, kind: DocumentKind[Any], asked: _Asked, filled: Filled
) -> Response:
    assert filled.text is not None
    text, note = filled.text, field(asked.form, "note") or None

    def store() -> bool:
        with writing(dash.engine, "dashboard") as conn:
            _, changed = set_document(
                conn, kind, asked.shop, text, dash.clock(), actor=_actor(asked.viewer), note=note
            )
        return changed

    changed = await run_in_threadpool(store)
    done = "saved" if changed else "unchanged"
    return RedirectResponse(f"/shops/{asked.shop.slug}/{kind.name}?done={done}", status_code=303)


def _actor(viewer: Viewer) -> str:
    return f"user:{viewer.login}"[:64]


def _all_texts(form: FormData) -> dict[str, str]:
    return {name: value for name, value in form.items() if isinstance(value, str)}


def _texts(form: FormData, names: set[str]) -> dict[str, str]:
    """The form's fields of ``names`` (each checked by ``field``: text, not too long)."""
    return {name: field(form, name) or "" for name in names}


def _rules(
    dash: Dashboard,
    request: Request,
    viewer: Viewer,
    shop: ShopRecord,
    filled: Filled,
    version: int,
    *,
    run: Any = None,
    status: int = 200,
) -> Response:
    names = rules_field_names(filled.values)
    return dash.render(
        "rules.html",
        {
            "shop": shop,
            "form": filled,
            "version": version,
            "rows": tier_rows(filled.values),
            "consents": CONSENT_CHOICES,
            "elsewhere": filled.elsewhere(names | RULES_GROUPS),
            "run": run,
            "notice": NOTICES.get(request.query_params.get("done", "")),
        },
        viewer=viewer,
        status=status,
        here=request.url.path,
    )


def _voice(
    dash: Dashboard,
    request: Request,
    viewer: Viewer,
    shop: ShopRecord,
    filled: Filled,
    version: int,
    *,
    preview: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    carts = dash.read(lambda conn: _recent_carts(conn, shop.id))
    response = dash.render(
        "voice.html",
        {
            "shop": shop,
            "form": filled,
            "version": version,
            "variants": VARIANTS,
            "elsewhere": filled.elsewhere(VOICE_FIELDS),
            "preview": preview,
            "carts": carts,
            "notice": NOTICES.get(request.query_params.get("done", "")),
        },
        viewer=viewer,
        status=status,
        here=request.url.path,
    )
    if preview is not None:
        # The email's own styles are inline, as mail clients need; the preview frame
        # inherits this page's policy, so this page alone allows inline styles (still no
        # script of any kind, and the frame is sandboxed).
        response.headers["Content-Security-Policy"] = response.headers[
            "Content-Security-Policy"
        ].replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
    return response


PREVIEW_CARTS = 20  # the shop's most recently active carts offered for a preview


def _recent_carts(conn: Connection, shop_id: int) -> list[Any]:
    return list(
        conn.execute(
            select(Cart.c.id, Cart.c.total_minor, Cart.c.currency, Cart.c.last_activity_at)
            .where(Cart.c.shop_id == shop_id)
            .order_by(Cart.c.last_activity_at.desc())
            .limit(PREVIEW_CARTS)
        )
    )


def _preview(dash: Dashboard, shop: ShopRecord, voice: Voice, form: FormData) -> dict[str, Any]:
    """The proposed wording composed as the sender would, for the chosen reminder and cart."""
    from cartnudge.messages.compose import compose
    from cartnudge.messages.preview import preview_draft

    steps = dash.read(lambda conn: current_documents(conn, RULES, [shop.id])[shop.id]).value.steps
    step = field(form, "step") or "1"
    if not step.isdigit() or not 1 <= int(step) <= steps:
        raise PageError(
            400, f"step: the shop's rules send {steps} reminder(s); choose 1 to {steps}"
        )
    chosen = field(form, "cart") or ""
    cart = None
    if chosen:
        if not chosen.isdigit():
            raise PageError(400, "cart: a cart number, or none for a made-up cart")
        cart = dash.read(
            lambda conn: conn.execute(
                select(Cart).where(Cart.c.id == int(chosen), Cart.c.shop_id == shop.id)
            ).first()
        )
        if cart is None:
            raise not_found()
    draft = preview_draft(
        shop,
        step=int(step),
        steps=steps,
        saved=field(form, "saved") == "yes",
        public_url=dash.settings.public_url,
        now=dash.clock(),
        cart=cart,
    )
    composed = compose(draft, voice)
    shown = read_email(composed.raw)  # as the email page shows a sent one: links disarmed
    return {
        "subject": composed.subject,
        "variant": composed.variant,
        "step": int(step),
        "cart": cart.id if cart is not None else None,
        "text": shown.text or "",
        "html": shown.html or "",
    }


def _diff(before: str, after: str) -> list[tuple[str, str]]:
    """The change from ``before`` to ``after`` as (kind, line): kind is ``+``, ``-``,
    ``@`` (where a change starts) or `` `` (context)."""
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), lineterm="", n=3, fromfile="", tofile=""
    )
    out = []
    for line in lines:
        if line.startswith(("---", "+++")):
            continue
        out.append((line[:1] or " ", line[1:] if line[:1] in "+- " else line))
    return out
