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


# -- right to left: mixed Arabic and Latin runs; messages follow a language switch ------------------------

LEGEND = "F2 payment · F3 history · F4 attention · F6 unknown · F7 Z report · F8 language · F10 log out · F12 cashiers"


def test_the_arabic_key_legend_reads_right_to_left_item_by_item() -> None:
    """Each "F7 تقرير Z" stays one item: the Latin Z is not joined to the next item's F8 across " · "."""
    i18n.set_language("ar", bidi="app")
    try:
        shown = i18n.t(LEGEND)
        items = shown.split(" · ")
        keys = [re.search(r"F\d+", item).group(0) for item in items]  # type: ignore[union-attr]
        assert keys == ["F12", "F10", "F8", "F7", "F6", "F4", "F3", "F2"]  # F2 rightmost: read first
        for item in items:
            assert item.endswith(re.search(r"F\d+", item).group(0))  # type: ignore[union-attr]  # key on the right
        z_report = items[keys.index("F7")]
        assert z_report.startswith("Z ") and "F8" not in z_report
        assert "\u200f" not in shown  # the marks steer the algorithm, then go
    finally:
        i18n.set_language("fr")


def test_latin_lines_keep_their_separators_untouched() -> None:
    i18n.set_language("fr", bidi="app")
    assert i18n.t(LEGEND).startswith("F2 paiement · F3 ")


def test_a_message_shown_before_a_language_switch_is_drawn_again_in_the_new_language() -> None:
    i18n.set_language("fr", bidi="app")
    message = i18n.t("Bill {ref} added", ref="410726095518")
    assert "410726095518" in message and "ajoutée" in message
    i18n.set_language("en")
    try:
        assert i18n.retranslate(message) == "Bill 410726095518 added"

        class Screen:
            pass

        screen = Screen()
        screen.message = message  # type: ignore[attr-defined]
        screen.count = 3  # type: ignore[attr-defined]
        i18n.retranslate_attrs(screen)
        assert screen.message == "Bill 410726095518 added" and screen.count == 3  # type: ignore[attr-defined]
        assert i18n.retranslate("plain text") == "plain text"
    finally:
        i18n.set_language("fr")


def test_the_payment_screens_message_follows_f8(tmp_path: Path) -> None:
    """In the app: "Bill … added" (French) becomes Arabic after F8, not left in French."""
    import asyncio

    from textual.widgets import Static

    from tests.ui.test_demo import _newcomer_session, _until

    async def check(app, pilot, devices) -> None:
        await pilot.press("f11")
        await _until(pilot, lambda: len(app.screen.basket) == 1, "the scanned bill")
        assert "ajoutée" in str(app.screen.query_one("#message", Static).render())
        await pilot.press("f8")  # fr -> ar
        await _until(pilot, lambda: app.screen.is_mounted and app.screen.query("#message"), "the recomposed screen")
        text = str(app.screen.query_one("#message", Static).render())
        assert "ajoutée" not in text and any("\u0600" <= c <= "\u06ff" or "\ufe70" <= c <= "\ufeff" for c in text)

    try:
        asyncio.run(_newcomer_session(tmp_path, check))
    finally:
        i18n.set_language("fr")


def test_a_bracketed_latin_run_in_arabic_keeps_its_brackets() -> None:
    """python-bidi has no bracket pairs: "(C-7421982)" lost its closing bracket to the far end of the line."""
    i18n.set_language("ar", bidi="app")
    try:
        assert i18n.shape("الزبون: B. Leila (C-7421982)").startswith("B. Leila (C-7421982) :")
        assert i18n.shape("ادفع (F5)").startswith("(F5) ")
        assert "\u200e" not in i18n.shape("ادفع (F5)")
    finally:
        i18n.set_language("fr")


def test_an_error_shown_before_a_language_switch_follows_it() -> None:
    """PaymentScreen.show(error_text(e)) keeps an i18n.Text: F8 draws the headline again (review 6, finding 7)."""
    from agent.errors import BillNotFound
    from ui.text import error_text

    i18n.set_language("fr", bidi="app")
    try:
        message = error_text(BillNotFound("bill 410726095518 not found"))
        assert isinstance(message, i18n.Text) and "410726095518" in message
        french = str(message)
        i18n.set_language("en")
        again = str(i18n.retranslate(message))
        assert french.startswith("Facture introuvable") and again.startswith("Bill not found")
        assert "bill 410726095518 not found" in again  # the agent's own detail is kept as it came
    finally:
        i18n.set_language("fr")


def test_a_hyphenated_latin_or_digit_token_keeps_its_order_in_arabic() -> None:
    """The receipt's period and the bill's contract read as in the basket: "2026-T3", not "T3-2026"
    (review 6, finding 14)."""
    i18n.set_language("ar", bidi="app")
    try:
        assert "2026-T3" in i18n.shape("الفترة: 2026-T3") and "T3-2026" not in i18n.shape("الفترة: 2026-T3")
        assert "07-643-41070" in i18n.shape("العقد: 07-643-41070   الخدمة: الغاز")
        assert "(C-7421982)" in i18n.shape("الزبون: B. Leila (C-7421982)")
        assert "\u200e" not in i18n.shape("الفترة: 2026-T3")  # the marks steer, never reach the terminal
    finally:
        i18n.set_language("fr")
