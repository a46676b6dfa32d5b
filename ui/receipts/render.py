"""The receipt laid out once and drawn as a 1-bit bitmap the width of the printer's head.

    options = ReceiptOptions(dots=576, languages=("fr", "ar"), layout="side", signing_key=b"...")
    bitmap = render(receipt, options)          # PIL image, mode "1", 576 dots wide
    rows(receipt, "ar")                        # the layout of one language, logical order (tests, PCI scan)

Layout: one block of rows per language (title, receipt number, agency, counter, date, cashier, the bills,
stamp duty, total, method, card, authorisation code, offline mark, DUPLICATA), one after the other
(`stack`) or side by side (`side`, rows aligned across the two columns), then the logo above and the signed
QR code (drivers.printer.seal) below. Arabic rows are right-aligned, labels on the right.

Arabic shaping and right-to-left order: with Pillow's raqm layout (libraqm: HarfBuzz + FriBiDi), which
`PIL.features.check("raqm")` reports and Debian's Pillow wheels bundle, Pillow shapes and orders each run
itself. Without it, arabic-reshaper joins the letters and python-bidi puts the line in visual order before
Pillow's basic layout draws it. `SHAPING` says which one this process uses.
Fonts: DejaVu Sans from Debian's fonts-dejavu-core (it has the Arabic block).
Amounts, dates and times: ui.formatting (CLDR) in each row's language.
"""

from __future__ import annotations

import io
import os
import re
import stat
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import qrcode
from PIL import Image, ImageDraw, ImageFont, features

from drivers.pan import digits_hold_pan, scrub_pans
from drivers.printer.seal import Seal, seal_time
from ui import i18n
from ui.formatting import date_text, money, time_text
from ui.i18n import N_
from ui.receipts.model import Receipt
from ui.text import METHOD_LABELS, STATE_LABELS

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
RAQM = features.check("raqm")
SHAPING = "raqm" if RAQM else "arabic-reshaper + python-bidi"
MAX_LOGO_BYTES = 2 * 1024 * 1024
MAX_LOGO_PIXELS = 4_000_000
MAX_DETAIL_LINES = 4  # lines of a bill's period/customer/contract row on paper
LOGO_MAX_HEIGHT = 160
GAP = 16  # dots between the two columns of a side-by-side receipt
_MARKS = str.maketrans("", "", "\u200e\u200f\u061c")

Kind = Literal["title", "pair", "bold_pair", "text", "small", "rule", "space"]

# texts of the receipt that are not already in the catalogues for the receipt screen
N_("Stamp duty")
N_("Amount of the bills")


@dataclass(frozen=True)
class Row:
    kind: Kind
    left: str = ""  # the label (or the text); "left" in the reading direction: the right side in Arabic
    right: str = ""  # the value


@dataclass
class ReceiptOptions:
    dots: int = 576
    languages: tuple[str, ...] = ("fr", "ar")
    layout: Literal["stack", "side"] = "stack"
    text: bool = False  # the printer's own font may print Latin-only receipts
    logo: Path | None = None
    signing_key: bytes = b""
    drawer: bool = False
    compact: bool = False  # half the raster's bytes: double-width dots, the QR code drawn by the printer
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: object) -> ReceiptOptions:
        """From a loaded config (config.schema.Config: its [printer] and [receipts] sections)."""
        printer = config.printer  # type: ignore[attr-defined]
        key = config.receipts.signing_key.get_secret_value()  # type: ignore[attr-defined]
        return cls(dots=printer.dots, languages=tuple(printer.languages), layout=printer.layout, text=printer.text,
                   logo=Path(printer.logo) if printer.logo else None, signing_key=key.encode(),
                   drawer=printer.drawer, compact=printer.compact)


def tr(language: str, message: str) -> str:
    """A message in one language, whatever the UI's current one (a bilingual receipt needs both)."""
    return i18n._load(language).gettext(message)


