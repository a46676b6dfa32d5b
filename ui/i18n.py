"""Translations (gettext domain "guichet": French, Arabic, English) and right-to-left display of Arabic.

    from ui import i18n
    i18n.set_language("ar", bidi="app")
    i18n._("Bill reference")            # translated, logical order (for storage, logs, comparisons)
    i18n.t("Total: {amount}", amount="3456.00 DZD")   # translated, formatted, shaped for the screen

Terminals differ: with `ui.bidi = "app"` Arabic is reshaped (letter joining, arabic-reshaper) and
reordered to visual order (python-bidi) before Textual paints it; with "terminal" the text is passed
through untouched for terminals that do the bidi algorithm themselves.

Catalogues live in ui/locale/{fr,ar,en}/LC_MESSAGES/guichet.po. `python -m ui.i18n compile` writes the .mo
files (a small msgfmt in pure Python); when a .mo is missing or older than its .po the .po is read directly.
"""

from __future__ import annotations

import ast
import gettext
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path

DOMAIN = "guichet"
LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGES = ("fr", "ar", "en")
LANGUAGE_NAMES = {"fr": "Français", "ar": "العربية", "en": "English"}
RTL_LANGUAGES = frozenset({"ar"})

_lock = threading.Lock()
_state: dict[str, object] = {"language": "fr", "bidi": "app"}
_catalogues: dict[str, gettext.NullTranslations] = {}
_listeners: list[Callable[[str], None]] = []


# -- .po reading and .mo writing (what msgfmt does, for the subset we use) ----------------------------------


def parse_po(text: str) -> dict[str, str]:
    """msgid -> msgstr of a .po file (no plurals, no contexts); fuzzy and empty entries are skipped.

    >>> parse_po('msgid "Pay"\\nmsgstr "Payer"\\n')
    {'Pay': 'Payer'}
    """
    entries: dict[str, str] = {}
    msgid: list[str] | None = None
    msgstr: list[str] | None = None
    fuzzy = False
    current: list[str] | None = None

    def flush() -> None:
        nonlocal msgid, msgstr, fuzzy
        if msgid is not None and msgstr is not None:
            mid, mstr = "".join(msgid), "".join(msgstr)
            if (mstr or mid == "") and not (fuzzy and mid):
                entries[mid] = mstr
        msgid = msgstr = None
        fuzzy = False

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#,") and "fuzzy" in line:
            flush()
            fuzzy = True
            continue
        if not line or line.startswith("#"):
            if not line:
                flush()
            continue
        if line.startswith("msgid "):
            if msgstr is not None:
                keep_fuzzy = fuzzy
                flush()
                fuzzy = keep_fuzzy
            msgid = [_po_string(line[6:], lineno)]
            current = msgid
        elif line.startswith("msgstr "):
            msgstr = [_po_string(line[7:], lineno)]
            current = msgstr
        elif line.startswith('"') and current is not None:
            current.append(_po_string(line, lineno))
        else:
            raise ValueError(f"line {lineno}: unexpected {line[:40]!r}")
    flush()
    return entries


def _po_string(token: str, lineno: int) -> str:
    token = token.strip()
    if not (token.startswith('"') and token.endswith('"')):
        raise ValueError(f"line {lineno}: expected a quoted string, got {token[:40]!r}")
    value = ast.literal_eval(token)
    assert isinstance(value, str)
    return value


def write_mo(entries: dict[str, str], path: Path) -> None:
    """Write a GNU .mo file (little-endian, no hash table) that gettext.GNUTranslations reads."""
    keys = sorted(entries)
    ids = [k.encode() for k in keys]
    strs = [entries[k].encode() for k in keys]
    n = len(keys)
    header = 7 * 4
    key_table = header
    value_table = key_table + n * 8
    data_start = value_table + n * 8
    offsets: list[tuple[int, int]] = []
    blob = b""
    for s in ids + strs:
        offsets.append((len(s), data_start + len(blob)))
        blob += s + b"\0"
    out = struct.pack("<7I", 0x950412DE, 0, n, key_table, value_table, 0, data_start)
    for length, off in offsets:
        out += struct.pack("<2I", length, off)
    tmp = path.with_suffix(".mo.tmp")
    tmp.write_bytes(out + blob)
    tmp.replace(path)


