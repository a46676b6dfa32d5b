"""The receipt as a print job, and printing it: the API the print queue and the receipt screen call.

    result = print_receipt(printer, receipt, options)   # drivers.printer.PrintResult, never raises
    result.ok                # True: on paper (the printer said so after the job, where it can say)
    result.error             # else a drivers.printer.PrinterError: PrinterNotReady (.status.problem:
                             # "paper out", "cover open", "offline"), PrinterTimeout, PrinterUnavailable,
                             # PrinterProtocolError; the caller queues the receipt and prints it again later
    prepare(receipt, options).path    # "image" or "text": which path a receipt takes

Which path: the bitmap (ui.receipts.render) unless `[printer] text = true` and every language of the receipt
is written in Latin letters (fr, en), in the stacked layout; then the rows go as text in the printer's font
(code page WPC1252), with the logo and the QR code as raster. Arabic always goes as a bitmap: a printer's code
page cannot join its letters or order them right to left. A text that the code page cannot hold falls back
to the bitmap.
`compact` (`[printer] raster`, by default on serial lines): the bitmap at half its horizontal resolution,
printed double width (GS v 0 m=1), and the QR code drawn by the printer (GS ( k): half the bytes, so that the
wire keeps up with the head at 115200 baud.
A cash payment with `[printer] drawer = true` opens the drawer (ESC p) at the start of the job, not on a
DUPLICATA.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from drivers.printer import Job, JobError, Printer, PrinterError, PrintResult
from drivers.printer.raster import half_width
from ui.i18n import RTL_LANGUAGES
from ui.receipts.model import Receipt
from ui.receipts.render import ReceiptOptions, Row, load_logo, qr_image, render, render_blocks, rows, seal_text

CELL = 12  # dots per character of the printer's Font A
_TEXT_SAFE = str.maketrans({"\u202f": " ", "\u00a0": " ", "\u200e": None, "\u200f": None, "\u061c": None,
                            "·": "-"})


@dataclass
class PreparedJob:
    data: bytes
    path: str  # "image" | "compact" | "text"
    image: Image.Image | None = None
    notes: list[str] = field(default_factory=list)


def _text_lines(receipt: Receipt, options: ReceiptOptions, cols: int) -> list[tuple[str, bool, bool]]:
    """(line, bold, centered) of a Latin receipt in the printer's font."""
    out: list[tuple[str, bool, bool]] = []
    for i, lang in enumerate(options.languages):
        if i:
            out.append(("=" * cols, False, False))
        for row in rows(receipt, lang):
            left, right = row.left.translate(_TEXT_SAFE), row.right.translate(_TEXT_SAFE)
            if row.kind == "title":
                out.append((left, True, True))
            elif row.kind == "rule":
                out.append(("-" * cols, False, False))
            elif row.kind in ("small", "text"):
                words, line = left.split(), ""
                for w in words:
                    if line and len(line) + 1 + len(w) > cols:
                        out.append((line, False, False))
                        line = w
                    else:
                        line = f"{line} {w}".strip()
                out.append((line[:cols], False, False))
            elif row.kind in ("pair", "bold_pair"):
                bold = row.kind == "bold_pair"
                if len(left) + len(right) + 1 <= cols:
                    out.append((left + " " * (cols - len(left) - len(right)) + right, bold, False))
                else:
                    out.append((left[:cols], bold, False))
                    out.append((right[:cols].rjust(cols), bold, False))
    return out


def prepare(receipt: Receipt, options: ReceiptOptions) -> PreparedJob:
    """The job's bytes for this receipt and these options (raises JobError only for a job too large)."""
    notes: list[str] = []
    kick = options.drawer and receipt.method == "cash" and not receipt.duplicate
    latin = not any(lang in RTL_LANGUAGES for lang in options.languages)
    if options.text and latin and options.layout == "stack":
        job = Job()
        if kick:
            job.drawer()
        try:
            if options.logo:
                try:
                    logo = load_logo(options.logo, options.dots)
                    if logo is not None:
                        job.image(_centered(logo, options.dots))
                except (OSError, ValueError) as e:
                    notes.append(f"logo left out: {e}")
            for line, bold, center in _text_lines(receipt, options, options.dots // CELL):
                job.text_line(line, bold=bold, center=center)
            if options.signing_key:
                job.feed(16)
                job.image(_centered(qr_image(seal_text(receipt, options.signing_key), options.dots), options.dots))
                job.text_line(receipt.number, center=True)
            job.feed(40)
            job.cut()
            return PreparedJob(job.bytes(), "text", None, notes)
        except JobError as e:
            notes.append(f"text path left for the bitmap: {e}")
    image = render(receipt, options)
    notes += options.notes
    job = Job()
    if kick:
        job.drawer()
    if options.compact:
        job.image(half_width(image), double_width=True)
        if options.signing_key:
            job.qr(seal_text(receipt, options.signing_key), module=5 if options.dots >= 500 else 4)
            job.text_line(receipt.number, center=True)
    else:
        job.image(image)
    job.feed(40)
    job.cut()
    return PreparedJob(job.bytes(), "compact" if options.compact else "image", image, notes)


def _centered(img: Image.Image, dots: int) -> Image.Image:
    canvas = Image.new("1", (dots, img.height), 1)
    canvas.paste(img, ((dots - img.width) // 2, 0))
    return canvas


def print_receipt(printer: Printer, receipt: Receipt, options: ReceiptOptions) -> PrintResult:
    """Render and print one receipt. Never raises: a fault of the printer or of the job is in the result."""
    try:
        prepared = prepare(receipt, options)
    except Exception as e:  # noqa: BLE001 a receipt that cannot be built must not reach into the payment
        return PrintResult(False, error=PrinterError(f"receipt {receipt.number}: {type(e).__name__}: {e}"))
    result = printer.print_job(prepared.data)
    result.notes += [f"path: {prepared.path}", *prepared.notes]
    return result


def print_rows(printer: Printer, blocks: list[tuple[str, list[Row]]], options: ReceiptOptions) -> PrintResult:
    """Print any printout laid out in rows (a Z report, a shift close), one block per language, as a bitmap
    (compact on serial lines). Never raises, like print_receipt.

        blocks = [(lang, [Row("title", tr(lang, "Z report")), Row("pair", tr(lang, "Cash"), money(...))])
                  for lang in options.languages]
        print_rows(printer, blocks, options)
    """
    try:
        image = render_blocks(blocks, options)
        job = Job()
        if options.compact:
            job.image(half_width(image), double_width=True)
        else:
            job.image(image)
        job.feed(40)
        job.cut()
    except Exception as e:  # noqa: BLE001 a printout that cannot be built must not reach into the caller
        return PrintResult(False, error=PrinterError(f"printout: {type(e).__name__}: {e}"))
    return printer.print_job(job.bytes())
