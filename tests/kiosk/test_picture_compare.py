"""The kiosk pictures' comparison (tests/kiosk/kiosk.py difference) catches what a cashier would see wrong:
a colour change at the same brightness, one line of text gone, one word changed; and ignores masked cells
(review 6, finding 4). On the reviewed references themselves, no kiosk needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.kiosk.kiosk import Grid, difference
from tests.kiosk.test_kiosk_pictures import MAX_ROW_DIFFERING, PICTURES, STATUS_BAR

GRID = Grid(rows=30, cols=116, cell_w=11, cell_h=23)  # foot's DejaVu Sans Mono 14 on the 1280 x 720 output
REFERENCE = PICTURES / "fr-payment.png"


def edited(tmp_path: Path, change) -> Path:
    im = Image.open(REFERENCE).convert("RGB")
    im = change(im) or im
    out = tmp_path / "edited.png"
    im.save(out)
    return out


def cells(row: int, c0: int, c1: int) -> tuple[int, int, int, int]:
    return (c0 * GRID.cell_w, row * GRID.cell_h, c1 * GRID.cell_w - 1, (row + 1) * GRID.cell_h - 1)


def test_the_same_picture_does_not_differ() -> None:
    assert difference(REFERENCE, REFERENCE, GRID).worst == 0.0


def test_a_colour_change_at_the_same_brightness_is_seen(tmp_path: Path) -> None:
    """Red and blue swapped: the blue title bar turns red, the orange total blue (brightness hardly moves)."""
    def swap(im: Image.Image) -> Image.Image:
        r, g, b = im.split()
        return Image.merge("RGB", (b, g, r))

    assert difference(edited(tmp_path, swap), REFERENCE, GRID).worst > MAX_ROW_DIFFERING


@pytest.mark.parametrize("row", [0, 6, 12, 28])
def test_one_line_of_text_gone_is_seen(tmp_path: Path, row: int) -> None:
    bg = Image.open(REFERENCE).convert("RGB").getpixel((5, 400))

    def erase(im: Image.Image) -> None:
        ImageDraw.Draw(im).rectangle(cells(row, 0, GRID.cols), fill=bg)

    diff = difference(edited(tmp_path, erase), REFERENCE, GRID)
    assert diff.worst > MAX_ROW_DIFFERING and diff.worst_row == row


def test_one_changed_word_is_seen(tmp_path: Path) -> None:
    """"Payer (F5)" drawn over by another word of the same length, in the button's own colours."""
    def reword(im: Image.Image) -> None:
        x0, y0, x1, y1 = cells(13, 58, 70)
        fg, bg = (0, 0, 0), im.getpixel((x0 + 2, y0 + 2))
        draw = ImageDraw.Draw(im)
        draw.rectangle((x0, y0, x1, y1), fill=bg)
        draw.text((x0 + 2, y0 + 4), "Annuler (F5)", fill=fg)

    assert difference(edited(tmp_path, reword), REFERENCE, GRID).worst > MAX_ROW_DIFFERING


def test_masked_cells_are_not_compared(tmp_path: Path) -> None:
    """The status bar (clock, the machine's shared reader) may change; the rest of that row is not checked."""
    def clock(im: Image.Image) -> None:
        ImageDraw.Draw(im).rectangle(cells(29, 100, 116), fill=(255, 255, 255))

    changed = edited(tmp_path, clock)
    assert difference(changed, REFERENCE, GRID).worst > MAX_ROW_DIFFERING
    assert difference(changed, REFERENCE, GRID, (STATUS_BAR,)).worst == 0.0


def test_another_size_is_a_total_difference(tmp_path: Path) -> None:
    small = tmp_path / "small.png"
    Image.open(REFERENCE).resize((640, 360)).save(small)
    assert difference(small, REFERENCE, GRID).overall == 1.0
