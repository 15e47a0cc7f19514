"""``cartnudge rules …``: show, set, list and roll back a shop's reminder rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cartnudge.cli_support import emit, fail, runtime
from cartnudge.clock import system_clock

rules_app = typer.Typer(no_args_is_help=True, help="A shop's reminder rules (a YAML document).")

ShopOption = Annotated[str, typer.Option("--shop", help="The shop's slug.")]


@rules_app.command("show")
def rules_show(
    shop: ShopOption,
    version: Annotated[int | None, typer.Option(help="An earlier version (0: default).")] = None,
) -> None:
    """Print the current rules document (or an earlier version), ready to edit and set."""
    from cartnudge.db.session import reading
    from cartnudge.timing.service import RulesVersionError, rules_of, rules_version

    rt = runtime()
    record = rt.shop(shop)
    with reading(rt.engine) as conn:
        if version is None:
            current = rules_of(conn, [record.id])[record.id]
            number, body = current.version, current.body
        else:
            try:
                doc = rules_version(conn, record.id, version)
            except RulesVersionError as exc:
                fail(str(exc))
            number, body = doc.version, doc.body
    label = " (built-in default)" if number == 0 else ""
    typer.echo(f"# {record.slug}: rules version {number}{label}")
    typer.echo(body.rstrip("\n"))


@rules_app.command("set")
def rules_set(
    file: Annotated[Path, typer.Argument(help="The YAML document; - for standard input.")],
    shop: ShopOption,
    note: Annotated[str | None, typer.Option(help="Why, for the history.")] = None,
) -> None:
    """Validate FILE as a whole and make it the current rules; an invalid document
    changes nothing. Open carts' timers move to what the new rules say."""
    from cartnudge.db.session import writing
    from cartnudge.timing.rules import MAX_DOCUMENT_BYTES, RulesError
    from cartnudge.timing.service import set_rules

    text = _read(file, MAX_DOCUMENT_BYTES)
    rt = runtime()
    record = rt.shop(shop)
    try:
        with writing(rt.engine) as conn:
            current, changed = set_rules(conn, record, text, system_clock(), note=note)
    except RulesError as exc:
        fail(f"{file}: {exc}")
    if changed:
        typer.echo(f"{record.slug}: rules version {current.version} is now current")
    else:
        typer.echo(f"{record.slug}: unchanged, rules version {current.version} stays current")


@rules_app.command("history")
def rules_history_command(
    shop: ShopOption,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Every version of the shop's rules, oldest first."""
    from cartnudge.db.session import reading
    from cartnudge.timing.service import rules_history

    rt = runtime()
    record = rt.shop(shop)
    with reading(rt.engine) as conn:
        versions = rules_history(conn, record.id)
    rows = [
        {
            "version": v.version,
            "created_at": v.created_at.isoformat() if v.created_at else None,
            "actor": v.actor,
            "note": v.note,
        }
        for v in versions
    ]
    if as_json:
        emit(rows)
        return
    current = rows[-1]["version"]
    for row in rows:
        mark = "*" if row["version"] == current else " "
        when = row["created_at"] or "-"
        typer.echo(f"{mark} {row['version']:>4}  {when:32}  {row['actor']:12}  {row['note'] or ''}")


@rules_app.command("rollback")
def rules_rollback(
    version: Annotated[int, typer.Argument(help="The version to return to (0: default).")],
    shop: ShopOption,
) -> None:
    """Make an earlier version current again (stored as a new version)."""
    from cartnudge.db.session import writing
    from cartnudge.timing.service import RulesVersionError, rollback_rules

    if version < 0:
        fail("a version is 0 or more")
    rt = runtime()
    record = rt.shop(shop)
    try:
        with writing(rt.engine) as conn:
            current, changed = rollback_rules(conn, record, version, system_clock())
    except RulesVersionError as exc:
        fail(str(exc))
    if changed:
        typer.echo(
            f"{record.slug}: rules version {current.version} (a copy of {version}) is now current"
        )
    else:
        typer.echo(f"{record.slug}: version {version} is already what is current")


def _read(file: Path, limit: int) -> str:
    import sys

    try:
        data = sys.stdin.buffer.read(limit + 1) if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        fail(f"{file}: {exc.strerror or exc}")
    if len(data) > limit:
        fail(f"{file}: a rules document is at most {limit // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        fail(f"{file}: not UTF-8 text")
