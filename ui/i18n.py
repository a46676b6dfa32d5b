"""Translations (gettext domain "guichet": French, Arabic, English) and right-to-left display of Arabic.

    from ui import i18n
    i18n.set_language("ar", bidi="app")
    i18n._("Bill reference")            # translated, logical order (for storage, logs, comparisons)
    i18n.t("Total: {amount}", amount=money(345600, "DZD"))   # translated, formatted, shaped for the screen

Terminals differ: with `ui.bidi = "app"` Arabic is reshaped (letter joining, arabic-reshaper) and
reordered to visual order (python-bidi) before Textual paints it; with "terminal" the text is passed
through untouched for terminals that do the bidi algorithm themselves.

The .po files in ui/locale/{fr,ar,en}/LC_MESSAGES/guichet.po are the one source of the translations;
Babel does the catalogue work:

    python -m ui.i18n extract    # merge the msgids of ui/ into every .po; lists what is left to translate
    python -m ui.i18n compile    # .po -> .mo (./dev setup runs it); a missing or stale .mo is compiled on use
"""

from __future__ import annotations

import ast
import gettext
import io
import re
import sys
import textwrap
import threading
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import IO, Any

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

DOMAIN = "guichet"
LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGES = ("fr", "ar", "en")
LANGUAGE_NAMES = {"fr": "Français", "ar": "العربية", "en": "English"}
RTL_LANGUAGES = frozenset({"ar"})
SOURCE_LANGUAGE = "en"  # msgids are English: its catalogue is the identity, filled by `extract`

# Our markers: `_` translates, `t` translates, formats and shapes, `N_` marks for later.
KEYWORDS = ("_", "t", "N_")

_lock = threading.Lock()
_state: dict[str, object] = {"language": "fr", "bidi": "app"}
_catalogues: dict[str, gettext.NullTranslations] = {}
_listeners: list[Callable[[str], None]] = []


# -- catalogues: Babel extracts, merges and compiles -------------------------------------------------------


def po_path(language: str, locale_dir: Path | None = None) -> Path:
    return (locale_dir or LOCALE_DIR) / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalogue(path: Path) -> Catalog:
    """A .po file as a Babel Catalog (`catalog.get(msgid).string` is the translation)."""
    with path.open("rb") as f:
        return read_po(f, domain=DOMAIN)


def entries(catalogue: Catalog) -> dict[str, str]:
    """msgid -> translation ("" when untranslated) of a catalogue's messages (we use no plurals)."""
    out: dict[str, str] = {}
    for m in catalogue:
        if m.id and isinstance(m.id, str) and not isinstance(m.string, tuple | list):
            out[m.id] = m.string or ""
    return out


def mo_bytes(po: Path) -> bytes:
    """The .mo that gettext reads, compiled from the .po by Babel (fuzzy entries left out, as msgfmt does)."""
    buf = io.BytesIO()
    write_mo(buf, read_catalogue(po))
    return buf.getvalue()


