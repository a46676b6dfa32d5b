"""TpeAuthorizer (the card_terminal method) against the simulator on a pty: the outcome the journal
records for each terminal behaviour, and never a full PAN in it."""

from __future__ import annotations

import json
import threading

import pytest

from agent.authorize import AuthOutcome, AuthRequest
from agent.authorizers.tpe import TpeAuthorizer
from drivers.emv.schemes import scheme_for
from sandbox.tpe import TEST_PANS
from tests.tpe.conftest import tpe_config

OUTCOMES = {
    "approve": "approved",
    "refuse": "declined",
    "cancel": "cancelled",
    "nak_first": "approved",
    "bad_lrc": "approved",
    "bad_lrc_always": "unknown",
    "no_answer": "unknown",
    "unplug": "unknown",
    "silent": "cancelled",  # nothing reached the terminal
    "garbage": "approved",
    "slow": "approved",
    "odd_status": "unknown",  # a status Concert does not define: the card may have been charged
}


def request(amount: int = 123450, currency: str = "DZD") -> AuthRequest:
    return AuthRequest(
        transaction_id="t-1", payment_ids=["p-1"], amount=amount, currency=currency,
        receipt_number="ORAN-07-G1-000001", online=True,
    )


def run(auth: TpeAuthorizer, req: AuthRequest, cancel: threading.Event | None = None) -> tuple[AuthOutcome, list]:
    statuses: list[str] = []
    out = auth.authorize(req, cancel=cancel or threading.Event(), on_status=statuses.append)
    return out, statuses


@pytest.mark.parametrize("behaviour", list(OUTCOMES))
def test_outcome_for_each_terminal_behaviour(tpe_sim, behaviour: str) -> None:
    sim = tpe_sim(behaviour=behaviour)
    out, statuses = run(TpeAuthorizer(tpe_config(sim.path)), request())
    assert out.status == OUTCOMES[behaviour], out.message
    recorded = json.dumps(out.__dict__)
    assert all(pan not in recorded for pan in TEST_PANS)
    assert out.detail["terminal_result"]
    if out.status == "unknown":
        assert "ticket" in out.message  # the cashier is told how to settle it
    if behaviour != "silent":
        assert "pin_on_terminal" in statuses


def test_approved_card_is_masked_with_scheme_and_no_token(tpe_sim) -> None:
    for card, scheme in (("EDAHABIA", "EDAHABIA"), ("CIB", "CIB"), ("VISA", "VISA")):
        sim = tpe_sim(card=card)
        out, _ = run(TpeAuthorizer(tpe_config(sim.path)), request())
        assert out.status == "approved"
        assert out.card is not None
        assert out.card["scheme"] == scheme
        assert "******" in out.card["pan_masked"] and out.card["pan_token"] is None
        assert out.detail["answer"]["status"] == "0" and out.detail["answer"]["amount"] == 123450
        assert out.code  # the terminal's private data: its authorisation number


def test_scheme_is_other_when_no_rule_matches() -> None:
    assert scheme_for("999999******0000", []) == "OTHER"
    assert scheme_for(None, []) == "OTHER"


def test_amount_too_large_is_cancelled_before_anything_is_sent(tpe_sim) -> None:
    sim = tpe_sim()
    out, _ = run(TpeAuthorizer(tpe_config(sim.path)), request(amount=100_000_000))
    assert out.status == "cancelled" and "8" in out.message
    assert sim.exchanges == []


def test_three_decimal_tnd_is_sent_exactly(tpe_sim) -> None:
    sim = tpe_sim()
    out, _ = run(TpeAuthorizer(tpe_config(sim.path)), request(amount=12_345, currency="TND"))
    assert out.status == "approved"
    sim.wait_idle()
    req = sim.exchanges[-1].request
    assert req is not None and (req.amount, req.currency_numeric) == (12_345, "788")


def test_cancel_before_start_and_no_port(tpe_sim) -> None:
    cancel = threading.Event()
    cancel.set()
    sim = tpe_sim()
    out, _ = run(TpeAuthorizer(tpe_config(sim.path)), request(), cancel)
    assert out.status == "cancelled" and sim.exchanges == []
    out, _ = run(TpeAuthorizer(tpe_config("")), request())
    assert out.status == "cancelled" and "tpe.port" in out.message


def test_cashier_cancel_while_the_customer_types_is_unknown(tpe_sim) -> None:
    sim = tpe_sim(behaviour="slow", pin_delay=5.0)
    cancel = threading.Event()
    statuses: list[str] = []

    def on_status(key: str) -> None:
        statuses.append(key)
        if key == "pin_on_terminal":
            cancel.set()

    out = TpeAuthorizer(tpe_config(sim.path, answer_timeout=5)).authorize(
        request(), cancel=cancel, on_status=on_status
    )
    assert out.status == "unknown"
    assert "cancel_on_terminal" in statuses
