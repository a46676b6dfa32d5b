"""A close for the accounting office: CSV (one row per payment, then the totals) and JSON; and as text.

    to_csv(report.to_dict())        # or a kept run: store.get(run_id)
    to_json(report.to_dict())
    to_text(report.to_dict())       # what `guichet day close` prints on the terminal
    print_close(printer, report.to_dict(), paper=80)   # the paper copy (drivers.printer; PrintResult)

Amounts stay in minor units with their currency in the CSV and JSON (what a spreadsheet or a program
reads); the text shows them as decimals (config.money.format_amount, never a float).
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from typing import Any

from config.money import MoneyError, format_amount
from drivers.printer import Job, Printer, PrintResult

LINE_COLUMNS = (
    "kind", "receipt_number", "payment_id", "bill_reference", "method", "cashier_id", "currency", "amount",
    "stamp_duty", "state", "server_amount", "server_stamp_duty", "server_bill", "detail",
)  # fmt: skip


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)


_FORMULA = ("=", "+", "-", "@", "\t", "\r", "\n", ";", "|")


def _cell(value: Any) -> Any:
    """A cell a spreadsheet could run as a formula is quoted with a leading apostrophe: a bill reference or a
    server text is data, never a formula. Looked at after leading whitespace and in NFKC (full-width ＝).

    >>> [_cell(v) for v in ("=1+1", " =1+1", "＝1+1", "B-1", 12)]
    ["'=1+1", "' =1+1", "'＝1+1", 'B-1', 12]
    """
    if value is None:
        return ""
    if isinstance(value, str) and value:
        bare = unicodedata.normalize("NFKC", value).lstrip(" \t\r\n\u00a0\u3000")
        if value[:1] in _FORMULA or value[:1].isspace() or bare[:1] in _FORMULA:
            return "'" + value
    return value


def to_csv(data: dict[str, Any]) -> str:
    """The close for a spreadsheet: first what the run was (day, terminal, run, online, verdict, what it
    could not check, the server's and the TPE's comparisons), then one row per payment, then the totals.
    Every cell goes through _cell."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")

    def row(*cells: Any) -> None:
        w.writerow([_cell(c) for c in cells])

    row("close", "day", data["day"])
    row("close", "terminal_id", data["terminal_id"])
    row("close", "run_id", data.get("run_id", ""))
    row("close", "run_at", data.get("run_at", ""))
    row("close", "online", "yes" if data["online"] else "no (OFFLINE: the billing server could not be asked)")
    row("close", "clean", "yes" if data["clean"] else "no")
    row("close", "problems", data["problems"])
    for what in data["unchecked"]:
        row("unchecked", what)
    check = data.get("totals_check")
    if check:
        row("server_totals", "agrees", "yes" if check["agrees"] else "no")
        row("server_totals", "count", check["journal_count"], check["server_count"])
        for cur, d in sorted(check["difference"].items()):
            row("server_totals", "difference", cur, d)
    tpe = data.get("tpe")
    if tpe:
        row("tpe", "source", tpe["source"], tpe.get("entered_by", ""))
        row("tpe", "agrees", "yes" if tpe["agrees"] else "no")
        row("tpe", "count", tpe["count"], tpe["journal_count"])
        for cur in sorted(set(tpe["amount"]) | set(tpe["journal_amount"])):
            row("tpe", "amount", cur, tpe["amount"].get(cur, 0), tpe["journal_amount"].get(cur, 0),
                tpe["difference"].get(cur, 0))
    w.writerow([])
    row(*LINE_COLUMNS)
    for line in data["lines"]:
        row(*(line.get(c) for c in LINE_COLUMNS))
    w.writerow([])
    row("total", "side", "key", "count", "currency", "amount", "stamp_duty")
    for side, totals in _totals(data):
        for key, t in totals:
            for cur in sorted(set(t["amount"]) | set(t["stamp_duty"])) or [""]:
                row("total", side, key, t["count"], cur, t["amount"].get(cur, 0), t["stamp_duty"].get(cur, 0))
    return out.getvalue()


