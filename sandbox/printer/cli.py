"""`guichet sandbox printer`: a virtual ESC/POS receipt printer writing every job as a PNG.

    guichet sandbox printer --listen 127.0.0.1:9100 --out /tmp/paper     # prints tcp://127.0.0.1:9100
    guichet sandbox printer --pty --out /tmp/paper                        # prints serial:///dev/pts/N?baud=115200
    guichet sandbox printer --behaviour paper_out                         # answers DLE EOT with 'paper end'
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from sandbox.printer import BEHAVIOURS, VirtualPrinter


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT (port 0 = any free port)", param_hint="--listen")
    return host.strip("[]") or "127.0.0.1", int(port)


@click.command("printer", help="A virtual ESC/POS printer; each job is written as DIR/NNNN.png. Behaviours: "
               + "; ".join(f"{k}: {v}" for k, v in BEHAVIOURS.items()) + ".")
@click.option("--listen", default="127.0.0.1:9100", show_default=True, help="HOST:PORT (port 0: any free port).")
@click.option("--pty", "use_pty", is_flag=True, help="Serve on a new pty instead (the serial case).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("printer-out"),
              show_default=True, help="Where the PNGs go.")
@click.option("--dots", type=int, default=576, show_default=True, help="Head width in dots (58 mm: 384).")
@click.option("--behaviour", type=click.Choice(list(BEHAVIOURS)), default="ok", show_default=True)
def printer(listen: str, use_pty: bool, out: Path, dots: int, behaviour: str) -> None:
    log = lambda m: click.echo(f"printer: {m}", err=True)  # noqa: E731
    if dots < 64 or dots % 8 or dots > 2048:
        raise click.BadParameter("a multiple of 8 from 64 to 2048", param_hint="--dots")
    try:
        vp = VirtualPrinter(out, dots=dots, behaviour=behaviour, log=log)
        if use_pty:
            vp.on_pty()
        else:
            vp.listen(*_listen(listen))
    except OSError as e:
        raise click.UsageError(str(e)) from None
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(vp.url)
    click.echo(f"printer: {dots} dots, {behaviour}, jobs to {out}; Ctrl-C to stop", err=True)
    sys.stdout.flush()
    stop.wait()
    vp.stop()
