"""`guichet receipt`: check a receipt's seal, print a test receipt, reprint one, ask the printer its status.

    guichet receipt verify 'GQ1;R=ORAN-07-G2-000042;T=...;S=...'    # the text a phone's QR reader shows
    guichet receipt verify photo.png                                 # a scan or a PNG of the receipt
    guichet receipt test [--printer URL] [--language fr --language ar] [--layout side]
    guichet receipt print ORAN-07-G2-000042 [--printer URL]         # a DUPLICATA from the journal
    guichet receipt status [--printer URL] [--json]                 # paper, cover, online (DLE EOT)

verify exits 0 for a genuine receipt (and prints what it carries), 1 for a forged or altered one, 2 when it
cannot be read. Decoding a QR code from an image needs zxing-cpp (`pip install zxing-cpp`); without it, give
the text.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from guichet.cli.common import fail, get_config, print_json

MAX_IMAGE_BYTES = 20 * 1024 * 1024


@click.group("receipt")
def receipt() -> None:
    """Receipts: verify a seal, print a test receipt, reprint, printer status."""


def _qr_from_image(path: Path) -> str:
    try:
        import zxingcpp  # type: ignore[import-not-found,unused-ignore]  # optional: see the docstring
    except ImportError:
        fail("reading a QR code from an image needs zxing-cpp (pip install zxing-cpp); or give the QR text",
             usage=True)
    from PIL import Image

    if path.stat().st_size > MAX_IMAGE_BYTES:
        fail(f"{path}: larger than {MAX_IMAGE_BYTES} bytes", usage=True)
    from ui.receipts.render import MAX_LOGO_PIXELS

    try:
        with warnings.catch_warnings():  # PIL's bomb warning: our own cap below says it in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            # the header's size, before a pixel is decoded: a few KB of PNG can hold 169 Mpx
            if im.width * im.height > MAX_LOGO_PIXELS:
                fail(f"{path}: {im.width}x{im.height} is more than {MAX_LOGO_PIXELS} pixels: crop it to the QR code",
                     usage=True)
            found = [r.text for r in zxingcpp.read_barcodes(im.convert("L")) if r.text.startswith("GQ1;")]
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        # PIL's faults for a hostile file (a LAB TIFF, a broken chunk): one line, never a traceback
        fail(f"{path}: not an image ({' '.join(str(e).split())[:200] or type(e).__name__})", usage=True)
    if not found:
        fail(f"{path}: no guichet receipt QR code found", usage=True)
    return str(found[0])


@receipt.command("verify")
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="The result as JSON.")
@click.pass_context
def verify(ctx: click.Context, source: str, as_json: bool) -> None:
    """Check a receipt's QR seal against [receipts] signing_key (SOURCE: the QR text or an image file)."""
    from drivers.printer.seal import SealError
    from drivers.printer.seal import verify as verify_seal

    path = Path(source)
    text = _qr_from_image(path) if not source.startswith("GQ1;") and path.is_file() else source
    key = get_config(ctx).receipts.signing_key.get_secret_value().encode()
    if not key:  # no key is not a forged receipt: nothing can be said about it
        fail("cannot verify: [receipts] signing_key is not set", usage=True)
    try:
        seal = verify_seal(text, key)
    except SealError as e:
        if as_json:
            print_json({"genuine": False, "reason": str(e)})
        fail(f"NOT GENUINE: {e}")
    from config.money import format_amount

    out = {"genuine": True, "receipt_number": seal.receipt_number, "terminal_id": seal.terminal_id,
           "amount": format_amount(seal.amount, seal.currency), "currency": seal.currency, "time": seal.time}
    if as_json:
        print_json(out)
    else:
        click.echo(f"genuine: receipt {seal.receipt_number}, terminal {seal.terminal_id}, "
                   f"{out['amount']} {seal.currency}, {seal.time}")


