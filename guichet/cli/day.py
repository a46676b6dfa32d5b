"""`guichet day close|runs|show`: the day's close against the server's business day and the TPE's totals.

    guichet day close [--date 2026-11-30] [--tpe-count 12 --tpe-amount 45123.00] [--by s0001] [--json]
                      [--export DIR]        also writes DIR/dayclose-<terminal>-<day>-<run>.csv and .json
    guichet day runs [--date D] [--json]    the kept runs
    guichet day show RUN [--csv|--json|--print]   one kept run again
    guichet day close ... --print           also on the receipt printer (printer.url)

Exit 0 when the day closes clean, 1 when the close found something to look at or could not check
everything (the report is printed and kept all the same), 2 for usage.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import click

from agent.billing import BillingClient
from agent.dayclose import DayCloseStore, TpeTotals, close_day, to_csv, to_json, to_text
from agent.errors import GuichetError
from agent.journal import Journal
from config.money import MoneyError, parse_amount
from guichet.cli.common import fail, get_config, print_json


@click.group()
def day() -> None:
    """The day's close: journal, billing server and TPE side by side."""


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        fail(f"--date: {text[:40]!r} is not a date YYYY-MM-DD", usage=True)


@day.command("close")
@click.option("--date", "day_text", help="The business day, YYYY-MM-DD (default: today).")
@click.option("--tpe-count", type=click.IntRange(0, 100_000), help="Card payments on the TPE's end-of-day ticket.")
@click.option("--tpe-amount", help="Their total as the ticket prints it, e.g. 45123.00 (with --tpe-count).")
@click.option("--by", "run_by", default=None, help="The supervisor running the close (kept with the run).")
@click.option("--offline", is_flag=True, help="Do not ask the billing server (what it could not check is listed).")
@click.option("--export", "export_dir", type=click.Path(file_okay=False), help="Write the CSV and JSON there.")
@click.option("--print", "on_paper", is_flag=True, help="Also print it on the receipt printer (printer.url).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def close(
    ctx: click.Context,
    day_text: str | None,
    tpe_count: int | None,
    tpe_amount: str | None,
    run_by: str | None,
    offline: bool,
    export_dir: str | None,
    on_paper: bool,
    as_json: bool,
) -> None:
    """Reconcile the day: each payment in one line, totals per method, cashier and currency, stamp duty apart."""
    config = get_config(ctx)
    wanted = _day(day_text)
    tpe = None
    if (tpe_count is None) != (tpe_amount is None):
        fail("--tpe-count and --tpe-amount: give both (from the TPE's end-of-day ticket) or neither", usage=True)
    if tpe_count is not None and tpe_amount is not None:
        try:
            minor = parse_amount(tpe_amount, config.terminal.currency)
        except MoneyError as e:
            fail(f"--tpe-amount: {e}", usage=True)
        tpe = TpeTotals(tpe_count, {config.terminal.currency: minor}, source="ticket", entered_by=run_by or "")
    try:
        journal = Journal.open(config.state.dir, terminal_id=config.terminal.id,
                               agency_id=config.terminal.agency_id, check=False)
    except GuichetError as e:
        fail(str(e))
    client = None if offline else BillingClient(config)
    try:
        report = close_day(config, journal, client, day=wanted, tpe=tpe)
        with DayCloseStore.open(config.state.dir) as store:
            run_id = store.save(report, run_by=run_by)
    except GuichetError as e:
        fail(str(e))
    finally:
        if client is not None:
            client.close()
        journal.close()
    data = {**report.to_dict(), "run_id": run_id}
    if export_dir:
        _export(Path(export_dir), data)
    if on_paper:
        _print(config, data)
    if as_json:
        print_json(data)
    else:
        click.echo(to_text(data))
    if not report.clean:
        click.echo(f"guichet: day {report.day}: {report.problems} to look at"
                   + (f", {len(report.unchecked)} not checked" if report.unchecked else "")
                   + f" (run {run_id} kept)", err=True)
        ctx.exit(1)


def _export(folder: Path, data: dict[str, object]) -> None:
    base = folder / f"dayclose-{data['terminal_id']}-{data['day']}-{data['run_id']}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        base.with_suffix(".csv").write_text(to_csv(data), encoding="utf-8")
        base.with_suffix(".json").write_text(to_json(data), encoding="utf-8")
    except OSError as e:
        fail(f"{folder}: cannot write the export: {e.strerror}")


def _print(config: Any, data: dict[str, Any]) -> None:
    """The paper copy; a printer that cannot print is one line (the run is kept all the same)."""
    from agent.dayclose.export import print_close
    from drivers.printer import PrinterError, open_printer

    if config.printer.url in ("", "none"):
        fail("--print: no receipt printer is configured (printer.url)")
    try:
        printer = open_printer(config.printer.url, timeout=config.printer.timeout)
    except (PrinterError, ValueError) as e:
        fail(f"--print: {e}")
    result = print_close(printer, data, paper=config.printer.paper)
    if not result.ok:
        fail(f"--print: {result.message} (run {data['run_id']} kept; print it again with guichet day show"
             f" {data['run_id']} --print)")


@day.command("runs")
@click.option("--date", "day_text", help="Only this day's runs.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def runs(ctx: click.Context, day_text: str | None, as_json: bool) -> None:
    """The kept runs of the day's close, newest first."""
    config = get_config(ctx)
    wanted = _day(day_text)
    try:
        with DayCloseStore.open(config.state.dir) as store:
            rows = store.runs(day=wanted.isoformat() if wanted else None)
    except GuichetError as e:
        fail(str(e))
    if as_json:
        print_json(rows)
        return
    for r in rows:
        verdict = "clean" if r["clean"] else f"{r['problems']} to look at"
        click.echo(f"{r['run_id']:>5}  {r['day']}  {r['run_at']}  {'online' if r['online'] else 'OFFLINE':<7}"
                   f"  {verdict}  {r['run_by'] or ''}")


@day.command("show")
@click.argument("run_id", type=int)
@click.option("--csv", "as_csv", is_flag=True, help="As CSV, for the accounting office.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--print", "on_paper", is_flag=True, help="On the receipt printer (printer.url).")
@click.pass_context
def show(ctx: click.Context, run_id: int, as_csv: bool, as_json: bool, on_paper: bool) -> None:
    """One kept run, as it was."""
    config = get_config(ctx)
    try:
        with DayCloseStore.open(config.state.dir) as store:
            data = store.get(run_id)
    except KeyError:
        fail(f"run {run_id}: no such day close")
    except GuichetError as e:
        fail(str(e))
    if on_paper:
        _print(config, data)
        return
    click.echo(to_csv(data) if as_csv else to_json(data) if as_json else to_text(data))
