"""`guichet tpe check|pay`: talk to the payment terminal directly (technicians, end-to-end checks).

    guichet tpe check --port /dev/ttyACM0
    guichet tpe pay --port /dev/pts/3 --amount 1234.50 --currency DZD --json
    guichet tpe pay --port tcp://192.168.1.20:8888 --amount 1234.50      # Concert V3 / Caisse-AP over TCP

Line options (--baud, --framing, --pos, timeouts) default to the config's [tpe] section when a config file
exists, else to DESIGN.md's defaults (9600, 7E1, "01"). A ``tcp://``/``caisse-ap://`` port selects Concert V3
(baud and framing are then meaningless and ignored). Exit 0 when the terminal answered ready/approved,
1 otherwise (one line on stderr), 2 for bad usage or a bad config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from agent.errors import AlreadyRunning
from agent.locks import CounterLock
from config import Config, find_config_path
from config.money import MoneyError, format_amount, parse_amount
from drivers.concert import Approved, ConcertError, Link, link_from_config
from guichet.cli.common import fail, get_config, print_json


def _config(ctx: click.Context) -> Config:
    explicit = ctx.find_root().ensure_object(dict).get("config_path")
    if explicit or find_config_path(None).exists():
        return get_config(ctx)
    return Config()


def _line_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--port", help="Device path, pyserial URL, or tcp://host:8888 for V3 (default: tpe.port)."),
        click.option("--baud", type=int, help="Baud rate (default: tpe.baud)."),
        click.option("--framing", type=click.Choice(["7E1", "8N1"]), help="Character framing (default: tpe.framing)."),
        click.option("--pos", "pos_number", help="Cash register number, two digits (default: tpe.pos_number)."),
        click.option("--ack-timeout", type=float, help="Seconds to wait for ACK (default: tpe.ack_timeout)."),
        click.option(
            "--answer-timeout", type=float, help="Seconds to wait for the customer (default: tpe.answer_timeout)."
        ),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _link(ctx: click.Context, **opts: Any) -> Link:
    cfg = _config(ctx)
    if not (opts.get("port") or cfg.tpe.port):
        fail("--port: no terminal port given and tpe.port is empty", usage=True)
    pos = opts.get("pos_number")
    if pos is not None and not (len(pos) == 2 and pos.isdigit()):
        fail(f"--pos: {pos!r} must be two digits, e.g. 01", usage=True)
    try:
        return link_from_config(cfg.tpe, **opts)
    except ConcertError as e:
        fail(str(e), usage=True)


@click.group()
def tpe() -> None:
    """The payment terminal (Concert E+ on a serial line, V3 / Caisse-AP over TCP)."""


@tpe.command("check")
@_line_options
@click.pass_context
def tpe_check(ctx: click.Context, **opts: Any) -> None:
    """E+: ENQ/ACK handshake only (is a terminal there, at this speed and framing?). V3: connect, send nothing."""
    link = _link(ctx, **opts)
    result = link.check()
    if not result.definitive:
        fail(f"{link.port}: {result.message}")
    click.echo(f"{link.port}: terminal ready ({link.describe()})")


@tpe.command("pay")
@_line_options
@click.option("--amount", required=True, help="Decimal amount, e.g. 1234.50.")
@click.option("--currency", default=None, help="ISO 4217 code (default: terminal.currency).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def tpe_pay(ctx: click.Context, amount: str, currency: str | None, as_json: bool, **opts: Any) -> None:
    """Send one debit to the terminal and wait for the customer. Nothing is journaled: a bench tool."""
    cur = (currency or _config(ctx).terminal.currency).upper()
    try:
        minor = parse_amount(amount, cur)
    except MoneyError as e:
        fail(f"--amount/--currency: {e}", usage=True)
    link = _link(ctx, **opts)
    # A debit the journal does not know about must not run while the counter takes payments on this terminal.
    counter = CounterLock(_config(ctx).state.dir)
    if counter.path.parent.is_dir():
        try:
            counter.acquire()
        except AlreadyRunning as e:
            fail(f"{e}: stop it before sending a debit by hand")
    try:
        result = link.pay(minor, cur, on_event=lambda key: None if as_json else click.echo(f"... {key}", err=True))
    except ConcertError as e:  # amount out of the field, unknown currency: nothing was sent
        fail(f"--amount: {e}", usage=True)
    finally:
        counter.release()
    response = getattr(result, "response", None)
    data = {
        "result": result.kind,
        "amount": minor,
        "currency": cur,
        "amount_sent": result.amount_sent,
        "status": response.status if response else None,
        "pan_masked": response.pan_masked if response else None,
        "reference": response.auth_code if response else None,
        "message": result.message,
        "elapsed_ms": round(result.elapsed * 1000),
    }
    if as_json:
        print_json(data)
    elif isinstance(result, Approved):
        click.echo(f"approved {format_amount(minor, cur, with_code=True)} card {data['pan_masked'] or '?'}")
    if not isinstance(result, Approved):
        unknown = result.amount_sent and not result.definitive
        doubt = " (payment unknown: check the terminal's ticket)" if unknown else ""
        fail(f"{result.kind}: {result.message}{doubt}")
