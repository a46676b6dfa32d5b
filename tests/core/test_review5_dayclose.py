"""Review 5, the day's close against a hostile billing server (a stub on 127.0.0.1 over real HTTP, or the
sandbox): totals the items do not add up to and items of another day (3), a payment repeated with other
content (4), the TPE's count of a card basket (6), cursors that cycle, more pages than the day needs and one
deadline for the close (10), another payment's record (11), the CSV's account of the run (12), formulas in
any cell (8), and the agency's zone (5)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.billing import BillingClient
from agent.context import AgentContext
from agent.dayclose import TpeTotals, agency_zone, close_day, fetch_business_day, reconcile, to_csv
from agent.dayclose.checks import zone_agrees
from agent.dayclose.export import _cell
from agent.dayclose.server import record_entry
from agent.errors import BadAnswer
from agent.payments import server_view
from agent.sync import SyncWorker
from tests.core.conftest import with_changes
from tests.core.stub_server import StubServer, json_answer
from tests.core.test_dayclose import entry

DAY = "2026-11-30"


def item(pid: str, amount: int = 1000, **kw: Any) -> dict[str, Any]:
    d = {"payment_id": pid, "transaction_id": pid, "bill_reference": "B" + pid, "amount": amount,
         "currency": "DZD", "stamp_duty": 0, "method": "cash", "receipt_number": "R-" + pid,
         "captured_at": "2026-11-30T12:00:00Z"}
    d.update(kw)
    return d


def page(items: list[dict[str, Any]], nxt: str | None = None, **totals: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"items": items, "next_cursor": nxt}
    if totals:
        body["totals"] = totals
    return body


class Pages:
    """A stub billing server answering the business day from {cursor: page}."""

    def __init__(self, pages: dict[str | None, dict[str, Any]], records: dict[str, Any] | None = None) -> None:
        self.pages, self.records = pages, records or {}

    def __call__(self, method: str, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(path)
        if "/terminals/" in parts.path:
            cursor = parse_qs(parts.query).get("cursor", [None])[0]
            return json_answer(200, self.pages[cursor])
        pid = parts.path.rsplit("/", 1)[-1]
        if pid in self.records:
            return json_answer(200, self.records[pid])
        return json_answer(404, {"error": {"code": "not_found", "message": "no such payment"}})


def _client(cfg: Any, stub: StubServer) -> BillingClient:
    return BillingClient(with_changes(cfg, server={"url": stub.url}))


def _fetch(cfg: Any, pages: Pages, **kw: Any) -> tuple[Any, int]:
    with StubServer(pages) as stub:
        client = _client(cfg, stub)
        try:
            return fetch_business_day(client, "ORAN-07-G1", DAY, tz=ZoneInfo("UTC"), **kw), len(stub.requests)
        finally:
            client.close()


# -- 3: the server's totals, the day of each item, the two sides' totals ---------------------------------


def test_totals_the_items_do_not_add_up_to_are_a_bad_answer(billing_config: Any) -> None:
    ghost = Pages({None: page([item("p1")], count=2, amount={"DZD": 2_001_000}, by_method={})})
    with pytest.raises(BadAnswer, match="do not add up to the day's totals"):
        _fetch(billing_config, ghost)
    good = Pages({None: page([item("p1", 1000, stamp_duty=100)], count=1, amount={"DZD": 1000},
                             stamp_duty={"DZD": 100}, by_method={"cash": {"count": 1, "amount": {"DZD": 1000}}})})
    day, _ = _fetch(billing_config, good)
    assert day.totals is not None and day.totals.count == 1
    with pytest.raises(BadAnswer, match=r"totals\.amount"):
        _fetch(billing_config, Pages({None: page([], count=0, amount={"DZD": "12"})}))


@pytest.mark.parametrize(("captured", "why"), [
    ("2026-11-25T10:00:00+01:00", "is not on 2026-11-30"),
    ("yesterday", "not an RFC 3339 time"),
    ("2026-11-30T10:00:00", "no time zone offset"),
])
def test_an_item_of_another_day_is_a_bad_answer(billing_config: Any, captured: str, why: str) -> None:
    with pytest.raises(BadAnswer, match=why):
        _fetch(billing_config, Pages({None: page([item("old", captured_at=captured)])}))


def test_the_close_of_a_server_whose_totals_leave_one_out_is_not_clean(agent: AgentContext) -> None:
    ghost = Pages({None: page([], count=1, amount={"DZD": 990000})})
    with StubServer(ghost) as stub:
        client = _client(agent.config, stub)
        rep = close_day(agent.config, agent.journal, client, day=date(2026, 11, 30),
                        tpe=TpeTotals(0, {}), tz=ZoneInfo("UTC"))
        client.close()
    assert not rep.online and not rep.clean
    assert any("do not add up" in u for u in rep.unchecked)


def test_journal_and_server_totals_that_differ_are_a_problem() -> None:
    journal = [entry("m", state="uploaded", cashier_id="c1"), entry("q", state="approved", cashier_id="c1")]
    rep = reconcile(journal, [entry("m")], terminal_id="T", day=DAY, tpe=TpeTotals(0, {}))
    assert rep.totals_check == {"agrees": False, "journal_count": 2, "server_count": 1,
                                "difference": {"DZD": -1000}, "stamp_duty_difference": {}}
    assert rep.problems == 1 and not rep.clean
    same = reconcile(journal[:1], [entry("m")], terminal_id="T", day=DAY, tpe=TpeTotals(0, {}))
    assert same.totals_check is not None and same.totals_check["agrees"] and same.clean


# -- 4: a repeat across pages ----------------------------------------------------------------------------


def test_a_repeat_with_other_content_is_a_bad_answer_an_identical_one_is_not(billing_config: Any) -> None:
    other = Pages({None: page([item("p1", 1000)], "c2"), "c2": page([item("p1", 9_999_900)])})
    with pytest.raises(BadAnswer, match=r"page 2 items\[0\]\.payment_id 'p1' repeated with other content"):
        _fetch(billing_config, other)
    same = Pages({None: page([item("p1")], "c2"), "c2": page([item("p1"), item("p2")])})
    day, _ = _fetch(billing_config, same)
    assert [e.payment_id for e in day.entries] == ["p1", "p2"]


# -- 10: cursors, pages, one deadline ------------------------------------------------------------------


def test_a_cursor_that_cycles_ends_the_paging_at_once(billing_config: Any) -> None:
    cycle = Pages({None: page([], "A"), "A": page([], "B"), "B": page([], "A")})
    with StubServer(cycle) as stub:
        client = _client(billing_config, stub)
        with pytest.raises(BadAnswer, match="already read"):
            fetch_business_day(client, "ORAN-07-G1", DAY)
        client.close()
        assert len(stub.requests) == 3


def test_the_pages_a_day_needs_come_from_its_count(billing_config: Any) -> None:
    endless = Pages({None: page([item("p1")], "c1", count=1, amount={"DZD": 1000})}
                    | {f"c{i}": page([], f"c{i + 1}", count=1, amount={"DZD": 1000}) for i in range(1, 300)})
    with StubServer(endless) as stub:
        client = _client(billing_config, stub)
        with pytest.raises(BadAnswer, match="more than 2 pages"):
            fetch_business_day(client, "ORAN-07-G1", DAY, tz=ZoneInfo("UTC"))
        client.close()
        assert len(stub.requests) == 2


def test_the_close_has_one_deadline(agent: AgentContext) -> None:
    with StubServer(Pages({None: page([], count=0, amount={})})) as stub:
        client = _client(agent.config, stub)
        rep = close_day(agent.config, agent.journal, client, day=date(2026, 11, 30), budget=0)
        client.close()
        assert stub.requests == []
    assert not rep.online and any("not read whole in time" in u for u in rep.unchecked)


# -- 11: another payment's record ------------------------------------------------------------------------


def test_a_record_must_be_of_our_payment_and_terminal() -> None:
    rec = {"payment_id": "p1", "amount": 1, "currency": "DZD", "method": "cash", "terminal_id": "OTHER-T"}
    with pytest.raises(BadAnswer, match="terminal 'OTHER-T'"):
        record_entry(rec, payment_id="p1", terminal_id="ORAN-07-G1")
    with pytest.raises(BadAnswer, match="of payment 'someone-else'"):
        record_entry({**rec, "payment_id": "someone-else"}, payment_id="p1", terminal_id="OTHER-T")
    assert record_entry(rec, payment_id="p1", terminal_id="OTHER-T").amount == 1


def test_another_payments_record_is_never_taken_for_ours(agent: AgentContext, seeded_references: list[str]) -> None:
    paid = agent.flow.pay([agent.flow.lookup(seeded_references[0])], method="cash", cashier_id="c0042").payments[0]
    assert SyncWorker(agent.config, agent.journal, agent.client, agent.bills).run_once().uploaded == 1
    paid = agent.journal.get(paid.payment_id)
    api = paid.to_api()
    record = {**{k: api[k] for k in ("bill_reference", "amount", "currency", "method", "receipt_number",
                                     "captured_at")}, "status": "recorded"}
    other = {paid.payment_id: {**record, "payment_id": "someone-else", "terminal_id": "OTHER-T"}}
    day = datetime.fromisoformat(paid.captured_at.replace("Z", "+00:00")).date()
    with StubServer(Pages({None: page([], count=0, amount={})}, other)) as stub:
        client = _client(agent.config, stub)
        view = server_view(client, paid)
        rep = close_day(agent.config, agent.journal, client, day=day, tz=ZoneInfo("UTC"))
        client.close()
    assert view.status != "recorded" and "someone-else" in view.message
    assert [line.kind for line in rep.lines] == ["missing_on_server"]
    assert any("the record is of payment 'someone-else'" in u for u in rep.unchecked)


# -- 6: the TPE's count of a card basket -----------------------------------------------------------------


def test_a_card_basket_is_one_tpe_transaction() -> None:
    basket = [entry(f"p{i}", a, "uploaded", transaction_id="tx1", method="card_terminal")
              for i, a in enumerate((100000, 250000, 150000))]
    rep = reconcile(basket, basket, terminal_id="T", day=DAY, tpe=TpeTotals(1, {"DZD": 500000}))
    assert rep.tpe is not None and rep.tpe["agrees"] and rep.tpe["journal_count"] == 1 and rep.clean
    two = reconcile(basket, basket, terminal_id="T", day=DAY, tpe=TpeTotals(3, {"DZD": 500000}))
    assert two.tpe is not None and not two.tpe["agrees"]


# -- 12 and 8: the CSV ---------------------------------------------------------------------------------


def test_the_csv_says_what_the_close_could_not_check() -> None:
    basket = [entry("p1", 5000, "uploaded", method="card_terminal")]
    off = reconcile(basket, None, terminal_id="ORAN-07-G1", day=DAY, tpe=TpeTotals(2, {"DZD": 5000}),
                    run_at="2026-11-30T22:00:00Z")
    rows = list(csv.reader(io.StringIO(to_csv({**off.to_dict(), "run_id": 7}))))
    head = {(r[0], r[1]): r[2:] for r in rows if r and r[0] == "close"}
    assert head[("close", "day")] == [DAY] and head[("close", "terminal_id")] == ["ORAN-07-G1"]
    assert head[("close", "run_id")] == ["7"] and head[("close", "online")][0].startswith("no")
    unchecked = [r[1] for r in rows if r and r[0] == "unchecked"]
    assert unchecked == off.unchecked and unchecked
    tpe = {r[1]: r[2:] for r in rows if r and r[0] == "tpe"}
    assert tpe["agrees"] == ["no"] and tpe["count"] == ["2", "1"]


@pytest.mark.parametrize("bad", ["=1+1", " =1+1", "\n=1+1", "\uff1d1+1", "@SUM(A1)", "\t-2"])
def test_no_cell_can_carry_a_formula(bad: str) -> None:
    assert _cell(bad) == "'" + bad
    rep = reconcile([entry("p1", state="uploaded", cashier_id=bad, bill_reference=bad)], [entry("p1")],
                    terminal_id="T", day=DAY)
    text = to_csv(rep.to_dict())
    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            assert cell.lstrip(" \t\r\n")[:1] not in ("=", "+", "@", "\uff1d") or cell.startswith("'"), row


# -- 5: the agency's zone ------------------------------------------------------------------------------


def _other_zone() -> str:
    """A zone whose date differs from the machine's right now (UTC+14 or UTC-12: one always does)."""
    today = datetime.now().astimezone().date()
    for name in ("Etc/GMT-14", "Etc/GMT+12"):
        if datetime.now(ZoneInfo(name)).date() != today:
            return name
    raise AssertionError("no zone on another date")