def rows(receipt: Receipt, language: str) -> list[Row]:
    """The receipt in one language, logical order: what render() draws and what the PCI scan reads."""
    def _(m: str) -> str:
        return tr(language, m)

    def amount(minor: int) -> str:
        return money(minor, receipt.currency, language)

    out = [Row("title", _("PAYMENT RECEIPT"))]
    if receipt.duplicate:
        out.append(Row("title", _("DUPLICATE")))
    out += [
        Row("pair", _("Receipt"), receipt.number),
        Row("pair", _("Agency"), receipt.agency_id),
        Row("pair", _("Counter"), receipt.terminal_id),
        Row("pair", _("Date"), f"{date_text(receipt.when, language)} {time_text(receipt.when, language=language)}"),
        Row("pair", _("Cashier"), receipt.cashier_id),
        Row("rule"),
    ]
    for bill in receipt.bills:
        out.append(Row("pair", f"{_('Bill')} {bill.reference}", amount(bill.amount)))
        detail = " · ".join(x for x in (bill.period, bill.customer, bill.contract) if x)
        if detail:
            out.append(Row("small", detail))
    out.append(Row("rule"))
    if receipt.stamp_duty:
        out.append(Row("pair", _("Amount of the bills"), amount(receipt.subtotal)))
        out.append(Row("pair", _("Stamp duty"), amount(receipt.stamp_duty)))
    out.append(Row("bold_pair", _("Total"), amount(receipt.total)))
    out.append(Row("pair", _("Method"), _(METHOD_LABELS.get(receipt.method, receipt.method))))
    if receipt.pan_masked or receipt.scheme:
        out.append(Row("pair", _("Card"), f"{receipt.scheme} {receipt.pan_masked}".strip()))
    if receipt.auth_code:
        out.append(Row("pair", _("Authorisation code"), receipt.auth_code))
    if receipt.state not in ("approved", "uploaded"):
        out.append(Row("pair", _("Status"), _(STATE_LABELS.get(receipt.state, receipt.state))))
    if receipt.offline:
        out.append(Row("small", _("Taken offline: will be sent to the billing server")))
    # Every field, not only the card's: a PAN typed as an authorization code or sent in a bill's customer name
    return [Row(r.kind, safe_field(r.left), safe_field(r.right)) for r in out]


_NUMBER_SPAN = re.compile(r"\d[\d .\-/]{11,}\d")


def safe_field(text: str) -> str:
    """A receipt field with no card number in it: drivers.pan's scrub, then any run of digits split by spaces,
    dots, dashes or slashes whose digits hold a card number (digits_hold_pan) has its digits hidden.

    >>> safe_field("client 62805800 00001239, 2026-T3")
    'client ******** ********, 2026-T3'
    """
    text = scrub_pans(text)
    return _NUMBER_SPAN.sub(lambda m: re.sub(r"\d", "*", m.group()) if digits_hold_pan(m.group()) else m.group(),
                            text)


def seal_text(receipt: Receipt, key: bytes) -> str:
    """The QR code's text (drivers.printer.seal): number, terminal, total, currency, time, signature."""
    return Seal(receipt.number, receipt.terminal_id, receipt.total, receipt.currency, seal_time(receipt.when)).sign(key)


# -- drawing ----------------------------------------------------------------------------------------------


@cache
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    engine = ImageFont.Layout.RAQM if RAQM else ImageFont.Layout.BASIC
    return ImageFont.truetype(str(FONT_DIR / name), size, layout_engine=engine)


@dataclass(frozen=True)
class _Style:
    body: int
    title: int
    small: int


def _style(width: int) -> _Style:
    if width >= 500:
        return _Style(22, 30, 18)
    if width >= 360:
        return _Style(19, 26, 16)
    return _Style(16, 20, 14)


