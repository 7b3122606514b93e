"""Mails from templates: Jinja2 for the text and HTML parts, Babel for the words and the dates.

Each template is a pair under ``templates/``: ``<name>.txt`` (whose ``subject``
block is the Subject) and ``<name>.html``. Strings are translated with the
message catalogs under ``locales/<locale>/LC_MESSAGES/messages.po``; the
``.po`` files are the only source and are compiled in memory when the
renderer is built, so there is no build step and no binary in git. Dates and
times are written the way the mail's locale writes them, in the platform's
time zone, with the zone named so nobody has to guess.

Rendering is synchronous and CPU-bound; it never awaits, so one renderer
serves concurrent deliveries without any shared state changing under it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.notifications.domain import SUPPORTED_LOCALES, Platform, TemplateName

TEMPLATES = Path(__file__).with_name("templates")
LOCALES = Path(__file__).with_name("locales")


class MissingTranslation(LookupError):
    """A string of a template has no translation in a locale (only in strict mode)."""


@dataclass(frozen=True, slots=True)
class RenderedMail:
    subject: str
    text: str
    html: str
    locale: str


def load_catalog(locale: str, *, directory: Path = LOCALES) -> Translations:
    """The locale's ``.po`` file, compiled in memory."""
    with (directory / locale / "LC_MESSAGES" / "messages.po").open("rb") as source:
        catalog = read_po(source, locale=locale)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled)


class _StrictTranslations:
    """Raises instead of falling back to the English msgid: for the translation test."""

    def __init__(self, translations: Translations, locale: str) -> None:
        self._translations = translations
        self._locale = locale
        self._messages: Mapping[Any, str] = getattr(translations, "_catalog", {})

    def gettext(self, message: str) -> str:
        if not self._messages.get(message):
            raise MissingTranslation(f"{self._locale}: no translation for {message!r}")
        return self._translations.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        if not self._messages.get((singular, 0)):
            raise MissingTranslation(f"{self._locale}: no translation for {singular!r}")
        return self._translations.ngettext(singular, plural, n)


def format_moment(moment: datetime, *, locale: str, time_zone: str) -> str:
    """``moment`` as the locale writes a date and a time, in ``time_zone``, naming the zone."""
    local = moment.astimezone(ZoneInfo(time_zone))
    date = format_date(local, "long", locale=locale)
    time = format_time(local, "short", locale=locale)
    return f"{date}, {time} ({time_zone})"


def _tidy(text: str) -> str:
    """Plain text as a person would type it: no trailing blanks, at most one empty line."""
    # "-- " (with its blank) is the signature separator mail readers know; keep it.
    lines = [line if line == "-- " else line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


class Renderer:
    """Renders every template in every supported locale; built once, at start-up."""

    def __init__(
        self,
        *,
        locales: Iterable[str] = SUPPORTED_LOCALES,
        templates: Path = TEMPLATES,
        catalogs: Path = LOCALES,
        strict: bool = False,
    ) -> None:
        self.locales = tuple(locales)
        self._environments: dict[str, Environment] = {}
        for locale in self.locales:
            environment = Environment(
                loader=FileSystemLoader(templates),
                autoescape=select_autoescape(enabled_extensions=("html",), default=False),
                undefined=StrictUndefined,
                extensions=["jinja2.ext.i18n"],
                keep_trailing_newline=True,
            )
            environment.policies["ext.i18n.trimmed"] = True
            translations = load_catalog(locale, directory=catalogs)
            if strict:
                strict_translations = _StrictTranslations(translations, locale)
                environment.install_gettext_callables(  # type: ignore[attr-defined]
                    strict_translations.gettext, strict_translations.ngettext, newstyle=True
                )
            else:
                environment.install_gettext_translations(  # type: ignore[attr-defined]
                    translations, newstyle=True
                )
            self._environments[locale] = environment

    def locale_for(self, wanted: str | None, platform: Platform) -> str:
        """The mail's locale: the one asked for, else its language, else the platform's."""
        for candidate in (wanted, wanted.split("-")[0] if wanted else None,
                          platform.default_locale, platform.default_locale.split("-")[0]):
            if candidate in self._environments:
                return candidate
        return self.locales[0]

    def render(
        self,
        template: TemplateName,
        *,
        locale: str | None,
        platform: Platform,
        params: Mapping[str, Any],
        contact_email: str,
    ) -> RenderedMail:
        chosen = self.locale_for(locale, platform)
        environment = self._environments[chosen]
        when: Callable[[datetime], str] = lambda moment: format_moment(  # noqa: E731
            moment, locale=chosen, time_zone=platform.time_zone
        )
        context: dict[str, Any] = {
            "name": None,
            **params,
            "platform_name": platform.name,
            "contact_email": contact_email,
            "locale": chosen,
            "when": when,
        }
        text_template = environment.get_template(f"{template}.txt")
        subject = "".join(
            text_template.blocks["subject"](text_template.new_context(context))
        ).strip()
        text = _tidy(text_template.render(context))
        html = environment.get_template(f"{template}.html").render({**context, "subject": subject})
        return RenderedMail(subject=" ".join(subject.split()), text=text, html=html, locale=chosen)


def as_email(
    mail: RenderedMail, *, template: TemplateName, sender: str, to: str, message_id: str,
    at: datetime,
) -> EmailMessage:
    """The multipart/alternative message: the text part first, the HTML part preferred."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = mail.subject
    message["Message-ID"] = message_id
    message["Date"] = format_datetime(at)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Guestlist-Template"] = str(template)
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    # After the parts: setting the content drops Content-* headers set before it.
    message["Content-Language"] = mail.locale
    return message