def test_the_business_day_is_the_agencys(billing_config: Any, guichet: Any, tmp_path: Any,
                                         seeded_references: list[str]) -> None:
    name = _other_zone()
    cfg = with_changes(billing_config, terminal={"timezone": name})
    assert agency_zone(cfg) == ZoneInfo(name)
    with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
        paid = ctx.flow.pay([ctx.flow.lookup(seeded_references[0])], method="cash", cashier_id="c0042")
        rep = close_day(cfg, ctx.journal, None)  # today, the agency's
        machine_day = close_day(cfg, ctx.journal, None, day=datetime.now().astimezone().date())
    agency_today = datetime.now(ZoneInfo(name)).date().isoformat()
    assert rep.day == agency_today and [line.payment_id for line in rep.lines] == [paid.payments[0].payment_id]
    assert machine_day.lines == []
    from config import write_config

    path = write_config(cfg, tmp_path / "zone.toml")
    out = guichet("day", "close", "--offline", "--json", cfg=path, env={"TZ": "UTC"})
    data = json.loads(out.stdout)
    assert data["day"] == agency_today and len(data["lines"]) == 1, out.stderr
    assert not zone_agrees(ZoneInfo(name), datetime.now().astimezone(), ZoneInfo("UTC"))


def test_the_doctor_warns_when_the_machine_disagrees(billing_config: Any, tmp_path: Any) -> None:
    from agent.dayclose.checks import timezone_check
    from agent.doctor import Doctor

    name = _other_zone()  # never the machine's zone: its date differs now
    warned = timezone_check(Doctor(tmp_path / "g.toml", with_changes(billing_config, terminal={"timezone": name})))
    assert not warned.ok and warned.severity == "warning" and name in warned.detail and name in warned.fix
    unset = timezone_check(Doctor(tmp_path / "g.toml", with_changes(billing_config, terminal={"timezone": ""})))
    assert unset.ok and "machine's zone" in unset.detail
    assert timezone_check(Doctor(tmp_path / "g.toml", None)).skipped


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
_totals = st.fixed_dictionaries({"count": _json, "amount": _json},
                                optional={"stamp_duty": _json, "by_method": _json})