class _Pen:
    """Draws rows of one language into a column [x0, x0 + width) of the canvas."""

    def __init__(self, draw: ImageDraw.ImageDraw, x0: int, width: int, language: str,
                 notes: list[str] | None = None) -> None:
        self.notes = notes  # where a cut detail line is noted (when drawing)
        self.draw = draw
        self.x0 = x0
        self.width = width
        self.language = language
        self.rtl = language in i18n.RTL_LANGUAGES
        self.style = _style(width)

    def _rtl_run(self, text: str) -> bool:
        """Whether to lay this text out right to left: Arabic rows, except a value with no Arabic letter in it
        (a reference, "2026-T3 · Benali"), which keeps its own order and is only aligned to the right."""
        return self.rtl and i18n._has_rtl(text)

    def _prep(self, text: str) -> str:
        if not self._rtl_run(text):
            return text.translate(_MARKS)
        if RAQM:
            return text
        from arabic_reshaper import reshape
        from bidi.algorithm import get_display

        return get_display(reshape(text), base_dir="R").translate(_MARKS)

    def _kw(self, text: str) -> dict[str, str]:
        if RAQM and self._rtl_run(text):
            return {"direction": "rtl", "language": "ar"}
        return {}

    def length(self, text: str, font: ImageFont.FreeTypeFont) -> float:
        return font.getlength(self._prep(text), **self._kw(text))  # type: ignore[arg-type]

    def text(self, y: int, text: str, font: ImageFont.FreeTypeFont, where: str) -> None:
        """where: start / end (of the reading direction) / center."""
        if not text:
            return
        w = self.length(text, font)
        if where == "center":
            x = self.x0 + (self.width - w) / 2
        elif (where == "start") != self.rtl:
            x = self.x0
        else:
            x = self.x0 + self.width - w
        self.draw.text((max(self.x0, x), y), self._prep(text), font=font, fill=0, **self._kw(text))  # type: ignore[arg-type]

    def fit(self, text: str, size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
        """The font at `size`, smaller (down to 12) when the text would not fit the column."""
        while size > 12 and self.length(text, _font(size, bold)) > self.width:
            size -= 1
        return _font(size, bold)

    def row(self, y: int, row: Row, draw: bool = True) -> int:
        """Draws one row at y; returns its height (draw=False: only measures)."""
        s = self.style
        if row.kind == "space":
            return int(row.left or 8)
        if row.kind == "rule":
            if draw:
                self.draw.line((self.x0, y + 6, self.x0 + self.width - 1, y + 6), fill=0, width=2)
            return 14
        if row.kind == "title":
            font = self.fit(row.left, s.title, bold=True)
            if draw:
                self.text(y, row.left, font, "center")
            return s.title + 10
        if row.kind == "small":
            font = _font(s.small)
            lines = self._wrap(row.left, font)
            if len(lines) > MAX_DETAIL_LINES:  # a bill's details within the contract's 200 characters each
                lines = [*lines[:MAX_DETAIL_LINES - 1], lines[MAX_DETAIL_LINES - 1] + " …"]
                note = f"a detail row was cut to {MAX_DETAIL_LINES} lines"
                if draw and self.notes is not None and note not in self.notes:
                    self.notes.append(note)
            if draw:
                for i, line in enumerate(lines):
                    self.text(y + i * (s.small + 5), line, font, "start")
            return len(lines) * (s.small + 5)
        bold = row.kind == "bold_pair"
        font = _font(s.body, bold)
        line_h = s.body + 8
        lw, rw = self.length(row.left, font), self.length(row.right, font)
        if lw + rw + 12 <= self.width:
            if draw:
                self.text(y, row.left, font, "start")
                self.text(y, row.right, font, "end")
            return line_h
        value_font = self.fit(row.right, s.body, bold)
        if draw:
            self.text(y, row.left, self.fit(row.left, s.body, bold), "start")
            self.text(y + line_h, row.right, value_font, "end")
        return 2 * line_h

    def _wrap(self, text: str, font: ImageFont.FreeTypeFont) -> list[str]:
        lines: list[str] = []
        current = ""
        for word in text.split():
            candidate = f"{current} {word}".strip()
            if current and self.length(candidate, font) > self.width:
                lines.append(current)
                current = word
            else:
                current = candidate
        return [*lines, current] if current else lines or [""]


def load_logo(path: Path, width: int) -> Image.Image | None:
    """The logo scaled to the paper (at most LOGO_MAX_HEIGHT dots high), dithered to 1 bit; None (and the
    reason raised as ValueError) for a file that is not a sane image."""
    # A regular file only (a FIFO would block, /dev/zero never end), opened without blocking, read up to the limit
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"logo: {path} is not a regular file")
        data = f.read(MAX_LOGO_BYTES + 1)
    if len(data) > MAX_LOGO_BYTES:
        raise ValueError(f"logo: {path} is larger than {MAX_LOGO_BYTES} bytes")
    try:
        with Image.open(io.BytesIO(data)) as src:
            if src.width * src.height > MAX_LOGO_PIXELS:
                raise ValueError(f"logo: {path}: {src.width}x{src.height} is more than {MAX_LOGO_PIXELS} pixels")
            src.load()
            im: Image.Image = src
            if im.mode in ("RGBA", "LA", "P"):  # transparent parts print as paper, not as ink
                im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im.convert("RGBA"))
            grey = im.convert("L")
    except (OSError, Image.DecompressionBombError, SyntaxError) as e:
        raise ValueError(f"logo: {path}: not an image Pillow reads ({e})") from None
    scale = min(width / grey.width, LOGO_MAX_HEIGHT / grey.height, 1.0)
    if scale < 1.0:
        grey = grey.resize((max(1, int(grey.width * scale)), max(1, int(grey.height * scale))),
                           Image.Resampling.LANCZOS)
    return grey.convert("1")


