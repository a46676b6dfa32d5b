"""Review 1, findings 1-5 and 8: the sandbox acquirer credits a card_reader payment only on the issuer's word.
An offline TC is bound to its amount, currency, card and transaction, and serves once; an online payment needs
its approved authorization; an ARQC serves once; only a verified ARQC teaches the issuer a card, which it keeps
(keys, not the PAN) across a restart; no PAN is stored from `emv`; a chip read without chip data is declined."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from sandbox.billing.server import SandboxServer
from tests.sandbox.conftest import Api, make_payment
from tests.sandbox.test_acquirer import (  # noqa: F401  (_one_card_per_pan: a fixture)
    CIB,
    IADS,
    VISA,
    Card,
    _one_card_per_pan,
    _replace,
    chip_body,
    offline_payment,
    online_payment,
)
from tests.sandbox.test_authorizations import authorize

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")


@pytest.fixture
def server(tmp_path: Path):
    with SandboxServer(tmp_path / "b.db", seed_bills=20, issuer_pans=(VISA,)) as srv:
        yield srv


def codes(results: list[dict]) -> list[str]:
    return [r.get("error", {}).get("code", r["status"]) for r in results]


def test_offline_tc_is_bound_to_amount_currency_card_and_transaction(server: SandboxServer) -> None:
    api, refs = Api(server), server.references(status="unpaid")
    card = Card(VISA, 10, IADS[10])
    inflated = offline_payment(refs[0], card, amount=100)
    inflated["amount"] = 345600  # the TC's 9F02 says 1.00
    assert codes(api.batch([inflated])) == ["cryptogram_invalid"]
    tnd = offline_payment(refs[0], card, amount=100)
    tnd["emv"] = _replace(tnd["emv"], 0x5F2A, bytes.fromhex("0788"))  # the card charged dinars (TND)
    assert api.batch([tnd])[0]["error"]["message"].startswith("emv: tag 5F2A says 788")
    # a basket: two bills, one TC whose 9F02 is their total, one transaction_id
    emv = card.generate_ac(300, 0x40)
    tid = str(uuid.uuid4())
    basket = [offline_payment(ref, card, amount=a, emv=emv, transaction_id=tid) for ref, a in ((refs[1], 100),
                                                                                             (refs[2], 200))]
    assert codes(api.batch(basket)) == ["accepted", "accepted"]
    more = offline_payment(refs[3], card, amount=1, emv=emv, transaction_id=tid)  # beyond 9F02
    assert codes(api.batch([more])) == ["cryptogram_invalid"]
    # the same TC in another transaction, under a wildcard mask or the genuine one: refused
    wildcard = make_payment(refs[4], 100, method="card_reader", captured_offline=True, emv=emv)
    wildcard["card"].update({"pan_masked": "****************", "scheme": "VISA"})
    replay = offline_payment(refs[4], card, amount=100, emv=emv)
    results = api.batch([wildcard, replay])
    assert codes(results) == ["cryptogram_invalid", "cryptogram_invalid"]
    assert "first 6 and last 4" in results[0]["error"]["message"]
    assert "already used" in results[1]["error"]["message"]


def test_online_card_reader_payment_needs_its_approved_authorization(server: SandboxServer) -> None:
    api, refs = Api(server), server.references(status="unpaid")
    claimed = make_payment(refs[0], 500000, method="card_reader", captured_offline=False, emv="9F260800")
    assert codes(api.batch([claimed])) == ["authorization_not_found"]
    # the agent's way: one authorization under the transaction_id for the basket's total
    p1 = online_payment(api, refs[1], 300)
    p2 = {**p1, "payment_id": str(uuid.uuid4()), "bill_reference": refs[2], "amount": 100,
          "receipt_number": p1["receipt_number"]}  # fmt: skip
    wrong_code = {**p1, "payment_id": str(uuid.uuid4()), "authorization": {**p1["authorization"], "code": "000000"}}
    assert codes(api.batch([wrong_code, p1])) == ["authorization_not_found", "accepted"]
    assert codes(api.batch([p2])) == ["authorization_not_found"]  # 300 + 100 > the 300 authorized
    # a reversed approval credits nothing
    p3 = online_payment(api, refs[3], 100)
    r = api.post(f"v1/authorizations/{p3['transaction_id']}/reversal", json={"reason": "card_removed"})
    assert r.status_code == 200
    assert codes(api.batch([p3])) == ["authorization_not_found"]


def test_an_arqc_serves_once_and_a_replay_must_be_the_same_request(server: SandboxServer) -> None:
    api = Api(server)
    card = Card(VISA, 18, IADS[18])
    first = chip_body(card, amount=4000)
    assert authorize(api, first).json()["approved"] is True
    again = authorize(api, {**first, "payment_id": str(uuid.uuid4())}).json()
    assert (again["approved"], again["response_code"]) == (False, "N7")
    forged = authorize(api, {**first, "emv": _replace(first["emv"], 0x9F26, bytes(8))})
    assert forged.status_code == 409
    assert authorize(api, first).json()["approved"] is True  # the genuine replay: the stored answer
    older = Card(VISA, 18, IADS[18], atc=0x1B)  # an ATC below the card's last
    assert authorize(api, chip_body(older, amount=4000)).json()["response_code"] == "N7"


def test_only_a_verified_arqc_teaches_a_card_and_the_card_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    card = Card("5200828282828210", 20, IADS[20])
    with SandboxServer(db, seed_bills=20) as srv:
        api = Api(srv)
        bad = chip_body(card, scheme="MASTERCARD")
        bad["emv"] = _replace(bad["emv"], 0x9F26, bytes(8))
        assert authorize(api, bad).json()["approved"] is False
        ref = srv.references(status="unpaid")[0]
        before = offline_payment(ref, card, scheme="MASTERCARD")
        assert api.batch([before])[0]["error"]["message"].startswith("card.pan_masked: no card")
        assert authorize(api, chip_body(card, scheme="MASTERCARD")).json()["approved"] is True
    with SandboxServer(db, seed_bills=20) as srv:
        assert codes(Api(srv).batch([offline_payment(ref, card, scheme="MASTERCARD")])) == ["accepted"]
    dump = "\n".join(sqlite3.connect(db).iterdump())
    assert card.pan not in dump  # the card book keeps keys under an HMAC, never the PAN


def test_no_pan_is_stored_from_emv(server: SandboxServer) -> None:
    api, refs = Api(server), server.references(status="unpaid")
    p = online_payment(api, refs[0], 1000, emv="5A084761739001010010")
    nested = make_payment(refs[1], 1000, emv="700A5A084761739001010010")  # inside a template, card_terminal
    results = api.batch([p, nested])
    assert codes(results) == ["cardholder_data", "cardholder_data"]
    assert "4761739001010010" not in api.get(f"v1/payments/{p['payment_id']}").text
    assert "4761739001010010" not in api.get("_sandbox/rejections").text


def test_a_chip_read_without_chip_data_is_declined(server: SandboxServer) -> None:
    api = Api(server)
    body = chip_body(Card(CIB, 18, IADS[18]), amount=4000, scheme="CIB")
    body["emv"] = None
    answer = authorize(api, body).json()
    assert (answer["approved"], answer["code"]) == (False, None)
    # the switch (a 1.0 client): off, a card read alone is decided as before
    assert api.put("_sandbox/issuer", json={"require_chip_data": False}).status_code == 200
    assert authorize(api, {**body, "payment_id": str(uuid.uuid4())}).json()["approved"] is True
