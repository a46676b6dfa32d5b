"""The Linux console fallback (TERM=linux): what reaches the terminal is drawable by the console font,
in 16 colours, and Arabic is refused with one line that says to use the kiosk mode.

The console font's glyph list (ui.console.FONT_GLYPHS) is what both fonts a counter may run have: the
kernel's built-in one (IBM code page 437, as Linux's drivers/tty/vt/cp437.uni maps it) and Debian's usual
console-setup font, Lat15-Fixed16 (256 glyphs: no half blocks, no ► ◄ ○ √; review 6, finding 8).
"""

from __future__ import annotations

import asyncio
import fcntl
import gzip
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len

from ui import console, i18n
from ui.console import FONT_GLYPHS, console_text

GUICHET = str(Path(sys.executable).with_name("guichet"))
# CSI (with SGR colours), OSC, and two-byte escapes: the terminal's controls, not glyphs.
ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_=>78]")
SGR = re.compile(r"\x1b\[([0-9;:]*)m")


def drawable(ch: str) -> bool:
    return ch in FONT_GLYPHS or ch in "\r\n\t\x07\x08"


@given(st.text())
def test_console_text_only_ever_writes_the_fonts_glyphs(text: str) -> None:
    out = console_text(text)
    assert all(drawable(ch) or ord(ch) < 0x20 for ch in out)


def test_console_text_keeps_the_width_of_what_textual_draws() -> None:
    # Box corners, eighth and half blocks (the radio buttons' ends), the ellipsis, CLDR's narrow no-break
    # space, the marks Textual draws: one cell for one cell, each one the font has.
    for ch in "╭╮╰╯━┃▁▂▃▄▅▆▇▀▔▏▎▍▌▐▋▊▉●○►◄▶◀√✓…—\u202f":
        assert len(console_text(ch)) == 1 and drawable(console_text(ch)), ch
    assert console_text("11\u202f273,00\xa0DA") == "11 273,00\xa0DA"
    assert console_text("مرحبا") == "?????"  # never reaches the console: the UI refuses Arabic first


def test_console_text_keeps_rich_cell_widths() -> None:
    """Textual lays out with Rich's widths; the console must get as many cells (review 6, finding 9)."""
    assert console_text("Ame\u0301lie") == "Amélie"  # decomposed: composed to the font's é, 6 cells
    assert console_text("B. Leila \U0001F600") == "B. Leila ??"  # a wide emoji: two cells
    assert console_text("مُحَمَّد") == "????"  # harakat take no cell
    assert console_text("a\u200bb\u0301") == "ab"  # zero-width and a lone combining mark: nothing


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"))))
def test_console_text_writes_as_many_cells_as_rich_laid_out(text: str) -> None:
    assert cell_len(console_text(text)) == cell_len(text)


def test_the_font_glyphs_are_in_both_console_fonts() -> None:
    """Neither the radio buttons' half blocks nor ► ◄ ○ √ (Lat15 lacks them) are ever drawn."""
    for ch in "▐▌▄▀►◄○√▓":
        assert ch not in FONT_GLYPHS
    assert set(console.FALLBACK.values()) - {""} <= FONT_GLYPHS


LAT15 = Path("/usr/share/consolefonts/Lat15-Fixed16.psf.gz")


@pytest.mark.skipif(not LAT15.exists() or shutil.which("psfgettable") is None,
                    reason="console-setup's Lat15-Fixed16 (Debian package console-setup-linux) or kbd missing")
def test_the_font_glyphs_are_in_debians_lat15_font(tmp_path: Path) -> None:
    font = tmp_path / "lat15.psf"
    font.write_bytes(gzip.decompress(LAT15.read_bytes()))
    table = subprocess.run(["psfgettable", str(font)], capture_output=True, text=True, timeout=30).stdout
    have = {chr(int(u, 16)) for u in re.findall(r"U\+([0-9a-fA-F]{4,5})", table)}
    assert FONT_GLYPHS - have == set()


def _console_run(tmp_path: Path, script: str, cols: int = 120, rows: int = 40) -> tuple[int, str]:
    """`guichet demo --script` on a pty with TERM=linux, as the kernel console would run it: (exit, output)."""
    path = tmp_path / "script.txt"
    path.write_text(script)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLORTERM", "COLUMNS", "LINES", "TEXTUAL_COLOR_SYSTEM")}
    env.update(TERM="linux", LANG="C.UTF-8")
    proc = subprocess.Popen([GUICHET, "demo", "--no-reader", "--state-dir", str(tmp_path / "demo"), "--script",
                             str(path)], stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            ready, _w, _x = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the demo closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        os.close(master)
    return rc, out.decode("utf-8", errors="replace")


def test_the_demo_on_the_linux_console_draws_only_console_glyphs_in_16_colours(tmp_path: Path) -> None:
    rc, out = _console_run(tmp_path, "press f11\nwait-text {scan0}\npress f9\nsleep 0.5\npress f5\n"
                                     "wait ReceiptScreen\nsleep 0.5\nexpect approved\npress enter\nsleep 0.5\n"
                                     "press f8\nsleep 1\n")
    text = ESCAPES.sub("", out)
    assert rc == 0, text[-3000:]
    assert "Paiement" in text and "REÇU DE PAIEMENT" in text  # the screens were drawn
    outside = sorted({ch for ch in text if not drawable(ch) and ord(ch) >= 0x20})
    assert outside == [], f"glyphs the console font does not have: {outside}"
    # 16 colours: SGR 30-37/40-47/90-97/100-107, never 256-colour (38;5) or true colour (38;2).
    for params in SGR.findall(out):
        codes = [p for p in re.split("[;:]", params) if p]
        assert "38" not in codes and "48" not in codes, params
    # F8 from French skipped Arabic, with the line saying to use the kiosk.
    assert "mode kiosque" in text


def test_arabic_is_refused_on_the_console_at_start_and_on_the_language_switch(tmp_path, monkeypatch) -> None:
    from guichet.cli.demo import DEMO_CASHIER, DemoDevices, _ensure_cashiers, demo_app
    from ui.backend import Backend

    monkeypatch.setenv("TERM", "linux")
    devices = DemoDevices(tmp_path, reader=False, language="ar")
    backend = None
    try:
        cfg = devices.config()
        Path(cfg.state.dir).mkdir(parents=True, exist_ok=True)
        backend = Backend.open(cfg, cashiers=_ensure_cashiers(Path(cfg.state.dir)))
        app = demo_app()(backend, demo=devices, auto_login=DEMO_CASHIER)
        assert i18n.language() == "fr"  # ui.language = "ar" on TERM=linux: French, and the line says why

        async def run() -> list[str]:
            async with app.run_test(headless=True, size=(120, 40)) as pilot:
                await pilot.pause(0.5)
                assert app.has_class(console.CONSOLE_CLASS)
                app.set_language("ar")
                await pilot.pause(0.2)
                assert i18n.language() != "ar"
                return [str(n.message) for n in app._notifications]

        lines = asyncio.run(run())
        refusals = [m for m in lines if "install.sh --kiosk" in m]
        assert len(refusals) == 2 and all("\n" not in m for m in refusals)
    finally:
        if backend is not None:
            backend.close()
        devices.close()
        i18n.set_language("fr")


def test_refusal_is_only_for_arabic() -> None:
    assert console.refusal("fr") is None and console.refusal("en") is None
    assert console.language_for("ar", "fr") [0] == "en"  # F8 from French goes on to English
    assert console.language_for("ar", "en")[0] == "fr"
    assert not console.is_console({"TERM": "xterm-256color"}) and console.is_console({"TERM": "linux"})
