"""The virtual printer's ESC/POS interpreter: bytes in, paper (a 1-bit bitmap per job) and status answers out.

It understands what guichet sends (drivers.printer.job and raster) and what python-escpos's text styling
sends: ESC @, ESC t/!/E/a/-/M/{/2/3/J/d/p, GS v 0, GS L, GS P, GS V, GS !/B/b, GS ( ... (skipped by length),
DLE EOT n (answered), LF, and text in code pages 437/850/1252/858. Anything else is noted as an error of the
job (bounded list) and skipped one byte at a time, as a printer that does not know a command does.

Bounded: a job is at most MAX_ROWS dot rows (2 m of paper); a raster band at most MAX_BAND_BYTES; the bytes
kept between two calls are at most one command's header. A hostile stream costs CPU, never memory.

    >>> p = Interpreter(dots=64)
    >>> p.feed(b"\\x1b@\\x1dv0\\x00\\x01\\x00\\x02\\x00\\xff\\xff\\x1dVB\\x00")
    b''
    >>> [(j.height, j.cut) for j in p.take_jobs()]
    [(2, True)]
    >>> p.feed(b"\\x10\\x04\\x04")  # DLE EOT 4: roll paper sensor
    b'\\x12'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from drivers.printer.raster import ink_rows

MAX_ROWS = 16000
MAX_BAND_BYTES = 1024 * 1024
MAX_ERRORS = 50
MAX_LINE = 512
LINE_PITCH = 30  # dots per text line (ESC 2: the default line spacing)
CELL_W, CELL_H = 12, 24  # Font A
CODE_PAGES = {0: "cp437", 2: "cp850", 16: "cp1252", 19: "cp858"}
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")

# ESC x: number of argument bytes
ESC_ARGS = {0x40: 0, 0x74: 1, 0x21: 1, 0x45: 1, 0x61: 1, 0x2D: 1, 0x4D: 1, 0x7B: 1, 0x47: 1, 0x52: 1,
            0x20: 1, 0x32: 0, 0x33: 1, 0x4A: 1, 0x64: 1, 0x70: 3, 0x56: 1, 0x55: 1}
GS_ARGS = {0x4C: 2, 0x50: 2, 0x21: 1, 0x42: 1, 0x62: 1, 0x57: 2, 0x68: 1, 0x77: 1, 0x48: 1, 0x66: 1}

StatusFn = Callable[[int], bytes]
MAX_QR_DATA = 7089
# a byte with each bit doubled: the two bytes a double-width raster byte covers
_DOUBLE = [sum(((b >> i) & 1) * (3 << (2 * i)) for i in range(8)).to_bytes(2, "big") for b in range(256)]


@dataclass
class PrintedJob:
    """One job as it came out: its paper, the text the printer drew, and what it noticed."""

    rows: list[bytes] = field(repr=False)
    width: int
    text: list[str] = field(default_factory=list)
    cut: bool = False
    drawer_kicks: int = 0
    errors: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def height(self) -> int:
        return len(self.rows)

    def image(self) -> Image.Image:
        """The paper as a 1-bit image (white background)."""
        wb = (self.width + 7) // 8
        data = b"".join(r.ljust(wb, b"\x00")[:wb] for r in self.rows)
        ink = Image.frombytes("1", (self.width, max(1, len(self.rows))), data or bytes(wb))
        return Image.eval(ink.convert("L"), lambda v: 255 - v).convert("1")


def _font(bold: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    name = "DejaVuSansMono-Bold.ttf" if bold else "DejaVuSansMono.ttf"
    try:
        return ImageFont.truetype(str(FONT_DIR / name), 20)
    except OSError:
        return ImageFont.load_default()


class Interpreter:
    """Feed it bytes as they arrive; it returns what the printer answers (DLE EOT) and collects finished jobs."""

    def __init__(self, dots: int = 576, status: StatusFn | None = None) -> None:
        self.dots = dots
        self.width_bytes = dots // 8
        self.status = status or (lambda n: bytes((0x12,)))
        self._pending = bytearray()
        self._qr_cache: tuple[tuple[bytes, str, int], Image.Image] | None = None
        self._skip = 0
        self._jobs: list[PrintedJob] = []
        self._fonts = {False: _font(False), True: _font(True)}
        self.accept_paper = True  # False while paper out / cover open / offline: data is dropped
        self._new_job()
        self._reset()

    # -- state ------------------------------------------------------------------------------------------

    def _new_job(self) -> None:
        self.job = PrintedJob([], self.dots)
        self._line = bytearray()

    def _reset(self) -> None:
        self.codec = "cp437"
        self.bold = False
        self.double_w = self.double_h = False
        self.align = 0
        self.left = 0
        self.line_pitch = LINE_PITCH
        self.qr_module, self.qr_level, self.qr_data = 3, "M", b""

    def _error(self, what: str) -> None:
        if len(self.job.errors) < MAX_ERRORS:
            self.job.errors.append(what)

    def _add_rows(self, rows: list[bytes]) -> None:
        room = MAX_ROWS - len(self.job.rows)
        if len(rows) > room:
            rows = rows[:max(room, 0)]
            self.job.truncated = True
        self.job.rows.extend(rows)

    def _feed_dots(self, n: int) -> None:
        if self.accept_paper:
            self._add_rows([b""] * n)

    def take_jobs(self) -> list[PrintedJob]:
        jobs, self._jobs = self._jobs, []
        return jobs

    def finish(self) -> list[PrintedJob]:
        """The connection ended: a job with paper but no cut is a job too."""
        self._print_line(force=False)
        if self.job.rows or self.job.drawer_kicks or self.job.errors:
            self._jobs.append(self.job)
        self._new_job()
        return self.take_jobs()

    # -- drawing ----------------------------------------------------------------------------------------

    def _print_line(self, force: bool = True) -> None:
        if not self._line:
            if force:
                self._feed_dots(self.line_pitch)
            return
        text = bytes(self._line).decode(self.codec, errors="replace")
        self._line.clear()
        if not self.accept_paper:
            return
        self.job.text.append(text)
        sx, sy = (2 if self.double_w else 1), (2 if self.double_h else 1)
        h = max(self.line_pitch, CELL_H) * sy
        img = Image.new("1", (self.dots, h), 1)
        draw = ImageDraw.Draw(img)
        width = len(text) * CELL_W * sx
        x0 = self.left + {0: 0, 1: (self.dots - self.left - width) // 2, 2: self.dots - width}.get(self.align, 0)
        font = self._fonts[self.bold]
        for i, ch in enumerate(text):
            x = max(0, x0) + i * CELL_W * sx
            if x >= self.dots:
                break
            if sx == 1 and sy == 1:
                draw.text((x, 0), ch, font=font, fill=0)
            else:
                glyph = Image.new("1", (CELL_W, CELL_H), 1)
                ImageDraw.Draw(glyph).text((0, 0), ch, font=font, fill=0)
                img.paste(glyph.resize((CELL_W * sx, CELL_H * sy)), (x, 0))
        self._add_rows(ink_rows(img)[1])

    def _raster(self, m: int, xb: int, yr: int, data: bytes) -> None:
        if not self.accept_paper:
            return
        if xb * 8 * (1 + (m & 1)) + self.left > self.dots:
            self._error(f"GS v 0: {xb * 8} dots at margin {self.left} exceed the {self.dots}-dot head")
        pad = bytes(self.left // 8)
        if m & 1:  # double width: every dot twice
            rows = [(pad + b"".join(_DOUBLE[b] for b in data[i * xb:(i + 1) * xb]))[:self.width_bytes]
                    for i in range(yr)]
        else:
            rows = [(pad + data[i * xb:(i + 1) * xb])[:self.width_bytes] for i in range(yr)]
        if m & 2:  # double height
            rows = [r for r in rows for _ in (0, 1)]
        self._add_rows(rows)

    def _qr_command(self, p: bytes) -> None:
        """GS ( k, cn 49 (QR code): fn 65 model, 67 module size, 69 error correction, 80 store, 81 print."""
        if len(p) < 2 or p[0] != 49:
            return
        fn, args = p[1], p[2:]
        if fn == 67 and args:
            self.qr_module = min(max(args[0], 1), 16)
        elif fn == 69 and args:
            self.qr_level = {48: "L", 49: "M", 50: "Q", 51: "H"}.get(args[0], "M")
        elif fn == 80 and args[:1] == b"0":
            self.qr_data = args[1:]
        elif fn == 81 and self.qr_data:
            self._print_line(force=False)
            self._draw_qr()

    def _draw_qr(self) -> None:
        import qrcode
        from qrcode.exceptions import DataOverflowError

        levels = {"L": qrcode.constants.ERROR_CORRECT_L, "M": qrcode.constants.ERROR_CORRECT_M,
                  "Q": qrcode.constants.ERROR_CORRECT_Q, "H": qrcode.constants.ERROR_CORRECT_H}
        key = (self.qr_data, self.qr_level, self.qr_module)
        if self._qr_cache is not None and self._qr_cache[0] == key:
            code = self._qr_cache[1]  # print-QR repeated over one store: drawn once (8 bytes must not cost a render)
        else:
            qr = qrcode.QRCode(error_correction=levels[self.qr_level], box_size=self.qr_module, border=0)
            qr.add_data(self.qr_data)
            try:
                qr.make(fit=True)
            except (DataOverflowError, ValueError) as e:
                self._error(f"GS ( k: QR data refused ({e})")
                return
            code = qr.make_image().get_image().convert("1")
            self._qr_cache = (key, code)
        if not self.accept_paper:
            return
        if code.width > self.dots:
            self._error(f"GS ( k: a {code.width}-dot QR code is wider than the head")
            return
        line = Image.new("1", (self.dots, code.height), 1)
        x = {0: self.left, 1: (self.dots - code.width) // 2, 2: self.dots - code.width}.get(self.align, 0)
        line.paste(code, (x, 0))
        self._add_rows(ink_rows(line)[1])

    def _cut(self) -> None:
        self._print_line(force=False)
        if not self.accept_paper:
            return
        self.job.cut = True
        self._jobs.append(self.job)
        self._new_job()

    # -- parsing ----------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Interpret bytes; returns the printer's answers to the real-time requests among them."""
        out = bytearray()
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            data = data[n:]
        buf = self._pending
        buf += data  # in place: a partial band waiting for its bytes is not copied again on every read
        i = 0
        while i < len(buf):
            used = self._step(buf, i, out)
            if used == 0:  # an incomplete command: keep its header for the next call
                break
            if used < 0:  # a command skipped by its length, maybe past what has arrived
                if -used <= len(buf) - i:
                    i += -used
                    continue
                self._skip = -used - (len(buf) - i)
                i = len(buf)
                break
            i += used
        del buf[:i]
        return bytes(out)

    def _step(self, buf: bytearray, i: int, out: bytearray) -> int:
        b = buf[i]
        avail = len(buf) - i
        if b == 0x0A:
            self._print_line()
            return 1
        if b == 0x10:  # DLE
            if avail < 3:
                return 0
            if buf[i + 1] == 0x04:
                out += self.status(buf[i + 2])
                return 3
            if buf[i + 1] == 0x14:  # DLE DC4 fn m t
                return 5 if avail >= 5 else 0
            return 3  # DLE ENQ n and others with one argument
        if b == 0x1B:
            if avail < 2:
                return 0
            cmd = buf[i + 1]
            if cmd not in ESC_ARGS:
                self._error(f"ESC 0x{cmd:02X}: unknown command")
                return 2
            n = ESC_ARGS[cmd]
            if avail < 2 + n:
                return 0
            self._esc(cmd, bytes(buf[i + 2:i + 2 + n]))
            return 2 + n
        if b == 0x1D:
            if avail < 2:
                return 0
            return self._gs(buf, i, avail)
        if b < 0x20:
            return 1  # CR, HT, FF and other controls: nothing to draw
        if len(self._line) < MAX_LINE:
            self._line.append(b)
        return 1

    def _esc(self, cmd: int, a: bytes) -> None:
        if cmd == 0x40:
            self._print_line(force=False)
            self._reset()
        elif cmd == 0x74:
            self.codec = CODE_PAGES.get(a[0], "cp437")
        elif cmd == 0x21:
            self.bold, self.double_h, self.double_w = bool(a[0] & 8), bool(a[0] & 16), bool(a[0] & 32)
        elif cmd == 0x45:
            self.bold = bool(a[0] & 1)
        elif cmd == 0x61:
            self.align = a[0] % 48 if a[0] >= 48 else a[0]
        elif cmd == 0x32:
            self.line_pitch = LINE_PITCH
        elif cmd == 0x33:
            self.line_pitch = a[0]
        elif cmd == 0x4A:
            self._print_line(force=False)
            self._feed_dots(a[0])
        elif cmd == 0x64:
            self._print_line(force=False)
            self._feed_dots(a[0] * self.line_pitch)
        elif cmd == 0x70:
            self.job.drawer_kicks += 1

    def _gs(self, buf: bytearray, i: int, avail: int) -> int:
        cmd = buf[i + 1]
        if cmd == 0x76:  # GS v 0 m xL xH yL yH d...
            if avail < 8:
                return 0
            m, xb, yr = buf[i + 3], buf[i + 4] | buf[i + 5] << 8, buf[i + 6] | buf[i + 7] << 8
            size = xb * yr
            if buf[i + 2] != 0x30 or size > MAX_BAND_BYTES:
                self._error(f"GS v 0: {xb} x {yr} bytes refused (more than {MAX_BAND_BYTES})")
                return -(8 + size)
            if avail < 8 + size:
                return 0
            self._print_line(force=False)
            self._raster(m, xb, yr, bytes(buf[i + 8:i + 8 + size]))
            return 8 + size
        if cmd == 0x56:  # GS V m [n]
            if avail < 3:
                return 0
            m = buf[i + 2]
            n = 4 if m in (65, 66, 97, 98, 103, 104) else 3
            if avail < n:
                return 0
            if n == 4:
                self._print_line(force=False)
                self._feed_dots(buf[i + 3])
            self._cut()
            return n
        if cmd == 0x28:  # GS ( X pL pH ...: length-prefixed; GS ( k (QR code) is drawn, the others skipped
            if avail < 5:
                return 0
            size = buf[i + 3] | buf[i + 4] << 8
            if buf[i + 2] != 0x6B or size > MAX_QR_DATA + 3:
                return -(5 + size)
            if avail < 5 + size:
                return 0
            self._qr_command(bytes(buf[i + 5:i + 5 + size]))
            return 5 + size
        if cmd in GS_ARGS:
            n = GS_ARGS[cmd]
            if avail < 2 + n:
                return 0
            if cmd == 0x4C:
                self.left = min(buf[i + 2] | buf[i + 3] << 8, self.dots - 8) // 8 * 8
            elif cmd == 0x21:
                self.double_w, self.double_h = bool(buf[i + 2] & 0x70), bool(buf[i + 2] & 0x07)
            return 2 + n
        self._error(f"GS 0x{cmd:02X}: unknown command")
        return 2
