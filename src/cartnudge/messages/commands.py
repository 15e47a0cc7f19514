"""``cartnudge voice …``: show, set, list and roll back a shop's reminder wording, and
preview it in place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cartnudge.cli_support import fail, runtime
from cartnudge.clock import system_clock
from cartnudge.shops.versioned_commands import ShopOption, document_app

if TYPE_CHECKING:
    from cartnudge.messages.voice import Voice
    from cartnudge.shops.versioned import DocumentKind


def _voice() -> DocumentKind[Voice]:
    from cartnudge.messages.service import VOICE

    return VOICE


voice_app = document_app(
    "voice",
    _voice,
    summary="A shop's reminder wording (a YAML document of Jinja2 templates).",
)


@voice_app.command("preview")
def voice_preview(
    shop: ShopOption,
    step: Annotated[int, typer.Option(help="Which reminder (1 is the first).")] = 1,
    saved: Annotated[
        bool, typer.Option("--saved", help="As for a cart saved with a link.")
    ] = False,
) -> None:
    """Print a reminder in the shop's current voice (subject and text), about a made-up cart."""
    from cartnudge.db.session import reading
    from cartnudge.messages.compose import compose
    from cartnudge.messages.preview import preview_draft
    from cartnudge.messages.service import voice_of
    from cartnudge.timing.service import rules_of

    rt = runtime()
    record = rt.shop(shop)
    with reading(rt.engine) as conn:
        current = voice_of(conn, [record.id])[record.id]
        steps = rules_of(conn, [record.id])[record.id].value.steps
    if not 1 <= step <= steps:
        fail(f"--step: the shop's rules send {steps} reminder(s); choose 1 to {steps}")
    draft = preview_draft(
        record,
        step=step,
        steps=steps,
        saved=saved,
        public_url=rt.settings.public_url,
        now=system_clock(),
    )
    composed = compose(draft, current.value)
    label = " (built-in default)" if current.version == 0 else ""
    typer.echo(
        f"# {record.slug}: voice version {current.version}{label}, variant {composed.variant}, "
        f"reminder {step} of {steps}, about a made-up cart"
    )
    typer.echo(f"Subject: {composed.subject}")
    typer.echo("")
    body = composed.message.get_body(("plain",))
    assert body is not None  # compose always writes a text part
    typer.echo(body.get_content().rstrip("\n"))
