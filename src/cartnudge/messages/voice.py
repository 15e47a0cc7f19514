"""A shop's voice: the wording of its reminders, a YAML document the owner edits, validated
as a whole and versioned like its rules.

There are three variants: ``first`` (the first nudge), ``last`` (the final reminder of a
shop that sends more than one) and ``saved`` (any reminder about a cart the shopper saved
with a link). Each has four pieces the owner writes as Jinja2 templates: ``subject``,
``lead`` (the opening paragraph), ``button`` (the label of the link back to the cart) and
``closing`` (the last paragraph).

Only those pieces are the owner's. The layout around them (the greeting, the items, the
total, the button's link, the shop's postal address and the unsubscribe link) is fixed in
the package's templates, so no voice document can drop the unsubscribe link or the postal
address that the law and the mailbox providers ask of every such email.

Pieces run in Jinja2's sandbox and yield plain text: the layout escapes them for HTML. A
document is refused before it is stored if any piece does not compile, names a variable
there is not, or fails a trial render with sample values, so wording never breaks at send
time because of a typo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment
from pydantic import AfterValidator, BaseModel, ConfigDict, StrictStr, ValidationError
from pydantic_core import ErrorDetails

from cartnudge.yamldocs import DocumentError, problems_of, yaml_mapping

MAX_DOCUMENT_BYTES = 64 * 1024
MAX_SUBJECT_CHARS = 200
VARIANTS = ("first", "last", "saved")
PIECES = ("subject", "lead", "button", "closing")
VARIABLES = frozenset({"shop_name", "first_name", "greeting", "item_count", "total", "step"})

# Values for the trial render: one shopper we know a lot about, one we know little about,
# so a piece that only works when the name or the total is known is caught too.
SAMPLES: tuple[Mapping[str, object], ...] = (
    {
        "shop_name": "Northwind Tea Company",
        "first_name": "Ana",
        "greeting": "Hi Ana",
        "item_count": 3,
        "total": "$64.00",
        "step": 1,
    },
    {
        "shop_name": "Northwind Tea Company",
        "first_name": None,
        "greeting": "Hi there",
        "item_count": 1,
        "total": "",
        "step": 2,
    },
)


class VoiceError(DocumentError):
    """A voice document that cannot be used; ``problems`` names each, where it is."""


def _finalize(value: object) -> object:
    # An unknown first name is None; printed, it should vanish rather than read "None".
    return "" if value is None else value


# One sandbox for every shop: its templates see only the variables handed to them.
_SANDBOX = SandboxedEnvironment(
    undefined=StrictUndefined, finalize=_finalize, autoescape=False, keep_trailing_newline=False
)


def greeting(first_name: str | None) -> str:
    name = (first_name or "").strip()
    return f"Hi {name}" if name else "Hi there"


def choose_variant(step: int, *, last_step: bool, saved_link: bool) -> str:
    """Which variant a reminder uses: ``saved`` for a saved cart at any step, ``last`` for
    the final one of several, otherwise ``first`` (also the only reminder of a 1-step shop,
    which is a first nudge, not a last warning)."""
    if saved_link:
        return "saved"
    if last_step and step > 1:
        return "last"
    return "first"


@dataclass(frozen=True, slots=True)
class Wording:
    """A variant's pieces, rendered for one email: plain text."""

    subject: str
    lead: str
    button: str
    closing: str


@dataclass(frozen=True, slots=True)
class _Pieces:
    subject: Template
    lead: Template
    button: Template
    closing: Template


class Voice:
    """A validated voice document with its templates compiled, ready to render."""

    __slots__ = ("_variants",)

    def __init__(self, variants: Mapping[str, _Pieces]) -> None:
        self._variants = dict(variants)

    def render(
        self,
        variant: str,
        *,
        shop_name: str,
        first_name: str | None,
        item_count: int,
        total: str,
        step: int,
    ) -> Wording:
        context = {
            "shop_name": shop_name,
            "first_name": first_name,
            "greeting": greeting(first_name),
            "item_count": item_count,
            "total": total,
            "step": step,
        }
        pieces = self._variants[variant]
        return Wording(
            subject=_render(pieces.subject, context, variant, "subject"),
            lead=_render(pieces.lead, context, variant, "lead"),
            button=_render(pieces.button, context, variant, "button"),
            closing=_render(pieces.closing, context, variant, "closing"),
        )

    def piece(self, variant: str, piece: str) -> Template:
        template: Template = getattr(self._variants[variant], piece)
        return template


def _render(template: Template, context: Mapping[str, object], variant: str, piece: str) -> str:
    try:
        return template.render(context).strip()
    except Exception:
        # The trial render at validation passed, so only a piece that fails on particular
        # values gets here (say, a division by item_count - 2). A reminder in the built-in
        # wording beats a reminder that is never sent.
        return default_voice().piece(variant, piece).render(context).strip()


def _template(source: str) -> str:
    """Refuse a piece that does not compile, names an unknown variable, or fails to render
    with the sample values."""
    try:
        ast = _SANDBOX.parse(source)
    except TemplateSyntaxError as exc:
        raise ValueError(f"template error on line {exc.lineno}: {exc.message}") from exc
    unknown = sorted(meta.find_undeclared_variables(ast) - VARIABLES)
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        raise ValueError(f"unknown variable{'s' if len(unknown) > 1 else ''} {names}")
    template = _SANDBOX.from_string(source)
    for sample in SAMPLES:
        try:
            template.render(sample)
        except Exception as exc:
            raise ValueError(f"cannot be rendered: {exc}") from exc
    return source


