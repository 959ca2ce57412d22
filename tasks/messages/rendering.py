"""Messages in the customer's language: words from templates/messages/, layout from jinja2."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

from tasks.messages.catalog import Catalog, catalog
from tasks.messages.segments import segment_count

TEMPLATES_DIR = Path(__file__).with_name("templates")
MAX_SMS_SEGMENTS = 2
#: The compliance line every English text ends with (each language has its
#: own, `sms.opt_out` in its catalog). It is appended here, not in the
#: template, and the trimming below never touches it (CTIA and carriers
#: require it; a long stage label once pushed it out).
SMS_OPT_OUT = catalog("en").text("sms.opt_out")
# Three dots, not "…": one non-GSM character would turn the whole text into
# UCS-2 and halve the budget.
_ELLIPSIS = "..."
# A label or dealership name is not cut shorter than this while some other
# part can still give way.
_LABEL_FLOOR = 20
_DEALERSHIP_FLOOR = 12


@dataclass(frozen=True)
class MessageContext:
    """What a message may say about a registration."""

    dealership: str
    customer_name: str | None
    stage: str
    stage_label: str | None
    vehicle_year: int | None
    make: str | None
    model: str | None
    portal_url: str | None
    #: `en` or `es` (anything else is read as the default, `en`).
    language: str = "en"
    #: The message waited for the end of the customer's quiet hours.
    was_held: bool = False
    #: Sent because the message on the other channel failed for good.
    is_fallback: bool = False


@dataclass(frozen=True)
class RenderedSms:
    """A text and the template it came from."""

    body: str
    template: str


@dataclass(frozen=True)
class RenderedEmail:
    """An e-mail's parts and the template it came from."""

    subject: str
    html: str
    text: str
    template: str


@cache
def _text_env() -> Environment:
    # Texts and plain parts must not carry HTML entities.
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=False,
        undefined=StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        # The templates ship with the code: a changed one comes with a restart,
        # so no stat() of its file on every message.
        auto_reload=False,
    )


@cache
def _html_env() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )


def _words(ctx: MessageContext) -> Catalog:
    return catalog(ctx.language)


def _vehicle(ctx: MessageContext) -> str:
    words = [str(ctx.vehicle_year) if ctx.vehicle_year else "", ctx.make or "", ctx.model or ""]
    text = " ".join(w.strip() for w in words if w and w.strip())
    return text or _words(ctx).text("words.vehicle")


@cache
def _compiled(language: str, key: str) -> Template:
    # The catalog's texts are templates too ({{ vehicle }} ...), held to the
    # same StrictUndefined as the layout files.
    return _text_env().from_string(catalog(language).text(key))


def _say(ctx: MessageContext, key: str, **values: Any) -> str:
    language = _words(ctx).language
    if not values:
        return _fixed(language, key)
    return _compiled(language, key).render(values).strip()


@cache
def _fixed(language: str, key: str) -> str:
    # A text with no values reads the same for every message: rendered once.
    return _compiled(language, key).render({}).strip()


def _stage_parts(
    ctx: MessageContext, vehicle: str, label: str | None = None
) -> tuple[str, str, str]:
    """(headline, detail, template name) from the stage's catalog entry, or the default one."""
    key, name = _stage_entry(ctx)
    values = {"vehicle": vehicle, "stage_label": label or ctx.stage_label or ctx.stage}
    return (_say(ctx, f"{key}.headline", **values), _say(ctx, f"{key}.detail", **values), name)


def _stage_entry(ctx: MessageContext) -> tuple[str, str]:
    """(the stage's catalog key, its template name)."""
    words = _words(ctx)
    key = f"stages.{words.stage_key(ctx.stage)}"
    return key, f"{words.language}/{key.replace('.', '/')}"


def _headline(ctx: MessageContext, vehicle: str, label: str) -> str:
    key, _name = _stage_entry(ctx)
    return _say(ctx, f"{key}.headline", vehicle=vehicle, stage_label=label)


def _common(ctx: MessageContext) -> dict[str, Any]:
    first = (ctx.customer_name or "").strip().split(" ")[0]
    greeting = (_say(ctx, "email.greeting", first_name=first) if first
                else _say(ctx, "email.greeting_no_name"))
    return {
        "language": _words(ctx).language,
        "dealership": ctx.dealership,
        "greeting": greeting,
        "stage_label": ctx.stage_label or ctx.stage,
        "portal_url": ctx.portal_url,
    }


def sms_opt_out(language: str) -> str:
    """The line every text in `language` ends with."""
    return catalog(language).text("sms.opt_out")


