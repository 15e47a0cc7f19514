"""Writing the sheet as a file, whole or not at all: CSV (UTF-8 with a byte-order mark, so
Excel reads it as UTF-8) or XLSX (openpyxl's write-only mode, a row at a time).

A row is written to a hidden temporary file beside the target and renamed over it at the
end, so a reader (or a failed write) never sees half a sheet.

What a shopper typed (a product title, a reason) could be read by a spreadsheet as a
formula: in a CSV, a text cell starting with ``= + - @``, a tab or a carriage return gets
a leading apostrophe (OWASP's advice); in an XLSX every text cell is stored as text, never
as a formula.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FORMATS = ("csv", "xlsx")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
XLSX_MAX_ROWS = 1_048_575  # an Excel sheet's rows, less the header
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Characters an XLSX cannot hold at all (XML 1.0 forbids them).
_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


class SheetFileError(Exception):
    """The file cannot be written there; the message says where and why."""


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_START) else value
    return str(value)


def write_file(
    path: Path,
    fmt: str,
    header: list[str],
    rows: Iterable[list[Any]],
    *,
    title: str = "carts",
    links: frozenset[str] = frozenset(),
) -> int:
    """Write ``rows`` under ``header`` to ``path`` in ``fmt``; the number of rows. Columns
    named in ``links`` hold URLs, made clickable in an XLSX."""
    if fmt not in FORMATS:
        raise SheetFileError(f"format {fmt!r}: choose csv or xlsx")
    if path.is_dir():
        raise SheetFileError(f"{path} is a folder; give a file name")
    try:
        fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise SheetFileError(f"cannot write in {path.parent}: {exc.strerror or exc}") from exc
    try:
        if fmt == "csv":
            with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as out:
                written = _csv(out, header, rows)
        else:
            os.close(fd)
            written = _xlsx(Path(scratch), header, rows, title, links)
        Path(scratch).replace(path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            Path(scratch).unlink()
        if isinstance(exc, OSError):
            raise SheetFileError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
    return written


def _csv(out: Any, header: list[str], rows: Iterable[list[Any]]) -> int:
    writer = csv.writer(out)
    writer.writerow(header)
    written = 0
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
        written += 1
    return written


def _xlsx(
    path: Path, header: list[str], rows: Iterable[list[Any]], title: str, links: frozenset[str]
) -> int:
    # Imported here: serve never writes a sheet, and openpyxl is several MiB.
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31])
    linked = [name in links for name in header]

    def cell(value: Any, link: bool) -> Any:
        if not isinstance(value, str):
            return value
        text = WriteOnlyCell(sheet, value=_ILLEGAL_XML.sub("", value))
        text.data_type = "s"  # text, even when it starts with "=": never a formula
        if link and value.startswith(("https://", "http://")):
            text.hyperlink = value
            text.style = "Hyperlink"
        return text

    sheet.append(header)
    written = 0
    try:
        for row in rows:
            if written == XLSX_MAX_ROWS:
                raise SheetFileError(
                    f"more than {XLSX_MAX_ROWS:,} carts: more than an xlsx sheet holds; "
                    "choose csv or a shorter span"
                )
            sheet.append([cell(value, link) for value, link in zip(row, linked, strict=False)])
            written += 1
    except BaseException:
        # Finish the half-written file (the caller removes it): left open, openpyxl's row
        # writer would write into its closed stream whenever it is collected.
        with contextlib.suppress(Exception):
            book.save(str(path))
        raise
    book.save(str(path))
    return written
