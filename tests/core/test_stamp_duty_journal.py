"""Stamp duty (contract 1.1) in the journal: stored with the payment, uploaded as `stamp_duty`, shown by
`guichet queue show`; refused when it is not a whole number of minor units or on a card payment."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import InvalidAmount
from agent.journal import Journal, NewPayment
from agent.states import State

BILL = {"reference": "410726095518", "amount_due": 345600, "currency": "DZD", "status": "unpaid", "version": 3}


def approved(j: Journal, duty: object, method: str = "cash", ref: str = "410726095518"):
    [p] = j.create([NewPayment({**BILL, "reference": ref}, 345600, stamp_duty=duty)],  # type: ignore[arg-type]
                   currency="DZD", method=method, cashier_id="c0042", captured_offline=False)
    j.transition(p.payment_id, State.AUTHORIZING, actor="c0042")
    return j.transition(p.payment_id, State.APPROVED, actor="c0042",
                        authorization=None if method == "cash" else {"code": "1", "reference": "r",
                                                                     "approved_at": "2026-11-22T08:14:03Z"})[0]


def test_stamp_duty_is_kept_uploaded_and_reloaded_byte_for_byte(tmp_path) -> None:
    j = Journal.open(tmp_path, terminal_id="ORAN-07-G2", agency_id="ORAN-07")
    p = approved(j, 4000)
    assert p.stamp_duty == 4000 and p.to_api()["stamp_duty"] == 4000
    none = approved(j, None, ref="2")
    assert "stamp_duty" not in none.to_api()  # left out when none: what a 1.0 server takes
    # 0 is no duty: never uploaded as "stamp_duty": 0 (a card payment has none; review 2, finding 9)
    zero_card = approved(j, 0, method="card_terminal", ref="3")
    assert zero_card.stamp_duty is None and "stamp_duty" not in zero_card.to_api()
    zero_cash = approved(j, 0, ref="4")
    assert zero_cash.stamp_duty is None and "stamp_duty" not in zero_cash.to_api()
    j.close()
    j = Journal.open(tmp_path, terminal_id="ORAN-07-G2", agency_id="ORAN-07")
    assert j.get(p.payment_id).to_api() == p.to_api() and j.get(p.payment_id).stamp_duty == 4000
    j.close()


@given(st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63), st.floats(), st.booleans(), st.text()))
def test_a_stamp_duty_that_is_not_minor_units_is_refused_before_anything_is_written(tmp_path_factory, duty) -> None:
    tmp = tmp_path_factory.mktemp("j")
    j = Journal.open(tmp, terminal_id="ORAN-07-G2", agency_id="ORAN-07", check=False)
    with pytest.raises(InvalidAmount, match="^stamp_duty: .* must be a whole number of minor units, 0 or more$"):
        approved(j, duty)
    assert j.list() == []
    j.close()


def test_stamp_duty_on_a_card_payment_is_refused(tmp_path) -> None:
    j = Journal.open(tmp_path, terminal_id="ORAN-07-G2", agency_id="ORAN-07")
    with pytest.raises(InvalidAmount, match="^stamp_duty: only on a cash payment, not card_reader$"):
        approved(j, 100, method="card_reader")
    assert j.list() == []
    j.close()


def test_queue_show_tells_the_stamp_duty_and_local_times(guichet, billing_config) -> None:
    from agent import clock
    from tests.conftest import BILLING_AGENCY, BILLING_TERMINAL

    with Journal.open(billing_config.state.dir, terminal_id=BILLING_TERMINAL, agency_id=BILLING_AGENCY) as j:
        p = approved(j, 4000)
    algiers = {"TZ": "Africa/Algiers"}  # UTC+01:00, no summer time
    shown = guichet("queue", "show", p.receipt_number, env=algiers)
    assert shown.returncode == 0, shown.stderr
    assert "  stamp duty: 40.00 DZD" in shown.stdout.splitlines()
    created = clock.parse(p.created_at)
    local = created.astimezone(clock.parse("2026-01-01T00:00:00+01:00").tzinfo)
    assert local.isoformat(sep=" ", timespec="seconds") in shown.stdout  # the stored UTC shown in local time
    as_json = json.loads(guichet("queue", "show", p.receipt_number, "--json").stdout)
    assert as_json["stamp_duty"] == 4000 and as_json["captured_at"] == p.captured_at  # JSON: the stored form