def _printer(ctx: click.Context, url: str | None) -> Any:
    from drivers.printer import PrinterError, open_printer

    cfg = get_config(ctx)
    try:
        return open_printer(url or cfg.printer.url, timeout=cfg.printer.timeout)
    except PrinterError as e:
        fail(str(e), usage=True)


def _options(ctx: click.Context, languages: tuple[str, ...], layout: str | None) -> Any:
    from ui.receipts import ReceiptOptions

    options = ReceiptOptions.from_config(get_config(ctx))
    if languages:
        options = replace(options, languages=languages)
    if layout in ("stack", "side"):
        options = replace(options, layout="side" if layout == "side" else "stack")
    return options


def _print(printer: Any, rec: Any, options: Any) -> None:
    from ui.receipts import print_receipt

    result = print_receipt(printer, rec, options)
    for note in result.notes:
        click.echo(f"receipt: {note}", err=True)
    if not result.ok:
        fail(f"not printed: {result.error}")
    click.echo(f"printed {rec.number} ({result.bytes_sent} bytes, {result.seconds:.2f} s)")


@receipt.command("test")
@click.option("--printer", "url", help="Printer URL (default: [printer] url).")
@click.option("--language", "languages", multiple=True, type=click.Choice(["fr", "ar", "en"]))
@click.option("--layout", type=click.Choice(["stack", "side"]))
@click.pass_context
def test_receipt(ctx: click.Context, url: str | None, languages: tuple[str, ...], layout: str | None) -> None:
    """Print a sample receipt (not a payment: its number ends in TEST) to check the printer and the layout.
    It opens no drawer and carries no seal: a test print must never pass for a paid receipt."""
    from ui.receipts import BillLine, Receipt

    cfg = get_config(ctx)
    rec = Receipt(number=f"{cfg.terminal.id}-TEST", agency_id=cfg.terminal.agency_id, terminal_id=cfg.terminal.id,
                  cashier_id="-", when=datetime.now(UTC), currency=cfg.terminal.currency,
                  bills=(BillLine("TEST-0001", 123450, "2026-T1", "Test"),), method="test")
    _print(_printer(ctx, url), rec, replace(_options(ctx, languages, layout), drawer=False, signing_key=b""))


@receipt.command("print")
@click.argument("receipt_number")
@click.option("--printer", "url", help="Printer URL (default: [printer] url).")
@click.pass_context
def reprint(ctx: click.Context, receipt_number: str, url: str | None) -> None:
    """Reprint a receipt from the journal, marked DUPLICATA."""
    from agent.journal import Journal
    from ui.receipts import Receipt

    cfg = get_config(ctx)
    try:
        journal = Journal.open(cfg.state.dir, terminal_id=cfg.terminal.id, agency_id=cfg.terminal.agency_id,
                               check=False)
    except Exception as e:  # noqa: BLE001 the journal's errors are one line each
        fail(str(e))
    try:
        try:
            payment = journal.find(receipt_number)
        except KeyError:
            fail(f"no payment with receipt number {receipt_number!r} in the journal")
        payments = journal.transaction(payment.transaction_id) or [payment]
    finally:
        journal.close()
    rec = Receipt.from_payments(payments, duplicate=True)
    _print(_printer(ctx, url), rec, _options(ctx, (), None))


@receipt.command("status")
@click.option("--printer", "url", help="Printer URL (default: [printer] url).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, url: str | None, as_json: bool) -> None:
    """The printer's real-time status (paper, cover, online); exit 1 when it is not ready or not there."""
    from drivers.printer import PrinterError

    printer = _printer(ctx, url)
    got = printer.probe()
    if isinstance(got, PrinterError):
        if as_json:
            print_json({"url": printer.url, "ready": False, "error": got.kind, "message": str(got)})
        fail(str(got))
    if as_json:
        print_json({"url": printer.url, **got.as_dict()})
    else:
        state = "status not readable on this transport" if not got.known else (got.problem or "ready")
        click.echo(f"printer {printer.url}: {state}")
    if got.problem:
        raise SystemExit(1)
