"""A local SMTP sink (aiosmtpd): every message it receives is kept as DIR/NNNN.eml, for the demo and the tests.

    with SmtpSink(out=Path("/tmp/mail")) as sink:            # 127.0.0.1, a free port
        sink.address                                         # "127.0.0.1:PORT": the sandbox server's --smtp
        sink.wait_messages(1)[0]["Subject"]                  # email.message.EmailMessage, parsed
    guichet sandbox smtp --listen 127.0.0.1:2525 --out DIR  # the same, on the command line

Bounded: a message over MAX_MESSAGE bytes is refused by the server (552, aiosmtpd's data_size_limit); at most
MAX_KEPT messages are kept in memory (the files stay). Loopback only by default.

For `guichet demo`: `start_receipt_devices(DIR)` starts the virtual printer (TCP) and this sink and returns
their URLs; `close()` stops both.
"""

from __future__ import annotations

import email
import email.policy
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import click
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

MAX_MESSAGE = 1024 * 1024
MAX_KEPT = 500


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        self.sink._keep(raw, list(envelope.rcpt_tos))
        return "250 Message accepted"


class SmtpSink:
    def __init__(self, out: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.host, self.port = host, port
        self.messages: list[EmailMessage] = []
        self._seq = len(list(self.out.glob("[0-9][0-9][0-9][0-9].eml")))
        self._cond = threading.Condition()
        self._controller: Controller | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> Self:
        if self.port == 0:  # aiosmtpd needs a port number: take a free one
            with socket.socket() as s:
                s.bind((self.host, 0))
                self.port = s.getsockname()[1]
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port,
                                      data_size_limit=MAX_MESSAGE, ready_timeout=10)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _keep(self, raw: bytes, recipients: list[str]) -> None:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        with self._cond:
            self._seq += 1
            path = self.out / f"{self._seq:04d}.eml"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
            self.messages.append(msg)
            del self.messages[:-MAX_KEPT]
            self._cond.notify_all()

    def wait_messages(self, count: int, timeout: float = 20.0) -> list[EmailMessage]:
        """At least `count` messages (TimeoutError naming what arrived otherwise)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"SMTP sink: {len(self.messages)} message(s) of {count} within {timeout} s")
                self._cond.wait(left)
            return list(self.messages)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def body_text(msg: EmailMessage) -> str:
    """The text of a received message (its plain part)."""
    part: Any = msg.get_body(preferencelist=("plain",)) or msg
    return str(part.get_content())


@dataclass
class ReceiptDevices:
    """What `guichet demo` needs for receipts: the virtual printer's URL (its `[printer] url`) and the SMTP
    sink's HOST:PORT (the sandbox server's `smtp=`)."""

    printer_url: str
    smtp: str
    printer: Any
    sink: SmtpSink

    def close(self) -> None:
        self.printer.stop()
        self.sink.stop()


def start_receipt_devices(out: Path, *, printer_port: int = 0, smtp_port: int = 0) -> ReceiptDevices:
    """The demo's virtual printer (PNGs in out/paper) and SMTP sink (out/mail/*.eml), on 127.0.0.1."""
    from sandbox.printer import VirtualPrinter  # only the demo needs both

    vp = VirtualPrinter(Path(out) / "paper")
    vp.listen("127.0.0.1", printer_port)
    sink = SmtpSink(Path(out) / "mail", port=smtp_port).start()
    return ReceiptDevices(vp.url, sink.address, vp, sink)


# -- guichet sandbox smtp ----------------------------------------------------------------------------------

@click.command("smtp", help="A local SMTP sink: every message received is written as DIR/NNNN.eml.")
@click.option("--listen", default="127.0.0.1:2525", show_default=True, help="HOST:PORT (port 0: any free port).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("smtp-out"),
              show_default=True, help="Where the messages go.")
def smtp(listen: str, out: Path) -> None:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{listen!r} is not HOST:PORT", param_hint="--listen")
    try:
        sink = SmtpSink(out, host=host.strip("[]") or "127.0.0.1", port=int(port)).start()
    except (OSError, RuntimeError) as e:
        raise click.UsageError(f"--listen {listen}: {e}") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    click.echo(sink.address, nl=True)
    click.echo(f"smtp: messages to {out}; Ctrl-C to stop", err=True)
    seen = 0
    while not stop.wait(0.5):
        for msg in sink.messages[seen:]:
            click.echo(f"smtp: {msg['To']}: {msg['Subject']}", err=True)
        seen = len(sink.messages)
    sink.stop()
