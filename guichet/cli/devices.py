"""`guichet devices` and `guichet card read`.

    guichet devices [--json]        PC/SC readers (card present? ATR, interface), serial ports, and what the
                                    device registry (agent.devices) makes of each configured device: the
                                    TPE's liveness (ready / unresponsive / absent / busy), the readers
    guichet card read [--reader NAME] [--timeout S] [--json]
        {"reader", "atr", "interface", "aid", "label", "scheme", "pan_masked", "expiry", "apdu_count",
         "elapsed_ms"}: the masked PAN only, never the full one.
"""

from __future__ import annotations

import threading
from typing import Any

import click

from guichet.cli.common import fail, get_config, print_json

CARD_READ_FIELDS = ("reader", "atr", "interface", "aid", "label", "scheme", "pan_masked", "expiry", "apdu_count",
                    "elapsed_ms")


def _serial_ports() -> list[dict[str, Any]]:
    from serial.tools import list_ports

    return [
        {"device": p.device, "description": p.description or "", "hwid": p.hwid or ""}
        for p in sorted(list_ports.comports(), key=lambda p: p.device)
    ]


def _registry_states(ctx: click.Context) -> list[Any]:
    """One look through the device registry: the configured devices, or the readers alone without a config.
    Each probe is bounded (REFRESH_LIMIT): a wedged pcscd or terminal is a line, never a hung command."""
    from agent.devices import DeviceRegistry, ReaderProbe
    from config import ConfigError, load_config

    try:
        cfg = load_config(ctx.find_root().ensure_object(dict).get("config_path"))
        registry = DeviceRegistry.from_config(cfg, readers=True)  # a technician's look: the readers too
    except ConfigError:
        registry = DeviceRegistry([ReaderProbe()])
    return registry.refresh()


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def devices(ctx: click.Context, as_json: bool) -> None:
    """PC/SC readers and serial ports, with what is attached."""
    from drivers import pcsc

    readers: list[dict[str, Any]] = []
    pcsc_error: str | None = None
    try:
        # pcsc-lite's client waits for pcscd without a limit: a wedged pcscd must not hang the command.
        for st in pcsc.within(pcsc.ANSWER_LIMIT, pcsc.reader_states):
            readers.append({
                "name": st.name,
                "card_present": st.card_present,
                "atr": st.atr.hex().upper() if st.card_present else "",
                "interface": pcsc.detect_interface(st.name, st.atr) if st.card_present else "",
            })
    except pcsc.PcscError as e:
        pcsc_error = str(e)
    ports = _serial_ports()
    states = _registry_states(ctx)
    if as_json:
        print_json({"readers": readers, "serial_ports": ports, "pcsc_error": pcsc_error,
                    "devices": [st.to_json() for st in states]})
    else:
        click.echo("PC/SC readers:")
        if pcsc_error:
            click.echo("  (unavailable)")
        elif not readers:
            click.echo("  (none)")
        for r in readers:
            card = f"card present ({r['interface']}), ATR {r['atr']}" if r["card_present"] else "no card"
            click.echo(f"  {r['name']}: {card}")
        click.echo("Serial ports:")
        if not ports:
            click.echo("  (none)")
        for p in ports:
            hwid = f" [{p['hwid']}]" if p["hwid"] not in ("", "n/a") else ""
            click.echo(f"  {p['device']}: {p['description']}{hwid}")
        click.echo("Devices:")
        for st in states:
            click.echo(f"  {st.kind} {st.name}: {st.state}" + (f" ({st.detail})" if st.detail else ""))
    if pcsc_error:
        fail(pcsc_error)


@click.group()
def card() -> None:
    """Cards on the PC/SC reader."""


@card.command("read")
@click.option("--reader", default=None, help="Reader name (substring); default: cards.reader, else any.")
@click.option("--timeout", type=float, default=None, help="Seconds to wait for a card (default: cards.read_timeout).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def card_read(ctx: click.Context, reader: str | None, timeout: float | None, as_json: bool) -> None:
    """Wait for a card and read it (masked PAN only)."""
    from agent.cards import CardReadError, read_card

    config = get_config(ctx)
    if timeout is not None and timeout <= 0:
        fail("--timeout: must be more than 0 seconds", usage=True)
    if not as_json:
        click.echo("Insert or tap a card...", err=True)
    try:
        data = read_card(config, threading.Event(), timeout, reader=reader, allow_expired=True, require_token=False)
    except CardReadError as e:
        fail(str(e))
    try:
        out = {k: data.to_dict()[k] for k in CARD_READ_FIELDS}
    finally:
        data.wipe()
    if as_json:
        print_json(out)
    else:
        width = max(len(k) for k in CARD_READ_FIELDS)
        for k in CARD_READ_FIELDS:
            click.echo(f"{k:<{width}}  {out[k]}")
    if data.expired:
        click.echo(f"guichet: warning: this card expired at the end of {data.expiry}", err=True)