def qr_image(text: str, dots: int) -> Image.Image:
    """The QR code of `text`, modules of 4 or 5 dots (readable from a thermal print by a phone)."""
    # A fixed mask: the library's search for the best of the 8 masks was two thirds of a receipt's render
    # time; any mask is a valid code, and a thermal print's contrast does not need the best one.
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=5 if dots >= 500 else 4,
                       border=0, mask_pattern=4)
    qr.add_data(text)
    qr.make(fit=True)
    img = qr.make_image().get_image()
    return img.convert("1")


def render(receipt: Receipt, options: ReceiptOptions) -> Image.Image:
    """The whole receipt as a 1-bit bitmap, `options.dots` wide (without its QR code when `compact`)."""
    languages = options.languages or ("fr",)
    seal = None
    if options.signing_key and not options.compact:  # compact: the printer draws the QR (ui.receipts.printing)
        seal = seal_text(receipt, options.signing_key)
    elif not options.signing_key:
        options.notes.append("no QR seal: [receipts] signing_key is empty")
    return render_blocks([(lang, rows(receipt, lang)) for lang in languages], options, qr=seal,
                         footer=receipt.number if seal else "")


def render_blocks(blocks: list[tuple[str, list[Row]]], options: ReceiptOptions, *, qr: str | None = None,
                  footer: str = "") -> Image.Image:
    """Rows of one or two languages as a bitmap: the logo, the blocks (stacked or side by side as
    `options.layout` says), then a QR code of `qr` and a centred `footer`. Receipts, and any printout laid out
    in rows (a Z report: Row("title", ...), Row("pair", label, amount), Row("rule"), ...)."""
    width = options.dots
    logo = None
    if options.logo:
        try:
            logo = load_logo(options.logo, width)
        except (OSError, ValueError) as e:
            options.notes.append(f"logo left out: {e}")
    code = qr_image(qr, width) if qr else None
    # Laid out twice: measured first (nothing is drawn), then drawn on a canvas of exactly that height, so a
    # long row can never push the seal or the last rows off the paper.
    height = _lay_out(ImageDraw.Draw(Image.new("1", (1, 1))), None, blocks, options, logo, code, footer)
    canvas = Image.new("1", (width, max(height, 1)), 1)
    _lay_out(ImageDraw.Draw(canvas), canvas, blocks, options, logo, code, footer)
    return canvas


def _lay_out(draw: ImageDraw.ImageDraw, canvas: Image.Image | None, blocks: list[tuple[str, list[Row]]],
             options: ReceiptOptions, logo: Image.Image | None, code: Image.Image | None, footer: str) -> int:
    """Lays the receipt out from the top; draws only when given the `canvas`. Returns the height used."""
    width = options.dots
    languages = [lang for lang, _ in blocks]
    rowss = [b for _, b in blocks]
    notes = options.notes if canvas is not None else None
    draw.fontmode = "1"
    y = 0
    if logo is not None:
        if canvas is not None:
            canvas.paste(logo, ((width - logo.width) // 2, y))
        y += logo.height + 12
    if options.layout == "side" and len(languages) == 2:
        col = (width - GAP) // 2
        pens = [_Pen(draw, 0, col, languages[0], notes), _Pen(draw, col + GAP, col, languages[1], notes)]
        for pair in zip(*rowss, strict=False):
            h = max(pen.row(y, r, draw=False) for pen, r in zip(pens, pair, strict=True))
            if canvas is not None:
                for pen, r in zip(pens, pair, strict=True):
                    pen.row(y, r)
            y += h
    else:
        for i, (lang, block) in enumerate(blocks):
            if i:
                y += 10
                if canvas is not None:
                    draw.line((0, y, width - 1, y), fill=0, width=1)
                y += 14
            pen = _Pen(draw, 0, width, lang, notes)
            for r in block:
                y += pen.row(y, r, draw=canvas is not None)
    y += 16
    if code is not None:
        if canvas is not None:
            canvas.paste(code, ((width - code.width) // 2, y))
        y += code.height + 8
    if footer:
        if canvas is not None:
            _Pen(draw, 0, width, "fr").text(y, footer, _font(_style(width).small), "center")
        y += _style(width).small + 8
    return y
