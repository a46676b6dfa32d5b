"""The Linux console fallback (`TERM=linux`, guichet.service on tty1): only glyphs the console font has,
16 colours, and no Arabic.

The kernel's console draws from a font of at most 512 glyphs; its built-in VGA font is IBM code page 437
(the Unicode map is Linux's drivers/tty/vt/cp437.uni): no eighth blocks (Textual's tall input and button
borders, its scrollbars), no rounded corners, no ellipsis, no narrow no-break space, no Arabic. In console
mode the app gets the `-console` class (ui/guichet.tcss picks borders drawn with the font's box lines), and
its driver writes through `console_text()`, which maps what the font lacks onto one glyph it has (same
width: a ╭ becomes ┌, a … becomes ., an unknown letter ?), so nothing ever reaches the screen as a box.
Colours: Rich counts TERM=linux as 16 colours (`standard`) by itself.

    >>> console_text("╭─ Réf… 11\u202f273,00 DA ─╮")
    '┌─ Réf. 11 273,00 DA ─┐'
    >>> refusal("ar") is not None, refusal("fr")
    (True, None)
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Mapping
from typing import Any

from rich.cells import cell_len, get_character_cell_size

from ui import i18n

CONSOLE_CLASS = "-console"
REFUSED_LANGUAGES = frozenset({"ar"})  # the console font has no Arabic glyphs

# The glyphs of the kernel's built-in console font (IBM code page 437, as drivers/tty/vt/cp437.uni maps it):
# printable ASCII, code page 437's upper half (Python's cp437 codec), and the graphic characters the font
# draws at 0x01-0x1F and 0x7F.
CP437_LOW = "☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼⌂"
CP437 = frozenset(
    {chr(c) for c in range(0x20, 0x7F)} | set(bytes(range(0x80, 0x100)).decode("cp437")) | set(CP437_LOW)
)
# What code page 437 has and Debian's usual console font lacks: console-setup's default Lat15-Fixed16
# (256 glyphs; listed with `psfgettable /usr/share/consolefonts/Lat15-Fixed16.psf.gz`). A counter may run
# either font, so we draw only what both have (review 6, finding 8).
LAT15_LACKS = frozenset("ΓΘΣΦΩαδεστφ↔↕↨∙√∟⌂⌐⌠⌡▀▄▌▐▓▬►◄○◘◙☺☻☼♀♂♠♣♥♪♫")
FONT_GLYPHS = CP437 - LAT15_LACKS

# What Textual, Rich, CLDR and our texts draw that the font lacks, onto a glyph it has (one cell each).
FALLBACK = {
    # rounded and heavy box drawing -> the font's single and double lines
    "╭": "┌", "╮": "┐", "╰": "└", "╯": "┘",
    "━": "═", "┃": "║", "┏": "╔", "┓": "╗", "┗": "╚", "┛": "╝", "┣": "╠", "┫": "╣", "┳": "╦", "┻": "╩",
    "╋": "╬", "╍": "─", "╏": "│", "┄": "─", "┅": "═", "┆": "│", "┇": "║", "╴": "─", "╶": "─", "╸": "═",
    "╺": "═", "╵": "│", "╷": "│", "╹": "║", "╻": "║",
    # eighth and half blocks (tall/wide borders, scrollbars, the radio buttons' ▐ ▌ ends) -> the full block
    # or nothing: Lat15 has no half blocks
    "▁": " ", "▂": " ", "▃": " ", "▄": " ", "▅": "█", "▆": "█", "▇": "█", "▔": " ", "▏": " ", "▎": " ",
    "▍": " ", "▌": " ", "▐": " ", "▀": " ", "▋": "█", "▊": "█", "▉": "█", "▕": " ", "▖": " ", "▗": " ",
    "▘": " ", "▝": " ", "▚": "▒", "▞": "▒", "▓": "▒", "▙": "█", "▛": "█", "▜": "█", "▟": "█",
    # marks and punctuation
    "●": "•", "◉": "•", "⬤": "•", "○": "o", "◦": "o", "▶": ">", "◀": "<", "▸": ">", "◂": "<", "►": ">",
    "◄": "<", "▲": "▲", "▼": "▼", "√": "v", "∙": "·", "▬": "-", "↔": "-", "↕": "|", "⌐": "-",
    "✓": "v", "✔": "v", "✗": "x", "✘": "x", "×": "x", "…": ".", "—": "-", "–": "-", "‒": "-", "−": "-",
    "‘": "'", "’": "'", "‚": ",", "“": '"', "”": '"', "„": '"', "‹": "<", "›": ">",
    "\u202f": " ", "\u2009": " ", "\u2007": " ", "\u2002": " ", "\u2003": " ", "\u200b": "",
    "\u200e": "", "\u200f": "", "\u061c": "",
    # French capitals code page 437 lacks
    "À": "A", "Â": "A", "È": "E", "Ê": "E", "Ë": "E", "Î": "I", "Ï": "I", "Ô": "O", "Û": "U", "Ù": "U",
    "Ÿ": "Y", "Œ": "O", "œ": "o",
}


class _FontMap(dict[int, str]):
    """str.translate table: what the font has passes, FALLBACK maps the rest, anything else is one '?' a
    cell (Rich's width: none for a combining mark or a zero-width character, two for a wide one)."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        if ch in FONT_GLYPHS or ch in "\n\r\t\x1b\x07\x08" or code < 0x20:
            out = ch  # escape sequences and control bytes are the terminal's, not glyphs
        elif ch in FALLBACK:
            out = FALLBACK[ch]
        else:
            out = "?" * get_character_cell_size(ch)
        self[code] = out
        return out


_TABLE = _FontMap()


def console_text(text: str) -> str:
    """Text as the console font can draw it, in the cells Textual laid it out in (Rich's cell widths):
    composed first (NFC: "e" + U+0301 is the font's "é"), where that keeps the width."""
    if not text.isascii():
        composed = unicodedata.normalize("NFC", text)
        if composed != text and cell_len(composed) == cell_len(text):
            text = composed
    return text.translate(_TABLE)


def is_console(environ: Mapping[str, str] | None = None) -> bool:
    """True on the Linux virtual console (TERM=linux), where the kernel font draws the text."""
    env = os.environ if environ is None else environ
    return env.get("TERM", "") == "linux"


def refusal(language: str) -> str | None:
    """The one line shown instead of switching to a language the console cannot draw; None if it can."""
    if language not in REFUSED_LANGUAGES:
        return None
    # In the language the cashier reads now (the console cannot show the Arabic one anyway).
    return str(i18n.t("Arabic needs the kiosk mode (sudo scripts/install.sh --kiosk): "
                      "the Linux console has no Arabic letters"))


def language_for(language: str, current: str | None = None) -> tuple[str, str | None]:
    """(the language to show, the refusal line or None) on the console; Arabic gives way to French, or to
    the language after it when the cashier was switching from French with F8."""
    line = refusal(language)
    if line is None:
        return language, None
    fallback = "fr" if current != "fr" else "en"
    return fallback, line


def console_driver() -> type[Any]:
    """Textual's Linux driver writing through `console_text` (what reaches tty1 is always drawable)."""
    from textual.drivers.linux_driver import LinuxDriver

    class ConsoleDriver(LinuxDriver):
        def write(self, data: str) -> None:
            super().write(console_text(data))

    return ConsoleDriver


def setup(app: Any, environ: Mapping[str, str] | None = None) -> bool:
    """Console mode for `app` when TERM=linux: the -console class, the font-safe driver, and French instead
    of Arabic (with the line saying why). Returns whether the console mode is on."""
    if not is_console(environ):
        return False
    app.driver_class = console_driver()
    app.add_class(CONSOLE_CLASS)
    language, line = language_for(i18n.language())
    if line is not None:
        i18n.set_language(language)
        app.notify(line, severity="warning", timeout=30)
    return True


def switch(app: Any, language: str) -> str:
    """The language a switch may go to in console mode (see `language_for`), telling the cashier why."""
    if not app.has_class(CONSOLE_CLASS):
        return language
    target, line = language_for(language, i18n.language())
    if line is not None:
        app.notify(line, severity="warning", timeout=15)
    return target