def _totals(data: dict[str, Any]) -> list[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    return [
        ("journal", [("all", data["journal"])]),
        ("journal_method", sorted(data["by_method"].items())),
        ("journal_cashier", sorted(data["by_cashier"].items())),
        ("server", [("all", data["server"])] if data["online"] else []),
        ("server_method", sorted(data["server_by_method"].items())),
    ]


def _money(amounts: dict[str, int]) -> str:
    parts = []
    for cur, v in sorted(amounts.items()):
        try:
            parts.append(format_amount(v, cur, with_code=True))
        except MoneyError:
            parts.append(f"{v} {cur}")
    return ", ".join(parts) or "0"


def to_text(data: dict[str, Any]) -> str:
    """The close as a person reads it: verdict, problems first, then the totals."""
    rows = [f"Day close {data['day']} - terminal {data['terminal_id']} - run {data.get('run_at', '')}"]
    if not data["online"]:
        rows.append("OFFLINE: the billing server could not be asked")
    rows.append("CLEAN" if data["clean"] else f"{data['problems']} to look at")
    rows.append("  " + ", ".join(f"{k} {n}" for k, n in data["kinds"].items()))
    for line in data["lines"]:
        if line["kind"] in ("matched", "not_taken"):
            continue
        rows.append(
            f"  {line['kind'].upper():<18} {line['receipt_number'] or '-':<22} {line['bill_reference']:<14}"
            f" {_money({line['currency']: line['amount']})}  {line['detail']}"
        )
    rows.append(f"Journal: {data['journal']['count']} payments, {_money(data['journal']['amount'])}"
                f", stamp duty {_money(data['journal']['stamp_duty'])}")
    for key, t in sorted(data["by_method"].items()):
        rows.append(f"  method {key}: {t['count']}, {_money(t['amount'])}")
    for key, t in sorted(data["by_cashier"].items()):
        rows.append(f"  cashier {key}: {t['count']}, {_money(t['amount'])}")
    if data["online"]:
        rows.append(f"Server: {data['server']['count']} payments, {_money(data['server']['amount'])}"
                    f", stamp duty {_money(data['server']['stamp_duty'])}")
    check = data.get("totals_check")
    if check and not check["agrees"]:
        rows.append(f"SERVER TOTALS DIFFER: journal {check['journal_count']}, server {check['server_count']}"
                    f" payments; server - journal {_money(check['difference']) if check['difference'] else 0}")
    tpe = data.get("tpe")
    if tpe:
        verdict = "agrees" if tpe["agrees"] else f"DIFFERS by {_money(tpe['difference']) if tpe['difference'] else 0}"
        rows.append(f"TPE ({tpe['source']}): {tpe['count']} payments, {_money(tpe['amount'])}; journal"
                    f" {tpe['journal_count']}, {_money(tpe['journal_amount'])}: {verdict}")
    for what in data["unchecked"]:
        rows.append(f"NOT CHECKED: {what}")
    return "\n".join(rows)


def paper_lines(data: dict[str, Any], paper: int = 80) -> list[str]:
    """The text of the close cut to the paper's width (font A: 48 characters on 80 mm, 32 on 58 mm), in the
    printer's code page (a character outside it, from a server's text, becomes '?').

    >>> paper_lines({"day": "2026-11-30", "terminal_id": "T", "online": True, "clean": True, "problems": 0,
    ...              "kinds": {}, "lines": [], "journal": {"count": 0, "amount": {}, "stamp_duty": {}},
    ...              "by_method": {}, "by_cashier": {}, "server": {"count": 0, "amount": {}, "stamp_duty": {}},
    ...              "unchecked": []}, paper=58)[:3]
    ['Day close 2026-11-30 - terminal ', '  T - run', 'CLEAN']
    """
    width = 48 if paper >= 72 else 32
    out: list[str] = []
    for row in to_text(data).splitlines():
        row = row.encode("cp1252", "replace").decode("cp1252")
        row = "".join(ch if ch >= " " else " " for ch in row).rstrip()
        indent = len(row) - len(row.lstrip())
        first = True
        while row or first:
            cut = row[:width] if first else " " * min(indent + 2, 8) + row[: width - min(indent + 2, 8)]
            out.append(cut)
            row = row[width:] if first else row[width - min(indent + 2, 8):]
            first = False
    return out


def print_close(printer: Printer, data: dict[str, Any], *, paper: int = 80) -> PrintResult:
    """The paper copy of a close on the receipt printer; never raises (PrintResult says what became of it)."""
    job = Job()
    for row in paper_lines(data, paper):
        job.text_line(row)
    job.feed(120)
    job.cut()
    return printer.print_job(job.bytes())
