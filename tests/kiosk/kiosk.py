"""The real kiosk, headless: cage (WLR_BACKENDS=headless) showing foot, in which `guichet demo` plays a script
and takes grim screenshots; and a tolerant picture comparison (Pillow).

cage refuses to run as root, and CI runs as root: the compositor and the terminal run as the unprivileged
user `guichet-test` (created when missing) with an XDG_RUNTIME_DIR of its own. That user cannot run our
virtualenv (its interpreter lives under /root), so the demo runs as the caller on a pty that socat joins to
foot's terminal through a Unix socket: foot draws exactly what the demo writes, at foot's own size.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw

TEST_USER = "guichet-test"
TOOLS = ("cage", "foot", "grim", "socat")
ROOT = Path(__file__).resolve().parents[2]
FOOT_INI = ROOT / "scripts/kiosk-foot.ini"
GUICHET = str(Path(sys.executable).with_name("guichet"))
START_TIMEOUT = 20.0
# rows, columns, width and height in pixels of the terminal, as foot tells its pty (Debian's python3).
WINSIZE = ("/usr/bin/python3 -c 'import fcntl, struct, termios; "
           "print(*struct.unpack(\"4H\", fcntl.ioctl(0, termios.TIOCGWINSZ, bytes(8))))'")


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def test_user() -> tuple[int, int]:
    """(uid, gid) to run cage as: guichet-test when root (created if needed), else ourselves."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    try:
        pw = pwd.getpwnam(TEST_USER)
    except KeyError:
        # Another worker (xdist) may create it at the same moment: its useradd failing is fine if it exists.
        made = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                               "/nonexistent", "--shell", "/usr/sbin/nologin", TEST_USER],
                              capture_output=True, text=True, timeout=30)
        try:
            pw = pwd.getpwnam(TEST_USER)
        except KeyError:
            raise RuntimeError(f"useradd {TEST_USER}: {made.stderr.strip()}") from None
    return pw.pw_uid, pw.pw_gid


@dataclass(frozen=True)
class Grid:
    """foot's cells: rows x cols of cell_w x cell_h pixels from the top left (pad=0x0); foot leaves the
    remainder of the output (less than a cell) blank at the right and the bottom."""

    rows: int
    cols: int
    cell_w: int
    cell_h: int


@dataclass
class Kiosk:
    runtime: Path  # XDG_RUNTIME_DIR of the compositor (root can use its socket too)
    proc: subprocess.Popen[bytes]

    def grid(self) -> Grid:
        """foot's terminal grid, as foot reported it to its pty."""
        rows, cols, width, height = (int(v) for v in (self.runtime / "size.px").read_text().split())
        return Grid(rows, cols, width // cols, height // rows)

    def wait_done(self, timeout: float) -> int | None:
        """The demo's exit status once it ended (its script played), None if it did not end in time."""
        rc = self.runtime / "rc"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if rc.exists() and rc.read_text().strip():
                return int(rc.read_text().strip())
            time.sleep(0.2)
        return None


@contextmanager
def kiosk(demo_args: list[str], log: Path) -> Iterator[Kiosk]:
    """cage + foot (the repo's kiosk settings) as the test user, foot joined to `guichet demo demo_args`."""
    uid, gid = test_user()
    runtime = Path(tempfile.mkdtemp(prefix="guichet-kiosk-"))
    os.chmod(runtime, 0o700)
    os.chown(runtime, uid, gid)
    sock, size = runtime / "tty.sock", runtime / "size"
    # The demo side: wait for foot's size, give the pty that size, then run the demo on it.
    wrapper = runtime / "demo.sh"
    args = " ".join(f"'{a}'" for a in demo_args)
    wrapper.write_text(
        "#!/bin/sh\n"
        f"while [ ! -s {size} ]; do sleep 0.1; done\n"
        f"read rows cols < {size}\n"
        "stty rows \"$rows\" cols \"$cols\"\n"
        f"{GUICHET} demo {args}\n"
        f"echo $? > {runtime}/rc\n"
    )
    wrapper.chmod(0o755)
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor", "LANG": "C.UTF-8",
           "XDG_RUNTIME_DIR": str(runtime), "WAYLAND_DISPLAY": "wayland-0"}
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    logf = log.open("wb")
    demo = subprocess.Popen(
        ["socat", f"UNIX-LISTEN:{sock},mode=0666", f"EXEC:{wrapper},pty,setsid,ctty,stderr,rawer"],
        env=env, stdout=logf, stderr=logf,
    )
    # The kiosk side, as the test user: foot writes its size, then joins the demo's pty.
    # foot starts at 80 x 24 and is resized to the output at once: read the size once that has happened.
    # (foot's first size is 80 x 24: wait, bounded to 10 s, until it is another; no fixed sleep to race.)
    foot_cmd = ('i=0; while [ "$(stty size)" = "24 80" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; '
                f"{WINSIZE} > {size}.px; stty size > {size}.tmp && mv {size}.tmp {size}; stty raw -echo; "
                f"exec socat - UNIX-CONNECT:{sock}")
    for _ in range(100):  # socat's listener comes up in a few ms
        if sock.exists():
            break
        time.sleep(0.05)
    ini = runtime / "foot.ini"
    shutil.copy(FOOT_INI, ini)
    os.chmod(ini, 0o644)
    kenv = {"PATH": "/usr/bin:/bin", "HOME": str(runtime), "XDG_RUNTIME_DIR": str(runtime), "LANG": "C.UTF-8",
            "WLR_BACKENDS": "headless", "WLR_RENDERER": "pixman", "WLR_LIBINPUT_NO_DEVICES": "1",
            "WLR_XWAYLAND": "/bin/false", "LIBSEAT_BACKEND": "noop"}
    cage = subprocess.Popen(
        ["cage", "--", "foot", f"--config={ini}", "sh", "-c", foot_cmd],
        env=kenv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        user=uid if os.geteuid() == 0 else None, group=gid if os.geteuid() == 0 else None,
        extra_groups=[] if os.geteuid() == 0 else None,
    )
    try:
        yield Kiosk(runtime, demo)
    finally:
        for p in (demo, cage):
            if p.poll() is None:
                p.terminate()
        for p in (demo, cage):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        logf.close()
        shutil.rmtree(runtime, ignore_errors=True)


