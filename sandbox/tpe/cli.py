"""`guichet sandbox tpe`: a Concert terminal simulator: E+ on a pty or a serial device, or V3 (Caisse-AP) on TCP.

    guichet sandbox tpe                          # E+ on a new pty; prints the path to give to the cash register
    guichet sandbox tpe --port pty --behaviour refuse --baud 1200
    guichet sandbox tpe --port /dev/pts/7 --script nak_first,approve,unplug   # one end of a socat pair
    guichet sandbox tpe --protocol v3 --listen 127.0.0.1:0                     # V3; prints tcp://127.0.0.1:PORT
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import click

from sandbox.tpe import BEHAVIOURS, TEST_CARDS, V3_BEHAVIOURS, TpeSimulator, V3Simulator


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT (port 0 = any free port)", param_hint="--listen")
    return host.strip("[]") or "127.0.0.1", int(port)


@click.command("tpe", help="A Concert TPE simulator. E+ behaviours: " + ", ".join(BEHAVIOURS)
               + ". V3 behaviours: " + ", ".join(V3_BEHAVIOURS) + ".")
@click.option("--protocol", type=click.Choice(["E+", "V3"], case_sensitive=False), default="E+", show_default=True,
              help="E+ (serial line) or V3 (Caisse-AP over TCP).")
@click.option("--port", default="pty", show_default=True, help='E+: device path, or "pty" for a new pty pair.')
@click.option("--listen", default="127.0.0.1:8888", show_default=True,
              help="V3: HOST:PORT to listen on (port 0: any free port; the URL is printed).")
@click.option("--baud", type=int, default=9600, show_default=True, help="E+ only.")
@click.option("--framing", type=click.Choice(["7E1", "8N1"]), default="7E1", show_default=True, help="E+ only.")
@click.option("--behaviour", type=click.Choice(sorted(set(BEHAVIOURS) | set(V3_BEHAVIOURS))), default="approve",
              show_default=True, help="What the terminal does with every exchange.")
@click.option("--script", default="", help="Comma-separated behaviours for the next exchanges, then --behaviour.")
@click.option("--think", type=float, default=0.2, show_default=True, help="Seconds the terminal takes to decide.")
@click.option("--pin-delay", type=float, default=5.0, show_default=True, help="Seconds of PIN entry for 'slow'.")
@click.option("--card", type=click.Choice(list(TEST_CARDS)), default="EDAHABIA", show_default=True)
def tpe(protocol: str, port: str, listen: str, baud: int, framing: str, behaviour: str, script: str, think: float,
        pin_delay: float, card: str) -> None:
    v3 = protocol.upper() == "V3"
    known = V3_BEHAVIOURS if v3 else BEHAVIOURS
    steps = [s.strip() for s in script.split(",") if s.strip()]
    for b in [behaviour, *steps]:
        if b not in known:
            raise click.BadParameter(f"{b!r} is not a {protocol.upper()} behaviour ({', '.join(known)})",
                                     param_hint="--behaviour/--script")
    log = lambda m: click.echo(f"tpe: {m}", err=True)  # noqa: E731
    sim: TpeSimulator | V3Simulator
    try:
        if v3:
            host, tcp_port = _listen(listen)
            sim = V3Simulator(host, tcp_port, behaviour=behaviour, think=think, pin_delay=pin_delay, card=card,
                              log=log)
            where = f"Concert V3 terminal on {sim.url} ({behaviour})"
        else:
            # spin=True: a process of its own, so busy-waiting the last few microseconds of pacing harms no one.
            kw: dict[str, object] = dict(baud=baud, framing=framing, behaviour=behaviour, think=think,
                                         pin_delay=pin_delay, card=card, spin=True, log=log)
            sim = TpeSimulator.on_pty(**kw) if port in ("", "pty") else TpeSimulator.on_device(port, **kw)
            where = f"Concert E+ terminal on {sim.path} ({baud} {framing}, {behaviour})"
        if steps:
            sim.script(*steps)
    except (OSError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(sim.path)
    click.echo(f"tpe: {where}; Ctrl-C to stop", err=True)
    sys.stdout.flush()
    sim.start()
    while not stop.wait(0.2):
        if not v3 and sim.unplugged.is_set():
            click.echo("tpe: unplugged", err=True)
            break
    sim.stop()
