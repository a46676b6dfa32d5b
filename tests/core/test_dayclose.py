"""The day's close: one line per payment, built from a real journal and the sandbox server over HTTP.

The day below has every kind of difference the issue names: matched, still queued here, unknown here,
rejected, amount different, and a payment the server holds that this journal lacks; the close finds each one,
keeps the run, exports it, and runs again offline saying what it could not check.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.billing import BillingClient
from agent.context import AgentContext
from agent.dayclose import (
    DayCloseStore,
    Entry,
    TpeTotals,
    close_day,
    fetch_business_day,
    reconcile,
    to_csv,
    to_json,
    to_text,
)
from agent.dayclose.export import LINE_COLUMNS
from agent.errors import BadAnswer
from agent.journal import NewPayment
from agent.states import State
from agent.sync import SyncWorker
from sandbox.billing.server import SandboxServer
from tests.core.conftest import with_changes
from tests.core.stub_server import StubServer, json_answer

AGENCY = timezone(timedelta(hours=1))  # the sandbox's business day is the agency's (UTC+01:00)


def entry(pid: str, amount: int = 1000, state: str = "", **kw: Any) -> Entry:
    base = {"transaction_id": pid, "bill_reference": "B" + pid, "currency": "DZD", "stamp_duty": 0,
            "method": "cash", "receipt_number": "R-" + pid, "captured_at": "2026-11-30T10:00:00+01:00"}
    base.update(kw)
    return Entry(pid, amount=amount, state=state, **base)  # type: ignore[arg-type]


# -- pure -------------------------------------------------------------------------------------------


def test_every_kind_from_the_two_sides() -> None:
    journal = [
        entry("m", state="uploaded", cashier_id="c1"),
        entry("q", state="approved", cashier_id="c1"),
        entry("u", state="unknown", cashier_id="c2"),
        entry("r", state="rejected", cashier_id="c2"),
        entry("d", state="uploaded", cashier_id="c1"),
        entry("b", state="uploaded", cashier_id="c1"),
        entry("x", state="uploaded", cashier_id="c1"),
        entry("n", state="declined", cashier_id="c1"),
    ]
    server = [entry("m"), entry("d", amount=1100), entry("b", bill_reference="OTHER"), entry("s", amount=700)]
    rep = reconcile(journal, server, terminal_id="T", day="2026-11-30")
    kinds = {line.payment_id: line.kind for line in rep.lines}
    assert kinds == {"m": "matched", "q": "queued", "u": "unknown", "r": "rejected", "d": "different",
                     "b": "different", "x": "missing_on_server", "n": "not_taken", "s": "server_only"}
    by_id = {line.payment_id: line for line in rep.lines}
    assert by_id["d"].detail == "amount 1000 here, 1100 on the server"
    assert by_id["b"].detail == "bill Bb here, OTHER on the server"
    assert by_id["s"].amount == 700 and by_id["s"].cashier_id == ""
    # Problems first, each payment exactly once.
    assert len(rep.lines) == 9 and rep.lines[-1].kind in ("matched", "not_taken", "queued")
    assert rep.problems == 7  # u, r, d, b, x, s, and the journal's totals against the server's
    assert rep.totals_check is not None and not rep.totals_check["agrees"]
    assert rep.journal.count == 6 and rep.journal.amount == {"DZD": 6000}  # taken: not unknown, not declined
    assert rep.by_cashier["c2"].count == 1 and rep.server.amount == {"DZD": 3800}


@given(
    journal=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**6),
                               st.sampled_from(["uploaded", "approved", "rejected"]),
                               st.sampled_from(["cash", "card_terminal"]), st.sampled_from(["c1", "c2", "c3"])),
                     max_size=30),
)
def test_totals_add_up_to_the_cent(journal: list[tuple[int, int, str, str, str]]) -> None:
    entries = [entry(str(i), a, s, stamp_duty=d, method=m, cashier_id=c) for i, (a, d, s, m, c) in enumerate(journal)]
    rep = reconcile(entries, entries, terminal_id="T", day="2026-11-30")
    total = sum(a for a, *_ in journal)
    duty = sum(d for _, d, *_ in journal)
    assert rep.journal.amount.get("DZD", 0) == total == rep.server.amount.get("DZD", 0)
    assert rep.journal.stamp_duty.get("DZD", 0) == duty
    assert sum(t.amount.get("DZD", 0) for t in rep.by_method.values()) == total
    assert sum(t.amount.get("DZD", 0) for t in rep.by_cashier.values()) == total
    assert sum(t.stamp_duty.get("DZD", 0) for t in rep.by_cashier.values()) == duty
    assert len(rep.lines) == len(entries)
    assert all(line.kind in ("matched", "rejected") for line in rep.lines)


def test_tpe_totals_entered_from_the_ticket() -> None:
    journal = [entry("a", 5000, "uploaded", method="card_terminal"), entry("b", 2000, "uploaded")]
    agree = reconcile(journal, journal, terminal_id="T", day="D", tpe=TpeTotals(1, {"DZD": 5000}, entered_by="s1"))
    assert agree.tpe is not None and agree.tpe["agrees"] and agree.clean
    differ = reconcile(journal, journal, terminal_id="T", day="D", tpe=TpeTotals(1, {"DZD": 5100}))
    assert differ.tpe is not None and differ.tpe["difference"] == {"DZD": 100} and differ.problems == 1
    none = reconcile(journal, journal, terminal_id="T", day="D")
    assert not none.clean and any("TPE" in u for u in none.unchecked)


def test_csv_cannot_carry_a_formula_and_keeps_every_line() -> None:
    rep = reconcile([entry("a", state="uploaded", bill_reference="=HYPERLINK(1)")], [],
                    terminal_id="T", day="D")
    rows = list(csv.reader(io.StringIO(to_csv(rep.to_dict()))))
    assert rows[0] == ["close", "day", "D"]
    head = rows.index(list(LINE_COLUMNS))
    assert rows[head + 1][0] == "missing_on_server"
    assert rows[head + 1][3] == "'=HYPERLINK(1)"


# -- the server's day, hostile ----------------------------------------------------------------------


def test_a_bad_record_is_one_line_naming_the_field(billing_config: Any) -> None:
    page = {"items": [{"payment_id": "p", "amount": 1.5, "currency": "DZD", "method": "cash"}],
            "next_cursor": None}
    with StubServer(lambda *_: json_answer(200, page)) as stub:
        client = BillingClient(with_changes(billing_config, server={"url": stub.url}))
        with pytest.raises(BadAnswer, match=r"items\[0\]\.amount"):
            fetch_business_day(client, "ORAN-07-G1", "2026-11-30")
        client.close()


def test_a_cursor_that_does_not_move_ends_the_paging(billing_config: Any) -> None:
    page: dict[str, Any] = {"items": [], "next_cursor": "same"}
    with StubServer(lambda *_: json_answer(200, page)) as stub:
        client = BillingClient(with_changes(billing_config, server={"url": stub.url}))
        with pytest.raises(BadAnswer, match="already read"):
            fetch_business_day(client, "ORAN-07-G1", "2026-11-30")
        page["next_cursor"] = None
        page["items"] = [{"payment_id": str(i), "amount": 1, "currency": "DZD", "method": "cash",
                          "captured_at": "2026-11-30T12:00:00Z"} for i in range(5)]
        with pytest.raises(BadAnswer, match="more than 3"):
            fetch_business_day(client, "ORAN-07-G1", "2026-11-30", max_records=3)
        client.close()


# -- a whole day on the sandbox ---------------------------------------------------------------------


def _cash(agent: AgentContext, reference: str) -> Any:
    result = agent.flow.pay([agent.flow.lookup(reference)], method="cash", cashier_id="c0042")
    assert result.status == "approved"
    return result.payments[0]


def test_a_day_with_every_difference(
    agent: AgentContext, billing_server: SandboxServer, seeded_references: list[str]
) -> None:
    refs = seeded_references
    journal, client = agent.journal, agent.client
    matched = _cash(agent, refs[0])
    different = _cash(agent, refs[1])
    # Another writer recorded that payment id first with another amount: our upload is then refused.
    altered = dict(different.to_api(), amount=different.amount + 100)
    assert client.post_batch([altered])[0]["status"] == "accepted"
    # A bill the server does not know (taken from a stale copy): rejected at upload.
    bill = dict(agent.flow.lookup(refs[2]).to_api(), reference="999999999999")
    rejected = journal.create([NewPayment(bill, 5000)], currency="DZD", method="cash", cashier_id="c0099",
                              captured_offline=True)
    journal.transition([rejected[0].payment_id], State.AUTHORIZING, actor="c0099")
    journal.transition([rejected[0].payment_id], State.APPROVED, actor="c0099")
    report = SyncWorker(agent.config, journal, client, agent.bills).run_once()
    assert report.rejected == 2, report
    # After the upload: one still queued, one whose outcome is unknown.
    queued = _cash(agent, refs[3])
    unknown = journal.create([NewPayment(agent.flow.lookup(refs[4]).to_api(), 1234)], currency="DZD",
                             method="card_terminal", cashier_id="c0042", captured_offline=False)
    journal.transition([unknown[0].payment_id], State.AUTHORIZING, actor="c0042")
    journal.transition([unknown[0].payment_id], State.UNKNOWN, actor="recovery")
    # A payment the server holds and this journal lacks (a second agent on this terminal's token).
    ghost_id = str(uuid.uuid4())
    ghost = dict(matched.to_api(), payment_id=ghost_id, transaction_id=ghost_id, bill_reference=refs[5],
                 receipt_number="ORAN-07-G1-900001")
    assert client.post_batch([ghost])[0]["status"] == "accepted"

    rep = close_day(agent.config, journal, client, tpe=TpeTotals(1, {"DZD": 1234}, entered_by="s0001"), tz=AGENCY)
    kinds = {line.payment_id: line.kind for line in rep.lines}
    assert kinds == {
        matched.payment_id: "matched",
        different.payment_id: "different",
        rejected[0].payment_id: "rejected",
        queued.payment_id: "queued",
        unknown[0].payment_id: "unknown",
        ghost_id: "server_only",
    }
    lines = {line.kind: line for line in rep.lines}
    assert lines["different"].detail == f"amount {different.amount} here, {different.amount + 100} on the server"
    assert lines["server_only"].bill_reference == refs[5] and lines["server_only"].amount == matched.amount
    # different, rejected, unknown, server_only + the TPE's 1 vs 0 + the journal's totals against the server's
    assert rep.online and rep.problems == 6
    assert rep.tpe is not None and not rep.tpe["agrees"] and rep.tpe["journal_count"] == 0
    # Totals: money taken here (matched, different, rejected, queued), per cashier and method, apart.
    taken = matched.amount + different.amount + 5000 + queued.amount
    assert rep.journal.amount == {"DZD": taken} and rep.by_cashier["c0099"].amount == {"DZD": 5000}
    assert rep.server.count == 3  # matched, the altered one, the ghost
    assert rep.server.amount == {"DZD": matched.amount * 2 + different.amount + 100}
    text = to_text(rep.to_dict())
    assert "SERVER_ONLY" in text and "DIFFERENT" in text and "TPE (ticket)" in text

    # Kept, exported, and run again later offline: says so and what it could not check.
    with DayCloseStore.open(agent.config.state.dir) as store:
        first = store.save(rep, run_by="s0001")
        billing_server.stop()
        again = close_day(agent.config, journal, client, tz=AGENCY)
        second = store.save(again)
        assert [r["run_id"] for r in store.runs()] == [second, first]
        kept = store.get(first)
    assert not again.online and any("could not be read" in u for u in again.unchecked)
    assert {line.kind for line in again.lines} == {"not_checked", "rejected", "queued", "unknown"}
    assert kept["kinds"] == rep.kinds and json.loads(to_json(kept))["problems"] == 6
    rows = list(csv.DictReader(io.StringIO(to_csv(kept).split("\n\n")[1])))  # after the run's block
    assert sorted(r["kind"] for r in rows) == sorted(kinds.values())


def test_the_command(agent: AgentContext, guichet: Any, seeded_references: list[str], tmp_path: Any) -> None:
    paid = _cash(agent, seeded_references[0])
    SyncWorker(agent.config, agent.journal, agent.client, agent.bills).run_once()
    agent.close()  # the command opens the journal itself
    env = {"TZ": "Africa/Algiers"}  # the agency's zone: the sandbox's business day (UTC+01:00)
    out = guichet("day", "close", "--json", "--tpe-count", "0", "--tpe-amount", "0", "--by", "s0001",
                  "--export", str(tmp_path / "export"), env=env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["clean"] and data["kinds"] == {"matched": 1} and data["lines"][0]["payment_id"] == paid.payment_id
    assert data["journal"]["amount"] == {"DZD": paid.amount}
    exported = sorted(p.suffix for p in (tmp_path / "export").iterdir())
    assert exported == [".csv", ".json"]
    offline = guichet("day", "close", "--offline", env=env)
    assert offline.returncode == 1 and "OFFLINE" in offline.stdout and "NOT CHECKED" in offline.stdout
    assert "not checked" in offline.stderr and "\n" == offline.stderr[-1] and offline.stderr.count("\n") == 1
    runs = guichet("day", "runs", "--json", env=env)
    assert [r["clean"] for r in json.loads(runs.stdout)] == [False, True]
    shown = guichet("day", "show", str(data["run_id"]), "--csv", env=env)
    assert shown.stdout.startswith("close,day,") and paid.payment_id in shown.stdout
    assert "\nkind,receipt_number," in shown.stdout
    nowhere = guichet("day", "show", str(data["run_id"]), "--print", env=env)
    assert nowhere.returncode == 1 and "no receipt printer" in nowhere.stderr
    bad = guichet("day", "close", "--date", "2026-13-01", env=env)
    assert bad.returncode == 2 and "--date" in bad.stderr
    half = guichet("day", "close", "--tpe-count", "3", env=env)
    assert half.returncode == 2 and "give both" in half.stderr


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
item_keys = st.sampled_from(["payment_id", "amount", "currency", "method", "stamp_duty", "bill_reference",
                             "receipt_number", "captured_at", "transaction_id"])


@given(body=st.one_of(
    json_values,
    st.fixed_dictionaries({"items": st.lists(st.dictionaries(item_keys, json_values, max_size=9), max_size=5),
                           "next_cursor": st.none() | st.text(max_size=5)}),
))
def test_any_answer_is_entries_or_one_bad_answer(body: Any) -> None:
    from agent.dayclose.server import parse_page

    try:
        entries, cursor, _ = parse_page(body)
    except BadAnswer as e:
        assert str(e).startswith("billing server: business day: ") and "\n" not in str(e)
        return
    for entry_ in entries:
        assert isinstance(entry_.amount, int) and not isinstance(entry_.amount, bool) and entry_.amount >= 0
        assert entry_.method in ("cash", "card_terminal", "card_reader") and len(entry_.currency) == 3
    assert cursor is None or isinstance(cursor, str)


def test_the_paper_copy(tmp_path: Any) -> None:
    from agent.dayclose.export import print_close
    from drivers.printer import open_printer
    from sandbox.printer import VirtualPrinter

    journal = [entry("m", state="uploaded"), entry("q", state="approved", bill_reference="B\u0663\u20ac")]
    rep = reconcile(journal, [entry("m"), entry("s", amount=700)], terminal_id="ORAN-07-G1", day="2026-11-30")
    with VirtualPrinter(tmp_path / "paper") as vp:
        url = vp.listen("127.0.0.1", 0)
        result = print_close(open_printer(url), rep.to_dict(), paper=58)
        assert result.ok, result.message
        [saved] = vp.wait_jobs(1)
    text = "\n".join(saved.job.text)
    assert "Day close 2026-11-30" in text and "SERVER_ONLY" in text and "QUEUED" in text
    assert saved.job.cut and not saved.job.errors
    assert all(len(row) <= 32 for row in saved.job.text)


def test_a_damaged_runs_file_is_one_line(tmp_path: Any) -> None:
    from agent.errors import StorageError

    (tmp_path / "dayclose.db").write_bytes(b"not a database, " * 512)
    with pytest.raises(StorageError) as e:
        DayCloseStore.open(tmp_path)
    assert "dayclose.db" in str(e.value) and "corrupt" in str(e.value) and "\n" not in str(e.value)
    with DayCloseStore.open(tmp_path / "fresh") as store:
        with pytest.raises(KeyError):
            store.get(1)
        assert store.runs(limit=10**9) == []
