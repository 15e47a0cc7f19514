"""The commands every versioned shop document has: ``show``, ``set``, ``history`` and
``rollback``, built for one kind (``cartnudge rules …``, ``cartnudge voice …``).

The kind is handed over as a function that imports it, so that building the command tree
imports no database code: the CLI starts fast and pays for a kind only when it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cartnudge.cli_support import emit, fail, runtime
from cartnudge.clock import system_clock

if TYPE_CHECKING:
    from cartnudge.shops.versioned import DocumentKind

ShopOption = Annotated[str, typer.Option("--shop", help="The shop's slug.")]
KindLoader = Callable[[], "DocumentKind[Any]"]


def document_app(
    name: str, load_kind: KindLoader, *, summary: str, on_set: str = ""
) -> typer.Typer:
    """A command group for the document kind ``name`` (what ``load_kind`` returns).
    ``on_set`` tells the owner what else a new version does, in ``set``'s help."""
    app = typer.Typer(no_args_is_help=True, help=summary)
    _add_show(app, name, load_kind)
    _add_set(app, name, load_kind, on_set)
    _add_history(app, name, load_kind)
    _add_rollback(app, name, load_kind)
    return app


def _add_show(app: typer.Typer, name: str, load_kind: KindLoader) -> None:
    @app.command(
        "show",
        help=f"Print the current {name} document (or an earlier version), ready to edit and set.",
    )
    def show(
        shop: ShopOption,
        version: Annotated[
            int | None, typer.Option(help="An earlier version (0: default).")
        ] = None,
    ) -> None:
        from cartnudge.db.session import reading
        from cartnudge.shops.versioned import (
            DocumentVersionError,
            current_documents,
            document_version,
        )

        kind = load_kind()
        rt = runtime()
        record = rt.shop(shop)
        with reading(rt.engine) as conn:
            if version is None:
                current = current_documents(conn, kind, [record.id])[record.id]
                number, body = current.version, current.body
            else:
                try:
                    doc = document_version(conn, kind, record.id, version)
                except DocumentVersionError as exc:
                    fail(str(exc))
                number, body = doc.version, doc.body
        label = " (built-in default)" if number == 0 else ""
        typer.echo(f"# {record.slug}: {name} version {number}{label}")
        typer.echo(body.rstrip("\n"))


def _add_set(app: typer.Typer, name: str, load_kind: KindLoader, on_set: str) -> None:
    @app.command(
        "set",
        help=f"Validate FILE as a whole and make it the current {name}; an invalid document "
        f"changes nothing. {on_set}".rstrip(),
    )
    def set_(
        file: Annotated[Path, typer.Argument(help="The YAML document; - for standard input.")],
        shop: ShopOption,
        note: Annotated[str | None, typer.Option(help="Why, for the history.")] = None,
    ) -> None:
        from cartnudge.db.session import writing
        from cartnudge.shops.versioned import set_document

        kind = load_kind()
        text = _read(file, kind.max_bytes, name)
        rt = runtime()
        record = rt.shop(shop)
        try:
            with writing(rt.engine) as conn:
                current, changed = set_document(
                    conn, kind, record, text, system_clock(), actor="owner:cli", note=note
                )
        except kind.error as exc:
            fail(f"{file}: {exc}")
        if changed:
            typer.echo(f"{record.slug}: {name} version {current.version} is now current")
        else:
            typer.echo(f"{record.slug}: unchanged, {name} version {current.version} stays current")


def _add_history(app: typer.Typer, name: str, load_kind: KindLoader) -> None:
    @app.command("history", help=f"Every version of the shop's {name}, oldest first.")
    def history(
        shop: ShopOption,
        as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    ) -> None:
        from cartnudge.db.session import reading
        from cartnudge.shops.versioned import document_history

        kind = load_kind()
        rt = runtime()
        record = rt.shop(shop)
        with reading(rt.engine) as conn:
            versions = document_history(conn, kind, record.id)
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
            typer.echo(
                f"{mark} {row['version']:>4}  {when:32}  {row['actor']:12}  {row['note'] or ''}"
            )


def _add_rollback(app: typer.Typer, name: str, load_kind: KindLoader) -> None:
    @app.command(
        "rollback", help="Make an earlier version current again (stored as a new version)."
    )
    def rollback(
        version: Annotated[int, typer.Argument(help="The version to return to (0: default).")],
        shop: ShopOption,
    ) -> None:
        from cartnudge.db.session import writing
        from cartnudge.shops.versioned import DocumentVersionError, rollback_document

        if version < 0:
            fail("a version is 0 or more")
        kind = load_kind()
        rt = runtime()
        record = rt.shop(shop)
        try:
            with writing(rt.engine) as conn:
                current, changed = rollback_document(
                    conn, kind, record, version, system_clock(), actor="owner:cli"
                )
        except DocumentVersionError as exc:
            fail(str(exc))
        if changed:
            typer.echo(
                f"{record.slug}: {name} version {current.version} (a copy of {version}) "
                "is now current"
            )
        else:
            typer.echo(f"{record.slug}: version {version} is already what is current")


def _read(file: Path, limit: int, name: str) -> str:
    import sys

    try:
        data = sys.stdin.buffer.read(limit + 1) if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        fail(f"{file}: {exc.strerror or exc}")
    if len(data) > limit:
        fail(f"{file}: a {name} document is at most {limit // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        fail(f"{file}: not UTF-8 text")
