"""Every notification template, in every locale: translated, localized, in the platform's zone."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from services.notifications.domain import SAMPLE_PARAMS, SUPPORTED_LOCALES, Platform, TemplateName
from services.notifications.rendering import (
    LOCALES,
    TEMPLATES,
    MissingTranslation,
    Renderer,
    format_moment,
)

KYIV = Platform(name="Riverside Commons", time_zone="Europe/Kyiv", default_locale="fr")
CONTACT = "help@riverside.example"


def _template_messages() -> set[str]:
    found = extract_from_dir(
        TEMPLATES.parent,
        method_map=[("templates/**", "jinja2")],
        options_map={"templates/**": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}},
    )
    return {message[2] if isinstance(message[2], str) else message[2][0] for message in found}


@pytest.fixture(scope="module")
def strict() -> Renderer:
    return Renderer(strict=True)


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
@pytest.mark.parametrize("template", list(TemplateName))
def test_every_template_renders_in_every_locale_without_a_missing_translation(
    strict: Renderer, template: TemplateName, locale: str
) -> None:
    mail = strict.render(template, locale=locale, platform=KYIV, params=SAMPLE_PARAMS[template],
                         contact_email=CONTACT)
    assert mail.locale == locale
    assert mail.subject and "\n" not in mail.subject
    assert "Riverside Commons" in mail.subject
    assert CONTACT in mail.text and CONTACT in mail.html
    assert mail.html.lstrip().startswith("<!DOCTYPE html>")
    assert f'<html lang="{locale}">' in mail.html


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_every_catalog_translates_every_template_string(locale: str) -> None:
    with (LOCALES / locale / "LC_MESSAGES" / "messages.po").open("rb") as source:
        catalog = read_po(source, locale=locale)
    wanted = _template_messages()
    assert len(wanted) > 40
    for msgid in sorted(wanted):
        message = catalog.get(msgid)
        assert message is not None, f"{locale}: {msgid!r} is not in the catalog"
        assert message.string, f"{locale}: {msgid!r} is untranslated"
        assert not message.fuzzy, f"{locale}: {msgid!r} is fuzzy"
        # A placeholder lost in translation would fail at render time in front of a person.
        for placeholder in ("%(name)s", "%(platform_name)s", "%(until)s", "%(code)s",
                            "%(valid_until)s", "%(role)s", "%(label)s", "%(expires_at)s"):
            assert (placeholder in msgid) == (placeholder in message.string), (locale, msgid)


def test_the_message_template_lists_exactly_the_strings_of_the_templates() -> None:
    with (LOCALES / "messages.pot").open("rb") as source:
        template = read_po(source)
    assert {message.id for message in template if message.id} == _template_messages()


def test_given_a_catalog_missing_one_string_then_the_strict_renderer_refuses(
    tmp_path: Path,
) -> None:
    shutil.copytree(LOCALES, tmp_path / "locales")
    po = tmp_path / "locales" / "es" / "LC_MESSAGES" / "messages.po"
    po.write_text(po.read_text().replace('msgstr "Motivo: %(reason)s"', 'msgstr ""'))
    renderer = Renderer(strict=True, catalogs=tmp_path / "locales")
    with pytest.raises(MissingTranslation, match="Reason"):
        renderer.render(TemplateName.ACCOUNT_SUSPENDED, locale="es", platform=KYIV,
                        params=SAMPLE_PARAMS[TemplateName.ACCOUNT_SUSPENDED],
                        contact_email=CONTACT)


def test_the_invitation_carries_what_the_organizer_guide_lists() -> None:
    params = dict(SAMPLE_PARAMS[TemplateName.INVITATION])
    params |= {"valid_from": datetime(2030, 3, 14, 15, 30, tzinfo=UTC),
               "valid_until": datetime(2030, 4, 13, 21, 0, tzinfo=UTC)}
    mail = Renderer().render(TemplateName.INVITATION, locale="es", platform=KYIV, params=params,
                             contact_email=CONTACT)
    assert mail.subject == "Te invitamos a unirte a Riverside Commons"
    for part in (mail.text, mail.html):
        assert "Te han invitado a unirte a Riverside Commons." in part
        assert "We would love to have you with us." in part  # the personal greeting
        assert "Miembro de la comunidad (en una comunidad)" in part
        assert "Soporte técnico (en toda la plataforma)" in part
        assert "https://guestlist.example/register?code=SAMPLE-CODE" in part
        assert "SAMPLE-CODE" in part
        # 21:00 UTC is midnight in Kyiv (UTC+3 in April): the date moves on too.
        assert "14 de abril de 2030, 0:00 (Europe/Kyiv)" in part
        assert "14 de marzo de 2030, 17:30 (Europe/Kyiv)" in part
        assert CONTACT in part


def test_given_a_locale_without_a_catalog_then_the_platform_default_is_used() -> None:
    mail = Renderer().render(TemplateName.ACCOUNT_REACTIVATED, locale="de", platform=KYIV,
                             params={}, contact_email=CONTACT)
    assert mail.locale == "fr"
    assert mail.subject == "Votre compte Riverside Commons est de nouveau actif"
    regional = Renderer().render(TemplateName.ACCOUNT_REACTIVATED, locale="es-MX", platform=KYIV,
                                 params={}, contact_email=CONTACT)
    assert regional.locale == "es"


def test_html_escapes_what_people_wrote_and_the_text_part_keeps_it_as_written() -> None:
    params = dict(SAMPLE_PARAMS[TemplateName.INVITATION]) | {"greeting": "<b>Hi</b> & welcome"}
    mail = Renderer().render(TemplateName.INVITATION, locale="en", platform=KYIV, params=params,
                             contact_email=CONTACT)
    assert "&lt;b&gt;Hi&lt;/b&gt; &amp; welcome" in mail.html
    assert "<b>Hi</b>" not in mail.html
    assert "<b>Hi</b> & welcome" in mail.text


@pytest.mark.parametrize(
    ("locale", "shown"),
    [("en", "December 1, 2026, 7:05 PM (Europe/Kyiv)"),
     ("es", "1 de diciembre de 2026, 19:05 (Europe/Kyiv)"),
     ("fr", "1 décembre 2026, 19:05 (Europe/Kyiv)"),
     ("uk", "1 грудня 2026 р., 19:05 (Europe/Kyiv)")],  # noqa: RUF001
)
def test_moments_are_written_for_the_locale_in_the_platform_zone(locale: str, shown: str) -> None:
    moment = datetime(2026, 12, 1, 17, 5, tzinfo=UTC)
    assert format_moment(moment, locale=locale, time_zone="Europe/Kyiv").replace(
        "\u202f", " "
    ) == shown
