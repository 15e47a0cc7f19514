"""Web pages from Jinja2 templates, one way for every stage that serves them (the link
pages a shopper opens, the owner's dashboard): everything printed is escaped, and a name
the template does not know is an error, never an empty string."""

from __future__ import annotations

from pathlib import Path

import jinja2


def environment(folder: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