def _rendered(source: str, *, limit: int | None, what: str) -> str:
    template = _SANDBOX.from_string(source)
    for sample in SAMPLES:
        text = " ".join(template.render(sample).split())
        if not text:
            known = "known" if sample["first_name"] else "unknown"
            raise ValueError(f"{what} renders empty when the shopper's name and total are {known}")
        if limit is not None and len(text) > limit:
            raise ValueError(f"{what} renders {len(text)} characters, more than {limit}")
    return source


def _subject(source: str) -> str:
    return _rendered(source, limit=MAX_SUBJECT_CHARS, what="the subject")


def _button(source: str) -> str:
    return _rendered(source, limit=None, what="the button label")


Piece = Annotated[StrictStr, AfterValidator(_template)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VariantDocument(_Strict):
    subject: Annotated[Piece, AfterValidator(_subject)]
    lead: Piece
    button: Annotated[Piece, AfterValidator(_button)]
    closing: Piece


class VoiceDocument(_Strict):
    first: VariantDocument
    last: VariantDocument
    saved: VariantDocument


DEFAULT_DOCUMENT = """\
# How your cart reminders read. Every reminder has four pieces you write here:
#   subject   the email's subject line (at most 200 characters)
#   lead      the opening paragraph, under the greeting ("Hi Ana," or "Hi there,")
#   button    the label of the button back to the cart
#   closing   the last paragraph
# Around them every email always shows the items left in the cart, the total, the button
# back to the cart, your postal address and an unsubscribe link; those are not edited here.
#
# Pieces may use these values (Jinja2: {{ value }}, {% if value %}…{% endif %}):
#   {{ shop_name }}    your shop's name
#   {{ first_name }}   the shopper's first name; empty when unknown
#   {{ greeting }}     "Hi Ana", or "Hi there" when the name is unknown
#   {{ item_count }}   how many items are in the cart (two mugs count as 2)
#   {{ total }}        the cart total, formatted for the shopper; empty when unknown
#   {{ step }}         which reminder this is: 1, 2 or 3

# The first reminder (and the only one, if your rules send one).
first:
  subject: "You left something in your cart at {{ shop_name }}"
  lead: >-
    It looks like you didn't get to finish your order, so we kept your cart just as you
    left it. You can pick up where you stopped whenever it suits you.
  button: "Return to your cart"
  closing: >-
    If you have a question about {{ "it" if item_count == 1 else "them" }}, or something
    went wrong at checkout, just reply to this email and we'll help.

# The last reminder, when your rules send more than one.
last:
  subject: "Your cart at {{ shop_name }} is still waiting"
  lead: >-
    A last note about the {{ "item" if item_count == 1 else "items" }} you chose: your cart
    is still here. This is the final reminder we'll send about it.
  button: "See your cart"
  closing: >-
    If you decided against it, no problem at all. If something put you off, reply and tell
    us; we read every answer.

# Any reminder about a cart the shopper saved with a link to come back later.
saved:
  subject: "Still saving {{ 'this' if item_count == 1 else 'these' }} for later?"
  lead: >-
    You saved a cart at {{ shop_name }} a little while ago. It's still there, with
    everything you picked, whenever you're ready.
  button: "Open your saved cart"
  closing: >-
    No rush: this is only a reminder of where you left it. Reply to this email if we can
    help with anything.
"""


def parse_voice(text: str) -> Voice:
    """Validate a whole document; ``VoiceError`` names every problem found."""
    data = yaml_mapping(
        text, what="voice", of="variants", limit=MAX_DOCUMENT_BYTES, error=VoiceError
    )
    try:
        document = VoiceDocument.model_validate(data)
    except ValidationError as exc:
        raise VoiceError(problems_of(exc, _explain)) from exc
    return Voice(
        {
            name: _Pieces(
                *(_SANDBOX.from_string(getattr(getattr(document, name), p)) for p in PIECES)
            )
            for name in VARIANTS
        }
    )


def _explain(error: ErrorDetails) -> str:
    loc = error["loc"]
    if error["type"] == "extra_forbidden":
        return (
            f"not a variant (the variants are {', '.join(VARIANTS)})"
            if len(loc) == 1
            else f"not a piece (the pieces are {', '.join(PIECES)})"
        )
    if error["type"] == "missing":
        return "missing"
    if error["type"] in {"string_type", "model_type"}:
        return _expected(loc, error["input"])
    return error["msg"].removeprefix("Value error, ")


def _expected(loc: tuple[int | str, ...], given: Any) -> str:
    if len(loc) == 1:
        return f"should hold {', '.join(PIECES)}, not {given!r}"
    return f'should be text, not {given!r} (put it in quotes, or "" for nothing)'


@lru_cache(maxsize=1024)
def cached_voice(text: str) -> Voice:
    """The parsed voice of a stored document (stored documents were validated when set)."""
    return parse_voice(text)


def default_voice() -> Voice:
    return cached_voice(DEFAULT_DOCUMENT)