@lru_cache(maxsize=64)
def _fits(body: str) -> bool:
    # render_sms asks again about a body it has not changed; one count each.
    return segment_count(body) <= MAX_SMS_SEGMENTS


def _cut(text: str, keep: int) -> str:
    """The first `keep` characters and an ellipsis; never ends inside a character sequence.

    A dangling zero-width joiner, variation selector or combining mark would
    show as a broken glyph, so they go with the character they belonged to.
    """
    if keep >= len(text):
        return text
    head = text[:keep]
    while head and (unicodedata.combining(head[-1]) or head[-1] in "\u200d\ufe0e\ufe0f"):
        head = head[:-1]
    return head.rstrip(" ,;:-.") + _ELLIPSIS


def _longest_fit(text: str, floor: int, body_for: Callable[[str], str]) -> str:
    """The longest cut of `text` (not below `floor` characters) whose body fits, or the floor cut.

    Shortening a part never makes the body cost more segments, so a binary
    search over the kept length finds the longest cut that fits.
    """
    lo, hi = min(floor, len(text)), len(text)
    if _fits(body_for(_cut(text, hi))):
        return text
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _fits(body_for(_cut(text, mid))):
            lo = mid
        else:
            hi = mid - 1
    return _cut(text, lo)


def render_sms(ctx: MessageContext) -> RenderedSms:
    """The text for a stage, trimmed to two segments; it always ends with the opt-out line.

    Only the variable parts give way, in this order: the link, the vehicle,
    the stage label, the dealership name, and last the message text itself.
    """
    layout = _text_env().get_template("sms.txt.j2")
    opt_out = sms_opt_out(ctx.language)
    fallback_line = _say(ctx, "sms.fallback") if ctx.is_fallback else None
    vehicle = _vehicle(ctx)
    label = ctx.stage_label or ctx.stage
    dealership = ctx.dealership
    link = ctx.portal_url
    _key, name = _stage_entry(ctx)

    # Only what the layout shows is rendered: a text may be rendered several
    # times while it is fitted, and each render of a catalog text costs.
    def body_for(*, vehicle: str, label: str, dealership: str, link: str | None) -> str:
        message = layout.render({
            "headline": _headline(ctx, vehicle, label or ctx.stage), "dealership": dealership,
            "portal_url": link, "fallback_line": fallback_line,
        }).strip()
        return f"{message} {opt_out}"

    body = body_for(vehicle=vehicle, label=label, dealership=dealership, link=link)
    if not _fits(body):
        link = None
        body = body_for(vehicle=vehicle, label=label, dealership=dealership, link=link)
    if not _fits(body):
        vehicle = _words(ctx).text("words.vehicle")
        body = body_for(vehicle=vehicle, label=label, dealership=dealership, link=link)
    if not _fits(body):
        label = _longest_fit(label, _LABEL_FLOOR, lambda cut: body_for(
            vehicle=vehicle, label=cut, dealership=dealership, link=link))
        body = body_for(vehicle=vehicle, label=label, dealership=dealership, link=link)
    if not _fits(body):
        dealership = _longest_fit(dealership, _DEALERSHIP_FLOOR, lambda cut: body_for(
            vehicle=vehicle, label=label, dealership=cut, link=link))
        body = body_for(vehicle=vehicle, label=label, dealership=dealership, link=link)
    if not _fits(body):
        # Whatever is left over (a long stage text): cut the message before
        # the opt-out line, which alone always fits.
        message = body[: -len(opt_out) - 1]
        message = _longest_fit(message, 0, lambda cut: f"{cut} {opt_out}")
        body = f"{message} {opt_out}".lstrip()
    return RenderedSms(body=body, template=f"sms:{name}")


def render_email(ctx: MessageContext) -> RenderedEmail:
    """Subject, HTML and text parts for a stage, in the customer's language."""
    vehicle = _vehicle(ctx)
    headline, detail, name = _stage_parts(ctx, vehicle)
    values = _common(ctx) | {
        "headline": headline, "detail": detail,
        "current_step": _say(ctx, "email.current_step"),
        "follow": _say(ctx, "email.follow"),
        "held_line": _say(ctx, "email.held") if ctx.was_held else None,
        "fallback_line": _say(ctx, "email.fallback") if ctx.is_fallback else None,
    }
    subject = _text_env().get_template("email.subject.j2").render(values).strip()
    text = _text_env().get_template("email.txt.j2").render(values).strip() + "\n"
    html = _html_env().get_template("email.html.j2").render(values)
    return RenderedEmail(subject=" ".join(subject.split()), html=html, text=text,
                         template=f"email:{name}")
