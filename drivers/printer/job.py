"""One print job as ESC/POS bytes: python-escpos's commands (init, styles, cut, drawer) plus our ink-only raster.

    job = Job()
    job.text_line("Reçu de paiement", bold=True, center=True)   # printer font, code page WPC1252
    job.image(bitmap)                                          # drivers.printer.raster: only the ink
    job.cut()
    printer.print_job(job.bytes())

Text goes out in code page 16 (WPC1252: every French letter, the euro) selected once with ESC t 16; a
character outside it is a JobError rather than a `?` on the paper (Arabic is never sent as text: python-escpos
would print it unjoined and left to right, so it is drawn, see ui.receipts).
"""

from __future__ import annotations

from PIL import Image

from drivers.printer.raster import raster

ESC_AT = b"\x1b@"
GS_P_DEFAULT = b"\x1dP\x00\x00"  # motion units back to the printer's default (1 dot at 203 dpi)
CODE_PAGE = b"\x1bt\x10"  # ESC t 16: WPC1252
TEXT_ENCODING = "cp1252"
CUT = b"\x1dVB\x30"  # GS V 66 n: feed n dots past the head to the cutter, then partial cut
MAX_JOB = 4 * 1024 * 1024


class JobError(ValueError):
    """A job that cannot be built (text outside the code page, job too large)."""


class Job:
    def __init__(self) -> None:
        from escpos.printer import Dummy

        self._d = Dummy()
        self._d._raw(ESC_AT + GS_P_DEFAULT + CODE_PAGE)

    def _raw(self, data: bytes) -> None:
        if len(self._d.output) + len(data) > MAX_JOB:
            raise JobError(f"job: more than {MAX_JOB} bytes")
        self._d._raw(data)

    def text_line(self, text: str, *, bold: bool = False, center: bool = False, double: bool = False) -> None:
        try:
            data = text.encode(TEXT_ENCODING)
        except UnicodeEncodeError as e:
            raise JobError(f"text: {text[e.start:e.end]!r} is not in code page WPC1252") from None
        if any(b < 0x20 for b in data):
            raise JobError(f"text: control character in {text[:30]!r}")
        self._d.set(align="center" if center else "left", bold=bold, double_height=double, double_width=double)
        self._raw(data + b"\n")
        self._d.set_with_default()

    def image(self, bitmap: Image.Image, double_width: bool = False) -> None:
        self._raw(raster(bitmap, double_width))

    def qr(self, text: str, module: int = 5) -> None:
        """A QR code drawn by the printer (GS ( k, model 2, level M: python-escpos's native QR), centred:
        about 60 bytes on the wire where its bitmap takes 5 KB."""
        from escpos.constants import QR_ECLEVEL_M

        self._d.set(align="center")
        self._d.qr(text, ec=QR_ECLEVEL_M, size=module, native=True)
        self._raw(b"\n")
        self._d.set(align="left")

    def feed(self, dots: int) -> None:
        while dots > 0:
            self._raw(b"\x1bJ" + bytes((min(dots, 255),)))
            dots -= 255

    def cut(self) -> None:
        self._raw(CUT)

    def drawer(self, pin: int = 2) -> None:
        self._d.cashdraw(pin)

    def bytes(self) -> bytes:
        return bytes(self._d.output)
