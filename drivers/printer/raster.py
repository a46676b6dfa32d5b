"""A 1-bit bitmap as ESC/POS raster commands that send only the ink.

python-escpos's `image()` sends every row at full width (GS v 0). A receipt is mostly paper: blank rows
between lines, margins beside short lines. `raster()` cuts the bitmap into bands of ink rows; a run of blank
rows becomes a paper feed (ESC J n, n dots), and each band is sent from its leftmost to its rightmost inked
byte (GS L sets the left margin, GS v 0 prints the band). Band boundaries are chosen by dynamic programming
to minimise bytes (a header costs 12 bytes; a narrow line under a wide one gets its own band).

Assumption, stated where it is used: the horizontal and vertical motion units are one dot (the default of
203 dpi heads: TM-T20, TM-m30 and most compatibles); the job begins with GS P 0 0 to restore them.

    >>> from PIL import Image
    >>> im = Image.new("1", (64, 40), 1)          # white
    >>> im.paste(0, (16, 10, 24, 12))             # a 8x2 black mark at x=16, y=10
    >>> raster(im).hex(" ")
    '1b 4a 0a 1d 4c 10 00 1d 76 30 00 01 00 02 00 ff ff 1b 4a 1c 1d 4c 00 00'
"""

from __future__ import annotations

from PIL import Image

ESC_J = b"\x1bJ"
GS_L = b"\x1dL"
GS_V0 = b"\x1dv0\x00"
HEADER_COST = 12  # GS L (4) + GS v 0 m xL xH yL yH (8)
MAX_BAND = 255  # rows per GS v 0: small enough for any printer's buffer
LOOKBACK = 64  # rows a band may span when choosing boundaries (bounds the DP's work)
_INVERT = bytes(255 - i for i in range(256))


def ink_rows(image: Image.Image) -> tuple[int, list[bytes]]:
    """(bytes per row, rows) of the bitmap with 1 = ink, as the printer wants it (PIL's "1" has 1 = white)."""
    im = image if image.mode == "1" else image.convert("1")
    width_bytes = (im.width + 7) // 8
    data = im.tobytes().translate(_INVERT)
    rows = [data[i * width_bytes:(i + 1) * width_bytes] for i in range(im.height)]
    # padding bits past the width were white (1) and are now ink: clear them
    if im.width % 8:
        keep = (0xFF << (8 - im.width % 8)) & 0xFF
        rows = [r[:-1] + bytes((r[-1] & keep,)) for r in rows]
    return width_bytes, rows


def _extent(row: bytes) -> tuple[int, int] | None:
    stripped = row.strip(b"\x00")
    if not stripped:
        return None
    left = len(row) - len(row.lstrip(b"\x00"))
    return left, left + len(stripped)


def _feed(dots: int) -> bytes:
    out = bytearray()
    while dots > 0:
        step = min(dots, 255)
        out += ESC_J + bytes((step,))
        dots -= step
    return bytes(out)


def _band(rows: list[bytes], left: int, right: int, scale: int = 1) -> bytes:
    width = right - left
    mode = b"\x00" if scale == 1 else b"\x01"  # GS v 0 m=1: each dot printed twice as wide
    head = GS_L + (left * 8 * scale).to_bytes(2, "little") + GS_V0[:-1] + mode + width.to_bytes(2, "little")
    return head + len(rows).to_bytes(2, "little") + b"".join(r[left:right] for r in rows)


def _split(extents: list[tuple[int, int]]) -> list[int]:
    """Band starts for a run of ink rows that minimise header + data bytes."""
    n = len(extents)
    best = [0] * (n + 1)
    start = [0] * (n + 1)
    for j in range(1, n + 1):
        lo, hi = extents[j - 1]
        best[j] = 1 << 60
        for i in range(j - 1, max(-1, j - 1 - min(LOOKBACK, MAX_BAND)), -1):
            a, b = extents[i]
            lo, hi = min(lo, a), max(hi, b)
            cost = best[i] + HEADER_COST + (j - i) * (hi - lo)
            if cost < best[j]:
                best[j], start[j] = cost, i
    cuts, j = [], n
    while j > 0:
        cuts.append(start[j])
        j = start[j]
    return sorted(cuts)


def half_width(image: Image.Image) -> Image.Image:
    """The bitmap at half its horizontal resolution, a dot inked where either of its two was (thin strokes
    stay): printed with raster(..., double_width=True) it covers the same paper with half the bytes."""
    grey = image.convert("L").reduce((2, 1))
    return grey.point(lambda v: 255 if v == 255 else 0).convert("1", dither=Image.Dither.NONE)


def raster(image: Image.Image, double_width: bool = False) -> bytes:
    """The ESC/POS bytes that print `image` (mode "1" or anything Pillow converts), ink only.
    double_width: each dot printed two dots wide (GS v 0 m=1), for an image made by half_width()."""
    scale = 2 if double_width else 1
    _, rows = ink_rows(image)
    out = bytearray()
    blank = 0
    y = 0
    while y < len(rows):
        ext = _extent(rows[y])
        if ext is None:
            blank += 1
            y += 1
            continue
        out += _feed(blank)
        blank = 0
        run_start = y
        extents = []
        while y < len(rows) and (e := _extent(rows[y])) is not None:
            extents.append(e)
            y += 1
        cuts = _split(extents) + [len(extents)]
        for a, b in zip(cuts, cuts[1:], strict=False):
            lo = min(e[0] for e in extents[a:b])
            hi = max(e[1] for e in extents[a:b])
            out += _band(rows[run_start + a:run_start + b], lo, hi, scale)
    out += _feed(blank)
    out += GS_L + b"\x00\x00"
    return bytes(out)


def escpos_image(image: Image.Image) -> bytes:
    """python-escpos's own `image()` of the same bitmap (GS v 0, every row, full width): the baseline."""
    import contextlib
    import io

    from escpos.printer import Dummy

    d = Dummy()
    with contextlib.redirect_stdout(io.StringIO()):  # escpos prints a note about its profile's unknown width
        d.image(image.convert("1"), impl="bitImageRaster", fragment_height=960)
    return bytes(d.output)