Cells = tuple[int, int, int]  # (row, first column, column past the last) of the terminal's grid; rows < 0
                               # count from the bottom (the status bar)


@dataclass(frozen=True)
class Difference:
    """How two screenshots of the same terminal differ, judged cell row by cell row."""

    overall: float      # of all (unmasked) pixels
    worst: float        # of the pixels of the worst cell row
    worst_row: int      # that row (0 = top)

    def __str__(self) -> str:
        return f"{self.overall:.3%} of the pixels, {self.worst:.3%} of cell row {self.worst_row}"


def difference(actual: Path, reference: Path, grid: Grid, masked: tuple[Cells, ...] = (),
               tolerance: int = 48) -> Difference:
    """Compare two screenshots of foot's terminal `grid`.

    A pixel differs when any one of R, G, B moved by more than `tolerance` (0-255): a colour change counts
    even where the brightness stays. Judged per cell row as well as overall, so a line of text that vanished,
    or a word that changed, is not drowned in the rest of the screen. `masked` cells (the clock, the
    receipt's date, an animation) are not compared. A different picture size is a total difference.

        d = difference(shot, reference, kiosk.grid(), masked=((-1, 0, 116),))   # status bar masked
        assert d.worst <= 0.002, str(d)
    """
    a = Image.open(actual).convert("RGB")
    b = Image.open(reference).convert("RGB")
    if a.size != b.size:
        return Difference(1.0, 1.0, 0)
    r, g, bl = ImageChops.difference(a, b).split()
    diff = ImageChops.lighter(ImageChops.lighter(r, g), bl).point(lambda v: 255 if v > tolerance else 0)
    rows, ch, cw = grid.rows, grid.cell_h, grid.cell_w
    width, height = a.size
    draw = ImageDraw.Draw(diff)
    for row, c0, c1 in masked:
        row = row % rows
        draw.rectangle((c0 * cw, row * ch, c1 * cw - 1, row * ch + ch - 1), fill=0)
    # The margin below the last row (less than a cell) is judged with the last row.
    total = diff.histogram()[255]
    worst, worst_row = 0.0, 0
    for row in range(rows):
        bottom = height if row == rows - 1 else (row + 1) * ch
        band = diff.crop((0, row * ch, width, bottom))
        frac = band.histogram()[255] / (width * (bottom - row * ch))
        if frac > worst:
            worst, worst_row = frac, row
    return Difference(total / (width * height), worst, worst_row)