def compile_catalogues(locale_dir: Path = LOCALE_DIR) -> list[Path]:
    """Compile every ui/locale/*/LC_MESSAGES/guichet.po to .mo; returns the .mo paths written."""
    written = []
    for po in sorted(locale_dir.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        entries = parse_po(po.read_text(encoding="utf-8"))
        mo = po.with_suffix(".mo")
        write_mo(entries, mo)
        written.append(mo)
    return written


class _PoTranslations(gettext.NullTranslations):
    def __init__(self, entries: dict[str, str]) -> None:
        super().__init__()
        self._entries = {k: v for k, v in entries.items() if k}

    def gettext(self, message: str) -> str:
        return self._entries.get(message, message)


def _load(language: str) -> gettext.NullTranslations:
    if language not in _catalogues:
        po = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
        mo = po.with_suffix(".mo")
        tr: gettext.NullTranslations
        if mo.exists() and (not po.exists() or mo.stat().st_mtime >= po.stat().st_mtime):
            with mo.open("rb") as f:
                tr = gettext.GNUTranslations(f)
        elif po.exists():
            tr = _PoTranslations(parse_po(po.read_text(encoding="utf-8")))
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


def shape(text: str) -> str:
    """Prepare text for the screen: Arabic joined and in visual order when the app does bidi."""
    if bidi_mode() != "app" or not _has_rtl(text):
        return text
    from arabic_reshaper import reshape
    from bidi.algorithm import get_display  # the pure-Python one mirrors brackets; the Rust one does not

    # Line by line: the bidi algorithm works per paragraph and must not move text across lines.
    base = "R" if is_rtl() else None
    return "\n".join(get_display(reshape(line), base_dir=base) if line else line for line in text.split("\n"))


def _has_rtl(text: str) -> bool:
    return any("\u0590" <= ch <= "\u08ff" or "\ufb1d" <= ch <= "\ufeff" for ch in text)


def t(message: str, **kwargs: object) -> str:
    """Translate, format with kwargs, and shape for display."""
    text = _(message)
    if kwargs:
        text = text.format(**kwargs)
    return shape(text)


# -- extraction (what xgettext does, but it sees inside f-strings and our TITLE_TEXT constants) -----------

_MARKERS = {"_", "t", "N_"}


def extract(paths: list[Path]) -> list[str]:
    """msgids used in the given Python files, in first-seen order."""
    seen: dict[str, None] = {}
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in _MARKERS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                seen.setdefault(node.args[0].value, None)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = {getattr(tg, "id", getattr(tg, "attr", "")) for tg in targets}
                if "TITLE_TEXT" in names and isinstance(node.value, ast.Constant | ast.IfExp):
                    for sub in ast.walk(node.value):
                        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                            seen.setdefault(sub.value, None)
    return list(seen)


def _po_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def write_po(path: Path, language: str, msgids: list[str], translations: dict[str, str]) -> None:
    """Write a catalogue: header, then each msgid with its translation (empty = untranslated)."""
    header = (
        "Project-Id-Version: guichet\n"
        f"Language: {language}\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=UTF-8\n"
        "Content-Transfer-Encoding: 8bit\n"
    )
    title = f"# guichet cashier UI, {LANGUAGE_NAMES.get(language, language)}."
    out = [title, 'msgid ""', "msgstr " + _po_quote(header), ""]
    for mid in msgids:
        out += [f"msgid {_po_quote(mid)}", f"msgstr {_po_quote(translations.get(mid, ''))}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out), encoding="utf-8")


def update_catalogues(locale_dir: Path = LOCALE_DIR) -> dict[str, list[str]]:
    """Re-extract the msgids of ui/ and merge them into every catalogue; returns the untranslated ones."""
    root = Path(__file__).parent
    msgids = extract(sorted(root.rglob("*.py")))
    missing: dict[str, list[str]] = {}
    for lang in LANGUAGES:
        po = locale_dir / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
        old = parse_po(po.read_text(encoding="utf-8")) if po.exists() else {}
        write_po(po, lang, msgids, old)
        missing[lang] = [m for m in msgids if not old.get(m)]
    return missing


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