@given(totals=st.one_of(_json, _totals), captured=st.text(max_size=40))
def test_any_totals_or_time_is_typed_or_one_bad_answer(totals: Any, captured: str) -> None:
    from agent.dayclose.server import parse_page

    try:
        _, _, typed = parse_page(page([item("p", captured_at=captured)], None) | {"totals": totals})
    except BadAnswer as e:
        assert str(e).startswith("billing server: business day: ") and "\n" not in str(e)
        return
    assert typed is None or (isinstance(typed.count, int) and all(v >= 0 for v in typed.amount.values()))


@given(amounts=st.lists(st.integers(0, 10**9), min_size=1, max_size=20), extra=st.integers(1, 3))
def test_the_days_totals_must_be_its_items(amounts: list[int], extra: int) -> None:
    from agent.dayclose.server import ServerDay, _check_totals, parse_page

    items = [item(f"p{i}", a) for i, a in enumerate(amounts)]
    entries, _, _ = parse_page(page(items))
    good = {"count": len(items), "amount": {"DZD": sum(amounts)}}
    _check_totals(ServerDay(entries, parse_page(page([], None, **good))[2]))
    short = {"count": len(items) + extra, "amount": {"DZD": sum(amounts)}}
    with pytest.raises(BadAnswer, match="do not add up"):
        _check_totals(ServerDay(entries, parse_page(page([], None, **short))[2]))
