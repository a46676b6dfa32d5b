"""ESC/POS real-time status (DLE EOT n) parsed into a typed `PrinterStatus`, and the printer's typed errors.

Each of the four requests is answered by one byte whose bits 1 and 4 are always 1 and bits 0 and 7 always 0
(Epson ESC/POS, DLE EOT): a byte without that frame is not a status and is refused naming it.

    >>> parse_status({1: 0x12, 2: 0x12, 3: 0x12, 4: 0x12}).ready
    True
    >>> parse_status({1: 0x1A, 2: 0x16, 4: 0x12}).problem
    'cover open'
    >>> parse_status({1: 0x1A, 2: 0x32, 4: 0x72}).problem
    'paper out'
    >>> status_byte(4, b"\\x93")
    Traceback (most recent call last):
    ...
    drivers.printer.status.PrinterProtocolError: DLE EOT 4: byte 0x93 is not a status byte (bits 1,4 set, 0,7 clear)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

DLE_EOT = b"\x10\x04"
STATUS_REQUESTS = (1, 2, 3, 4)  # printer, offline cause, error cause, roll paper sensor
FRAME_MASK, FRAME_BITS = 0x93, 0x12

Paper = Literal["ok", "near_end", "out"]


class PrinterError(Exception):
    """Anything that kept a job from printing; `kind` is what a status bar or a queue shows."""

    kind = "error"


class PrinterUnavailable(PrinterError):
    """No printer configured, or the transport could not be opened or was lost (unplugged, refused)."""

    kind = "unavailable"


class PrinterTimeout(PrinterError):
    """The printer took longer than `[printer] timeout` to take bytes or to answer a status request."""

    kind = "timeout"


class PrinterProtocolError(PrinterError):
    """The printer sent bytes that are not what ESC/POS says it sends."""

    kind = "protocol"


class PrinterNotReady(PrinterError):
    """The printer answered, and is not ready: paper out, cover open, offline or in error."""

    kind = "not_ready"

    def __init__(self, status: PrinterStatus) -> None:
        super().__init__(f"printer not ready: {status.problem}")
        self.status = status


@dataclass(frozen=True)
class PrinterStatus:
    """What the printer said of itself. `known` is False where the transport cannot read (file://, none)."""

    known: bool = True
    online: bool | None = None
    cover_open: bool | None = None
    paper: Paper | None = None
    error: str | None = None  # "autocutter", "unrecoverable", "auto-recoverable", "error"
    drawer_pin3_high: bool | None = None  # the drawer's switch, where one is wired
    raw: dict[int, int] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        """Whether a job can print now (unknown counts as ready: a write-only printer is tried)."""
        return self.problem is None

    @property
    def problem(self) -> str | None:
        """The one thing to tell the cashier, most actionable first; None when ready."""
        if self.cover_open:
            return "cover open"
        if self.paper == "out":
            return "paper out"
        if self.error:
            return f"{self.error} error"
        if self.online is False:
            return "offline"
        return None

    def as_dict(self) -> dict[str, object]:
        return {"known": self.known, "ready": self.ready, "problem": self.problem, "online": self.online,
                "cover_open": self.cover_open, "paper": self.paper, "error": self.error}


UNKNOWN = PrinterStatus(known=False)


def status_byte(n: int, answer: bytes) -> int:
    """The one status byte of an answer to DLE EOT n, validated; anything else is a PrinterProtocolError."""
    if len(answer) != 1:
        raise PrinterProtocolError(f"DLE EOT {n}: expected 1 status byte, got {len(answer)}")
    b = answer[0]
    if b & FRAME_MASK != FRAME_BITS:
        raise PrinterProtocolError(f"DLE EOT {n}: byte 0x{b:02X} is not a status byte (bits 1,4 set, 0,7 clear)")
    return b


def parse_status(answers: Mapping[int, int]) -> PrinterStatus:
    """A PrinterStatus from the validated bytes of the requests answered (n -> byte); missing ones stay None."""
    online = cover = drawer = None
    paper: Paper | None = None
    error = None
    if (b := answers.get(1)) is not None:
        online = not b & 0x08
        drawer = bool(b & 0x04)
    if (b := answers.get(2)) is not None:
        cover = bool(b & 0x04)
        if b & 0x20:
            paper = "out"
        if b & 0x40 and not error:
            error = "error"
    if (b := answers.get(3)) is not None:
        if b & 0x08:
            error = "autocutter"
        elif b & 0x20:
            error = "unrecoverable"
        elif b & 0x40:
            error = "auto-recoverable"
        elif error == "error":
            error = None  # DLE EOT 3 says which; none of them: the cover or the paper was the error
    if (b := answers.get(4)) is not None:
        paper = "out" if b & 0x60 else "near_end" if b & 0x0C else "ok"
    if error == "error" and (cover or paper == "out"):
        error = None
    return PrinterStatus(True, online, cover, paper, error, drawer, dict(answers))


def status_answer(n: int, *, online: bool = True, cover_open: bool = False, paper: Paper = "ok",
                  error: bool = False) -> bytes:
    """The byte a printer in this state answers to DLE EOT n (the virtual printer's side of the codec).

    >>> status_answer(4, paper="out").hex()
    '72'
    """
    b = FRAME_BITS
    if n == 1 and not online:
        b |= 0x08
    if n == 2:
        b |= (0x04 if cover_open else 0) | (0x20 if paper == "out" else 0) | (0x40 if error else 0)
    if n == 3 and error:
        b |= 0x20
    if n == 4:
        b |= 0x60 if paper == "out" else 0x0C if paper == "near_end" else 0
    return bytes((b,))
