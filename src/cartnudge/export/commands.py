"""``cartnudge export``: a shop's carts as a CSV or XLSX file for a spreadsheet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cartnudge.cli_support import SinceOption, UntilOption, emit, fail, runtime


def export_command(
    shop: Annotated[str, typer.Option(help="Shop slug.")],
    since: SinceOption,
    until: UntilOption = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or xlsx.")] = "csv",
    out: Annotated[str, typer.Option(help="The file to write, or - for standard output.")] = "-",
) -> None:
    """Write the shop's carts last active from --since up to --until: items, total,
    status, reminders, recovered, reason, the masked address, and signed links to
    suppress, unsubscribe or write off each cart (valid 30 days). The file appears whole
    or not at all."""
    import shutil
    import sys
    import tempfile

    from cartnudge.clock import system_clock
    from cartnudge.export.files import FORMATS, SheetFileError, write_file
    from cartnudge.export.sheet import HEADER, LINK_COLUMNS, LinkMaker, sheet_rows
    from cartnudge.shops.days import SpanError, span_of

    if fmt not in FORMATS:
        fail(f"--format: {fmt!r} is not csv or xlsx")
    if out == "-" and fmt == "xlsx" and sys.stdout.isatty():
        fail("an xlsx file is not for a terminal: give --out FILE, or redirect the output")
    rt = runtime()
    record = rt.shop(shop)
    try:
        span = span_of(record, since, until)
    except SpanError as exc:
        fail(str(exc))
    links = LinkMaker.at(rt.settings.public_url, rt.settings.signing_key, system_clock())
    rows = sheet_rows(rt.engine, record, span, links)
    try:
        if out != "-":
            target = Path(out).expanduser()
            written = write_file(target, fmt, HEADER, rows, title=record.slug, links=LINK_COLUMNS)
            emit({"shop": record.slug, "file": str(target.resolve()), "rows": written})
            return
        with tempfile.TemporaryDirectory(prefix="cartnudge-export-") as folder:
            target = Path(folder) / f"sheet.{fmt}"
            write_file(target, fmt, HEADER, rows, title=record.slug, links=LINK_COLUMNS)
            with target.open("rb") as done:
                shutil.copyfileobj(done, sys.stdout.buffer)
            sys.stdout.buffer.flush()
    except SheetFileError as exc:
        fail(str(exc))