def compile_catalogues(locale_dir: Path = LOCALE_DIR) -> list[Path]:
    """Compile every */LC_MESSAGES/guichet.po under locale_dir to its .mo; returns the .mo paths written."""
    written = []
    for po in sorted(locale_dir.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        mo = po.with_suffix(".mo")
        tmp = po.with_suffix(".mo.tmp")
        tmp.write_bytes(mo_bytes(po))
        tmp.replace(mo)  # a UI starting meanwhile reads the old .mo or the new one, never half of one
        written.append(mo)
    return written


def extract_python(
    fileobj: IO[bytes], keywords: Collection[str], comment_tags: Collection[str], options: dict[str, Any]
) -> Iterator[tuple[int, str | None, str, list[str]]]:
    """Babel extraction method for our Python files (`method_map` entry "ui.i18n:extract_python").

    Babel's own Python extractor reads tokens, and Python 3.11 tokenizes an f-string as one string, so it
    misses `f"{_('Date')}: ..."`; the AST sees inside. Screen titles are plain `TITLE_TEXT = "..."`
    class attributes that `CounterScreen` translates, so their strings are messages too.
    """
    tree = ast.parse(fileobj.read())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in keywords
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.func.id, node.args[0].value, []
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {getattr(tg, "id", getattr(tg, "attr", "")) for tg in targets}
            if "TITLE_TEXT" in names and isinstance(node.value, ast.Constant | ast.IfExp):
                for sub in ast.walk(node.value):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                        yield sub.lineno, None, sub.value, []  # no keyword: Babel takes it whole


def extract(root: Path | None = None) -> Catalog:
    """The messages of the Python files under root (default: ui/), as a Babel template catalogue."""
    root = root or Path(__file__).parent
    template = Catalog(domain=DOMAIN, project="guichet", charset="utf-8")
    method_map = [("locale/**", "ignore"), ("**.py", f"{__name__}:extract_python")]
    keywords: dict[str, Any] = dict.fromkeys(KEYWORDS)
    for filename, lineno, message, comments, context in extract_from_dir(
        str(root), method_map=method_map, keywords=keywords
    ):
        template.add(message, locations=[(filename, lineno)], auto_comments=comments, context=context)
    return template


def update_catalogues(locale_dir: Path = LOCALE_DIR) -> dict[str, list[str]]:
    """Merge the msgids of ui/ into every catalogue (Babel's update, without fuzzy guesses; messages no
    longer used are dropped); returns the msgids each language still lacks."""
    template = extract()
    missing: dict[str, list[str]] = {}
    for lang in LANGUAGES:
        po = po_path(lang, locale_dir)
        catalogue = read_catalogue(po) if po.exists() else Catalog(locale=lang, domain=DOMAIN, project="guichet")
        created = catalogue.creation_date
        catalogue.update(template, no_fuzzy_matching=True, update_header_comment=False)
        if po.exists():  # a date that moved on every run would make every extract a diff of all three files
            catalogue.creation_date = created
        if lang == SOURCE_LANGUAGE:
            for message in catalogue:
                if isinstance(message.id, str) and message.id and not message.string:
                    message.string = message.id
        po.parent.mkdir(parents=True, exist_ok=True)
        tmp = po.with_suffix(".po.tmp")
        with tmp.open("wb") as f:
            write_po(f, catalogue, ignore_obsolete=True, include_lineno=False, width=120)
        tmp.replace(po)
        missing[lang] = [mid for mid, text in entries(catalogue).items() if not text]
    return missing


def _load(language: str) -> gettext.NullTranslations:
    if language not in _catalogues:
        po = po_path(language)
        mo = po.with_suffix(".mo")
        tr: gettext.NullTranslations
        if mo.exists() and (not po.exists() or mo.stat().st_mtime >= po.stat().st_mtime):
            with mo.open("rb") as f:
                tr = gettext.GNUTranslations(f)
        elif po.exists():  # not compiled yet, or edited since: compile it now, in memory
            tr = gettext.GNUTranslations(io.BytesIO(mo_bytes(po)))
        else:
            tr = gettext.NullTranslations()
        _catalogues[language] = tr
    return _catalogues[language]


# -- the current language ------------------------------------------------------------------------------


def set_language(language: str, bidi: str | None = None) -> None:
    """Switch the language (and optionally the bidi mode) for everything drawn from now on."""
    if language not in LANGUAGES:
        raise ValueError(f"ui.language: {language!r} is not one of {', '.join(LANGUAGES)}")
    if bidi is not None and bidi not in ("app", "terminal"):
        raise ValueError(f"ui.bidi: {bidi!r} must be 'app' or 'terminal'")
    _load(language)
    with _lock:
        _state["language"] = language
        if bidi is not None:
            _state["bidi"] = bidi
        listeners = list(_listeners)
    for fn in listeners:
        fn(language)


def language() -> str:
    return str(_state["language"])


def bidi_mode() -> str:
    return str(_state["bidi"])


def is_rtl() -> bool:
    return language() in RTL_LANGUAGES


def on_change(fn: Callable[[str], None]) -> None:
    with _lock:
        _listeners.append(fn)


def _(message: str) -> str:
    """Translate to the current language (logical order, not shaped)."""
    return _load(language()).gettext(message)


def N_(message: str) -> str:
    """Mark a string for extraction without translating it now."""
    return message


# Our list separator. In a right-to-left line, the bidi algorithm joins two Latin runs across a neutral " · "
# into one left-to-right run: "F7 تقرير Z · F8 اللغة" came out as "اللغة Z · F8 تقرير F7" (F8 beside
# Z). A right-to-left mark on each side keeps every item its own run, in right-to-left item order.
SEPARATOR = " · "
_RTL_SEPARATOR = "\u200f · \u200f"

# python-bidi's algorithm has no bracket pairs: in "الزبون: B. Leila (C-7421982)" the closing bracket, between
# a Latin run and the end of a right-to-left line, went right-to-left and came out on the far side
# ("(B. Leila (C-7421982"). A left-to-right mark on each side of a bracketed run that starts with a Latin letter
# keeps it in its run (what the full algorithm's bracket pairs give; "(12.00 DZD)" starts with a weak digit
# and reads "(DZD 12.00)" either way).
_LATIN_BRACKETS = re.compile(r"[(\[][A-Za-z\u00c0-\u024f][^()\[\]\u0590-\u08ff\ufb1d-\ufeff]*[)\]]")

# A Latin or digit token joined by hyphens or slashes (a period "2026-T3", a contract "07-643-41070", a date
# "30/11/2026") is one left-to-right word: python-bidi otherwise splits it at the hyphen in a right-to-left
# line ("T3-2026", "41070-643-07"). A left-to-right mark on each side keeps it whole (review 6, finding 14).
_LTR_TOKENS = re.compile(r"(?<![0-9A-Za-z])[0-9A-Za-z]+(?:[-/][0-9A-Za-z]+)+(?![0-9A-Za-z])")

# Directional marks (LRM, RLM, ALM) that CLDR puts in Arabic numbers and dates: they steer the bidi
# algorithm, and once the app has put the text in visual order they would only reach the terminal as
# zero-width characters that some terminals draw as a cell, shifting the columns.
_BIDI_MARKS = str.maketrans("", "", "\u200e\u200f\u061c")


def shape(text: str) -> str:
    """Prepare text for the screen: Arabic joined and in visual order when the app does bidi."""
    if bidi_mode() != "app" or not _has_rtl(text):
        return text
    from arabic_reshaper import reshape
    from bidi.algorithm import get_display  # the pure-Python one mirrors brackets; the Rust one does not

    # Line by line: the bidi algorithm works per paragraph and must not move text across lines.
    rtl = is_rtl()
    base = "R" if rtl else None
    if rtl:
        text = _LATIN_BRACKETS.sub(lambda m: f"\u200e{m.group(0)}\u200e", text.replace(SEPARATOR, _RTL_SEPARATOR))
        text = _LTR_TOKENS.sub(lambda m: f"\u200e{m.group(0)}\u200e", text)
    return "\n".join(
        get_display(reshape(line), base_dir=base).translate(_BIDI_MARKS) if line else line
        for line in text.split("\n")
    )


def _has_rtl(text: str) -> bool:
    return any("\u0590" <= ch <= "\u08ff" or "\ufb1d" <= ch <= "\ufeff" or ch == "\u200f" for ch in text)


class Text(str):
    """A string drawn for the screen that can be drawn again in another language.

    `t()` returns one: a message kept by a screen (the last "Bill 4107… added") is a Text, and
    `retranslate()` draws it again after a language switch instead of leaving it in the old language.

    >>> set_language("fr"); m = t("Amount"); set_language("en")
    >>> m, retranslate(m)
    ('Montant', 'Amount')
    >>> set_language("fr")
    """

    __slots__ = ("_logical", "_render")
    _render: Callable[[], str]
    _logical: Callable[[], str] | None

    def __new__(cls, render: Callable[[], str], logical: Callable[[], str] | None = None) -> Text:
        self = super().__new__(cls, render())
        self._render = render
        self._logical = logical  # the same text before shape(): what wrapped() wraps
        return self

    def again(self) -> Text:
        """The same message in the current language (and bidi mode)."""
        return Text(self._render, self._logical)

    def wrapped(self, width: int) -> str:
        """This message wrapped to `width` cells in logical order, then each line in visual order (as `tw`):
        for a widget that knows its width only once laid out (ui/widgets/bidi_static.py). A Text made
        without its logical form (error_text) comes back as it is.

        >>> set_language("en"); t("Try: F11 scans a bill, F5 pays on the TPE").wrapped(20); set_language("fr")
        'Try: F11 scans a\\nbill, F5 pays on the\\nTPE'
        """
        if self._logical is None:
            return str(self)
        return shape("\n".join(textwrap.fill(p, width=max(width, 1), break_on_hyphens=False) if p else p
                               for p in self._logical().split("\n")))


def retranslate(value: object) -> object:
    """A Text drawn again in the current language; anything else as it is."""
    return value.again() if isinstance(value, Text) else value


def retranslate_attrs(obj: object) -> None:
    """Draw again every Text held in obj's attributes (a screen's message, its title...): for a language
    switch, before the screen composes itself again from its state."""
    for name, value in list(vars(obj).items()):
        if isinstance(value, Text):
            setattr(obj, name, value.again())


def t(message: str, **kwargs: object) -> str:
    """Translate, format with kwargs, and shape for display; a Text (see `retranslate`)."""

    def logical() -> str:
        text = _(message)
        if kwargs:
            text = text.format(**{k: retranslate(v) for k, v in kwargs.items()})
        return text

    return Text(lambda: shape(logical()), logical)


def tw(message: str, width: int, **kwargs: object) -> str:
    """Like `t`, for text the screen wraps (a narrow panel): wrapped to `width` cells here, in logical order,
    then each line put in visual order. Textual would wrap the visual text, which in Arabic puts the first
    words of the sentence on its last line.

    >>> set_language("en"); tw("Try: F11 scans a bill, F5 pays on the TPE", 20); set_language("fr")
    'Try: F11 scans a\\nbill, F5 pays on the\\nTPE'
    """

    def render() -> str:
        text = _(message)
        if kwargs:
            text = text.format(**{k: retranslate(v) for k, v in kwargs.items()})
        return shape(textwrap.fill(text, width=max(width, 1), break_on_hyphens=False))

    return Text(render)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["compile"]:
        for mo in compile_catalogues():
            print(mo)
        return 0
    if args[:1] == ["extract"]:
        for lang, missing in update_catalogues().items():
            print(f"{lang}: {len(missing)} untranslated")
            for m in missing:
                print(f"  {m!r}")
        return 0
    print("usage: python -m ui.i18n compile|extract", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
