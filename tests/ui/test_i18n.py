"""The catalogues: complete, compiled by Babel to .mo files gettext reads, placeholders kept, Arabic shaped."""

from __future__ import annotations

import gettext
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ui import i18n


def msgids() -> list[str]:
    return list(i18n.entries(i18n.extract()))


def test_extraction_sees_inside_f_strings_and_screen_titles() -> None:
    ids = msgids()
    assert "Agency" in ids  # f"{_('Agency')}: ..." in ui/receipt.py
    assert "Z report" in ids and "Needs attention" in ids  # TITLE_TEXT, plain and conditional
    assert "Cash" in ids  # N_() in ui/text.py


@pytest.mark.parametrize("language", ["fr", "ar", "en"])
def test_every_string_is_translated_with_the_same_placeholders(language: str) -> None:
    po = i18n.entries(i18n.read_catalogue(i18n.po_path(language)))
    missing = [m for m in msgids() if not po.get(m)]
    assert not missing, f"{language}: untranslated {missing[:5]} (run python -m ui.i18n extract)"
    for mid in msgids():
        assert set(re.findall(r"{[^}]*}", mid)) == set(re.findall(r"{[^}]*}", po[mid])), mid


def test_compiled_catalogues_are_read_by_gettext(tmp_path: Path) -> None:
    locale = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR, locale, ignore=shutil.ignore_patterns("*.py", "__pycache__", "*.mo"))
    written = i18n.compile_catalogues(locale)
    assert sorted(p.parent.parent.name for p in written) == ["ar", "en", "fr"]
    tr = gettext.translation("guichet", localedir=locale, languages=["fr"])
    assert tr.gettext("Cash") == "Espèces"
    assert tr.gettext("Total: {total} ({n} bills)") == "Total : {total} ({n} factures)"
    ar = gettext.translation("guichet", localedir=locale, languages=["ar"])
    assert ar.gettext("Cash") == "نقدا"
    if shutil.which("msgfmt"):  # GNU msgfmt agrees the .po files are well formed
        for po in locale.glob("*/LC_MESSAGES/guichet.po"):
            subprocess.run(["msgfmt", "--check-format", "-o", "/dev/null", str(po)], check=True)


def test_a_missing_catalogue_is_compiled_on_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locale = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR, locale, ignore=shutil.ignore_patterns("*.py", "__pycache__", "*.mo"))
    monkeypatch.setattr(i18n, "LOCALE_DIR", locale)
    monkeypatch.setattr(i18n, "_catalogues", {})
    try:
        i18n.set_language("fr", bidi="app")
        assert i18n._("Cash") == "Espèces"
        assert not list(locale.glob("*/LC_MESSAGES/*.mo"))  # compiled in memory: the install may be read-only
    finally:
        monkeypatch.undo()
        i18n.set_language("fr", bidi="app")


def test_language_switch_and_bidi_modes() -> None:
    try:
        i18n.set_language("fr", bidi="app")
        assert i18n.t("Cash") == "Espèces"
        i18n.set_language("ar", bidi="app")
        shaped = i18n.t("Cash")
        assert shaped != "نقدا" and any("\ufe70" <= c <= "\ufeff" for c in shaped)
        mixed = i18n.t("Unsent: {count} ({total})", count=3, total="12.00 DZD")
        assert "(DZD 12.00)" in mixed  # brackets mirrored around the number, in visual order
        i18n.set_language("ar", bidi="terminal")
        assert i18n.t("Cash") == "نقدا"  # the terminal does its own bidi
        with pytest.raises(ValueError, match="ui.language"):
            i18n.set_language("de")
    finally:
        i18n.set_language("fr", bidi="app")


def test_agent_errors_get_a_translated_headline_and_keep_their_detail() -> None:
    from agent.errors import BillNotFound
    from ui.text import error_text

    try:
        i18n.set_language("fr", bidi="app")
        text = error_text(BillNotFound("bill 123: not found"))
        assert text == "Facture introuvable — bill 123: not found"
    finally:
        i18n.set_language("fr", bidi="app")
