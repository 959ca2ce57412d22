"""Messages from the per-stage templates under tasks/templates/ (jinja2)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

from tasks.sms_segments import segment_count

TEMPLATES_DIR = Path(__file__).with_name("templates")
MAX_SMS_SEGMENTS = 2


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
    )


@cache
def _html_env() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
    )


def _vehicle(ctx: MessageContext) -> str:
    words = [str(ctx.vehicle_year) if ctx.vehicle_year else "", ctx.make or "", ctx.model or ""]
    text = " ".join(w.strip() for w in words if w and w.strip())
    return text or "vehicle"


def _stage_parts(ctx: MessageContext, vehicle: str) -> tuple[str, str, str]:
    """(headline, detail, template name) from the stage's file, or the default one."""
    env = _text_env()
    name = f"stages/{ctx.stage}.j2"
    try:
        template = env.get_template(name)
    except TemplateNotFound:
        name = "stages/default.j2"
        template = env.get_template(name)
    module: Any = template.make_module(
        {"vehicle": vehicle, "stage_label": ctx.stage_label or ctx.stage}
    )
    return str(module.headline).strip(), str(module.detail).strip(), name


def _common(ctx: MessageContext) -> dict[str, Any]:
    first = (ctx.customer_name or "").strip().split(" ")[0] or "there"
    return {
        "dealership": ctx.dealership,
        "first_name": first,
        "stage_label": ctx.stage_label or ctx.stage,
        "portal_url": ctx.portal_url,
    }


def render_sms(ctx: MessageContext) -> RenderedSms:
    """The text for a stage, shortened until it fits in two segments."""
    vehicle = _vehicle(ctx)
    headline, _detail, name = _stage_parts(ctx, vehicle)
    values = _common(ctx) | {"headline": headline}
    layout = _text_env().get_template("sms.txt.j2")
    body = layout.render(values).strip()
    # Long dealership or model names: drop the link, then the vehicle, then cut.
    if segment_count(body) > MAX_SMS_SEGMENTS:
        values["portal_url"] = None
        body = layout.render(values).strip()
    if segment_count(body) > MAX_SMS_SEGMENTS:
        headline, _detail, name = _stage_parts(ctx, "vehicle")
        values["headline"] = headline
        body = layout.render(values).strip()
    while segment_count(body) > MAX_SMS_SEGMENTS:
        body = body[: len(body) - 10].rstrip() + "..."
    return RenderedSms(body=body, template=f"sms:{name}")


def render_email(ctx: MessageContext) -> RenderedEmail:
    """Subject, HTML and text parts for a stage."""
    vehicle = _vehicle(ctx)
    headline, detail, name = _stage_parts(ctx, vehicle)
    values = _common(ctx) | {"headline": headline, "detail": detail}
    subject = _text_env().get_template("email.subject.j2").render(values).strip()
    text = _text_env().get_template("email.txt.j2").render(values).strip() + "\n"
    html = _html_env().get_template("email.html.j2").render(values)
    return RenderedEmail(subject=" ".join(subject.split()), html=html, text=text,
                         template=f"email:{name}")
