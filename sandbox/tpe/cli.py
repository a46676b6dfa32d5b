"""`guichet sandbox tpe`: a Concert E+ terminal simulator on a pty or a serial device.

    guichet sandbox tpe                          # new pty; prints the path to give to the cash register
    guichet sandbox tpe --port pty --behaviour refuse --baud 1200
    guichet sandbox tpe --port /dev/pts/7 --script nak_first,approve,unplug   # one end of a socat pair
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import click

from sandbox.tpe.sim import BEHAVIOURS, TEST_CARDS, TpeSimulator


@click.command("tpe")
@click.option("--port", default="pty", show_default=True, help='Device path, or "pty" for a new pty pair.')
@click.option("--baud", type=int, default=9600, show_default=True)
@click.option("--framing", type=click.Choice(["7E1", "8N1"]), default="7E1", show_default=True)
@click.option("--behaviour", type=click.Choice(list(BEHAVIOURS)), default="approve", show_default=True,
              help="What the terminal does with every exchange.")
@click.option("--script", default="", help="Comma-separated behaviours for the next exchanges, then --behaviour.")
@click.option("--think", type=float, default=0.2, show_default=True, help="Seconds the terminal takes to decide.")
@click.option("--pin-delay", type=float, default=5.0, show_default=True, help="Seconds of PIN entry for 'slow'.")
@click.option("--card", type=click.Choice(list(TEST_CARDS)), default="EDAHABIA", show_default=True)
def tpe(port: str, baud: int, framing: str, behaviour: str, script: str, think: float, pin_delay: float,
        card: str) -> None:
    """A Concert TPE simulator. Behaviours: """ + ", ".join(BEHAVIOURS)
    # spin=True: a process of its own, so busy-waiting the last few microseconds of pacing harms no one.
    kw: dict[str, object] = dict(baud=baud, framing=framing, behaviour=behaviour, think=think, pin_delay=pin_delay,
                                 card=card, spin=True, log=lambda m: click.echo(f"tpe: {m}", err=True))
    try:
        sim = TpeSimulator.on_pty(**kw) if port in ("", "pty") else TpeSimulator.on_device(port, **kw)
        if script:
            sim.script(*[s.strip() for s in script.split(",") if s.strip()])
    except (OSError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(sim.path)
    click.echo(f"tpe: Concert E+ terminal on {sim.path} ({baud} {framing}, {behaviour}); Ctrl-C to stop", err=True)
    sys.stdout.flush()
    sim.start()
    while not stop.wait(0.2):
        if sim.unplugged.is_set():
            click.echo("tpe: unplugged", err=True)
            break
    sim.stop()
