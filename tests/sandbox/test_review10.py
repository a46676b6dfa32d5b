"""Review 10 (virtual card counters, issue 14): what the sandbox acquirer must keep doing with the ATC, and the
`guichet sandbox card` default that makes the default pair of commands work again the next day.

- A forged ARQC carrying a high ATC is declined without moving the card's last ATC: it cannot lock the card out.
- Uploaded offline TCs are not held to the ATC: a card's genuine TCs arrive late and out of order.
- `guichet sandbox card` keeps its counters in the user state dir by default (beside `guichet sandbox serve`'s
  database), so a new card process goes on from the card's last ATC.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from drivers.emv import tlv as T
from sandbox.billing.acquirer import Acquirer, parse_chip_data, to_hex
from sandbox.billing.cli import default_db
from sandbox.billing.server import SandboxServer
from sandbox.cards.card import VirtualCard
from sandbox.cards.cli import default_counters, open_counters
from sandbox.cards.counters import CounterStore, FileCounterStore
from sandbox.cards.profiles import PROFILES
from tests.sandbox.conftest import Api
from tests.sandbox.test_acquirer import (  # noqa: F401  (_one_card_per_pan, issuer_server: fixtures)
    IADS,
    VISA,
    Card,
    _one_card_per_pan,
    chip_body,
    issuer_server,
    offline_payment,
)
from tests.sandbox.test_authorizations import authorize

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")


def test_a_forged_arqc_with_a_high_atc_cannot_lock_the_card_out(api: Api) -> None:
    forged = Card(VISA, 18, IADS[18], atc=0xFFFF)
    body = chip_body(forged)
    tags = {i.tag: i.value for i in T.decode(bytes.fromhex(body["emv"]))}
    tags[0x9F26] = bytes(8)  # whoever sent it has no card key
    answer = authorize(api, {**body, "emv": to_hex(tags)}).json()
    assert (answer["approved"], answer["response_code"]) == (False, "N7")
    # the card's genuine next ARQC (ATC 001C, far below FFFF) is approved: the forgery did not raise its last ATC
    genuine = Card(VISA, 18, IADS[18], atc=0x1C)
    assert authorize(api, chip_body(genuine)).json()["approved"] is True
    assert authorize(api, chip_body(Card(VISA, 18, IADS[18], atc=0x1C))).json()["response_code"] == "N7"  # replay


def test_uploaded_tcs_are_not_held_to_the_atc(issuer_server: SandboxServer) -> None:  # noqa: F811
    api = Api(issuer_server)
    refs = issuer_server.references(status="unpaid")
    assert authorize(api, chip_body(Card(VISA, 10, IADS[10], atc=0x40))).json()["approved"] is True  # last: 0040
    # two TCs the card made offline before that, uploaded late and in the reverse order
    later = offline_payment(refs[0], Card(VISA, 10, IADS[10], atc=0x31))
    earlier = offline_payment(refs[1], Card(VISA, 10, IADS[10], atc=0x30))
    assert [r["status"] for r in api.batch([later, earlier])] == ["accepted", "accepted"]
    assert authorize(api, chip_body(Card(VISA, 10, IADS[10], atc=0x41))).json()["approved"] is True


# ---- `guichet sandbox card`: its counters are kept by default, like serve's database

CIB = PROFILES["cib"]
CIB_APP = next(a for a in CIB.apps if a.emv is not None)
CDOL1 = {0x9F02: "000000345600", 0x9F03: "000000000000", 0x9F1A: "0012", 0x95: "0000000000", 0x5F2A: "0012",
         0x9A: "261130", 0x9C: "00", 0x9F37: "11223344", 0x9F35: "22", 0x9F34: "1F0302"}


def _one_run(counters: CounterStore) -> dict[int, bytes]:
    """One `guichet sandbox card --profile cib` process and one ARQC from it: the DE55 a terminal would send."""
    card = VirtualCard(CIB, counters=counters)
    card.power(True)
    a = CIB_APP
    gpo = bytes([0x83, a.pdol_length()]) + bytes(a.pdol_length())
    for command in (bytes([0, 0xA4, 4, 0, len(a.aid)]) + a.aid + b"\0",
                    bytes([0x80, 0xA8, 0, 0, len(gpo)]) + gpo + b"\0"):
        answer = card.apdu(command)
        assert answer is not None and answer[-2:] == b"\x90\x00"
    cdol = b"".join(bytes.fromhex(v) for v in CDOL1.values())
    answer = card.apdu(bytes([0x80, 0xAE, 0x80, 0, len(cdol)]) + cdol + b"\0")
    assert answer is not None and answer[-2:] == b"\x90\x00"
    tags = {k: bytes.fromhex(v) for k, v in CDOL1.items()}
    tags.update({t.tag: t.value for t in T.decode(answer[:-2])[0].children})
    tags.update({0x82: a.aip, 0x9F33: bytes.fromhex("E0F8C8"), 0x84: a.aid, 0x9F09: bytes.fromhex("008C"),
                 0x5F34: bytes([a.psn])})
    return tags


def test_the_card_cli_keeps_its_counters_beside_serves_database_by_default(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_counters() == tmp_path / "state" / "guichet" / "sandbox-card-counters.json"
    assert default_counters().parent == default_db().parent
    acquirer = Acquirer()  # one server, whose database outlives the card processes
    verdicts = []
    for _day in range(2):  # the default `guichet sandbox card --profile cib`, run twice
        store = open_counters(None)
        assert isinstance(store, FileCounterStore) and store.path == default_counters()
        chip = parse_chip_data(to_hex(_one_run(store)))
        verdict = acquirer.authorize_arqc(CIB_APP.pan, CIB.scheme, chip, CIB_APP.psn, str(uuid.uuid4()))
        verdicts.append((verdict.ok, verdict.reason))
    assert verdicts == [(True, ""), (True, "")]
    # --counters none (or :memory:): a fresh card each process, whose first ARQC repeats an ATC seen (N7)
    for option in ("none", ":memory:", "NONE"):
        assert type(open_counters(option)) is CounterStore
    chip = parse_chip_data(to_hex(_one_run(open_counters("none"))))
    verdict = acquirer.authorize_arqc(CIB_APP.pan, CIB.scheme, chip, CIB_APP.psn, str(uuid.uuid4()))
    assert not verdict.ok and "is not above the card's last" in (verdict.reason or "")


def test_the_card_cli_names_its_default_counters_file_when_it_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / "state" / "guichet" / "sandbox-card-counters.json"
    path.parent.mkdir(parents=True)
    path.write_text("{")
    res = subprocess.run([sys.executable, "-m", "guichet", "sandbox", "card", "--profile", "cib"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "XDG_STATE_HOME":
                                                                          str(tmp_path / "state")})
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [f"Error: --counters {path}: not JSON at line 1 column 2"]
