"""What the cashier sees in the kiosk, proved with pictures: the real cage + foot, headless, running the demo
in French and in Arabic; grim's screenshots compared with the reviewed references in tests/kiosk/pictures/.

    GUICHET_UPDATE_PICTURES=1 pytest tests/kiosk/test_kiosk_pictures.py   # after a deliberate screen change:
                                                                          # review the PNGs, then commit them
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.kiosk.kiosk import Cells, difference, kiosk, missing_tools

PICTURES = Path(__file__).with_name("pictures")
SCREENS = ("payment", "wait", "receipt")
# Of the pixels of any one cell row (1280 x 23 px at 116 x 30 cells): about 60 pixels, a third of a glyph's
# ink. The same foot, font and renderer (pixman) draw the same pixels; what moves between runs is masked.
MAX_ROW_DIFFERING = 0.002
# What changes from run to run, in cells (row, first column, past the last column); rows < 0 from the bottom.
# The status bar: its clock, and this machine's PC/SC reader, which other processes share (a card in it).
STATUS_BAR: Cells = (-1, 0, 1000)
MASKED: dict[str, dict[str, tuple[Cells, ...]]] = {
    "payment": {},
    "wait": {"fr": ((15, 29, 87),), "ar": ((15, 29, 87),)},  # the loading indicator's dots move
    "receipt": {"fr": ((7, 38, 56),), "ar": ((7, 56, 75),)},  # the receipt's date and time
}
RUN_TIMEOUT = 60.0

if missing_tools():
    reason = f"the kiosk needs {', '.join(missing_tools())} (Debian packages cage foot grim socat)"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytestmark = pytest.mark.skip(reason=reason)

SCRIPT = """\
tpe-delay 6
press f11
wait-text {{scan0}}
press f9
sleep 0.5
screenshot {out}/{lang}-payment.png
press f5
wait WaitScreen
sleep 0.8
screenshot {out}/{lang}-wait.png
wait ReceiptScreen
sleep 0.5
screenshot {out}/{lang}-receipt.png
expect approved
"""


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_kiosk_demo_pictures_match_the_reviewed_ones(tmp_path: Path, lang: str) -> None:
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"guichet-pictures-{os.getpid()}-{lang}"
    out.mkdir(mode=0o755, exist_ok=True)
    script = tmp_path / "script.txt"
    script.write_text(SCRIPT.format(out=out, lang=lang))
    args = ["--language", lang, "--no-reader", "--state-dir", str(tmp_path / "demo"), "--script", str(script)]
    try:
        with kiosk(args, tmp_path / "demo.log") as k:
            rc = k.wait_done(RUN_TIMEOUT)
            grid = k.grid()
        shots = {s: out / f"{lang}-{s}.png" for s in SCREENS}
        log = (tmp_path / "demo.log").read_text(errors="replace")[-2000:]
        taken = sorted(p.name for p in out.iterdir())
        assert rc == 0, f"the demo's script failed (exit {rc}); pictures taken: {taken}\n{log}"
        update = bool(os.environ.get("GUICHET_UPDATE_PICTURES"))
        for screen, shot in shots.items():
            reference = PICTURES / shot.name
            if update or not reference.exists():
                PICTURES.mkdir(exist_ok=True)
                shutil.copy(shot, reference)
                if not update:
                    pytest.fail(f"{reference} did not exist: written from this run, review it and commit it")
                continue
            masked = (STATUS_BAR, *MASKED[screen].get(lang, ()))
            diff = difference(shot, reference, grid, masked)
            keep = tmp_path / f"actual-{shot.name}"
            shutil.copy(shot, keep)
            assert diff.worst <= MAX_ROW_DIFFERING, f"{screen} ({lang}): {diff} differ from {reference}; " \
                                                    f"this run's picture: {keep}"
    finally:
        shutil.rmtree(out, ignore_errors=True)
