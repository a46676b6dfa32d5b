"""Virtual cards keep their counters between insertions like real chips (sandbox/cards/counters.py), the sandbox
acquirer holds them to a growing ATC (strict ATC), and issuer script commands run only with the issuer's MAC.

The card-level tests speak APDUs to a VirtualCard directly (what the reader would send); the payment tests go
through the real pcscd + vpcd, the kernel and the sandbox acquirer over HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.emv import tlv as T
from drivers.pan import luhn_check_digit, luhn_valid, pan_token
from sandbox import issuer
from sandbox.cards.card import VirtualCard
from sandbox.cards.counters import MAX_FILE_BYTES, Counters, CountersFileError, CounterStore, FileCounterStore
from sandbox.cards.profiles import PROFILES, TEST_PANS
from tests.cards.test_emv_payment import _authorizations, _pay, emv_agent  # noqa: F401  (emv_agent: a fixture)

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

PROFILE = PROFILES["emv_pin_only"]  # a contact card: offline PIN, CVN 18, 3 PIN tries
APP = PROFILE.apps[0]
assert APP.emv is not None
EMV = APP.emv
CDOL1_DATA = bytes.fromhex("000000345600" "000000000000" "0012" "0000000000" "0012" "261130" "00" "11223344"
                           "22" "1F0302")  # fmt: skip


def _pin_block(pin: str) -> bytes:
    return bytes.fromhex(f"2{len(pin):X}{pin}".ljust(16, "F"))


class Reader:
    """The terminal's side, APDU by APDU: one insertion of `card` per ``with``."""

    def __init__(self, card: VirtualCard) -> None:
        self.card = card

    def __enter__(self) -> Reader:
        self.card.power(True)
        data, sw = self.send(bytes([0x00, 0xA4, 0x04, 0x00, len(APP.aid)]) + APP.aid + b"\x00")
        assert sw == 0x9000
        gpo = bytes([0x83, APP.pdol_length()]) + bytes(APP.pdol_length())
        data, sw = self.send(bytes([0x80, 0xA8, 0x00, 0x00, len(gpo)]) + gpo + b"\x00")
        assert sw == 0x9000
        return self

    def __exit__(self, *exc: object) -> None:
        self.card.power(False)

    def send(self, apdu: bytes) -> tuple[bytes, int]:
        r = self.card.apdu(apdu)
        assert r is not None
        return r[:-2], (r[-2] << 8) | r[-1]

    def get_data(self, tag: int) -> int:
        data, sw = self.send(bytes([0x80, 0xCA, tag >> 8, tag & 0xFF, 0x00]))
        assert sw == 0x9000
        return int.from_bytes(T.decode(data)[0].value, "big")

    def verify(self, pin: str) -> int:
        return self.send(bytes([0x00, 0x20, 0x00, 0x80, 0x08]) + _pin_block(pin))[1]

    def arqc(self) -> bytes:
        data, sw = self.send(bytes([0x80, 0xAE, 0x80, 0x00, len(CDOL1_DATA)]) + CDOL1_DATA + b"\x00")
        assert sw == 0x9000
        found = {t.tag: t.value for t in T.decode(data)[0].children}
        assert found[0x9F27] == b"\x80"
        return found[0x9F26]


# ---- the card keeps its counters


def test_the_atc_grows_across_insertions_of_the_same_card() -> None:
    card = VirtualCard(PROFILE)
    with Reader(card) as r:
        first = r.get_data(0x9F36)
    with Reader(card) as r:
        assert r.get_data(0x9F36) == first + 1 == EMV.atc + 2  # each GPO counts one transaction
    # another VirtualCard object is another card (its own store) unless it shares the store
    with Reader(VirtualCard(PROFILE)) as r:
        assert r.get_data(0x9F36) == first
    with Reader(VirtualCard(PROFILE, counters=card.counters)) as r:
        assert r.get_data(0x9F36) == first + 2


def test_the_pin_try_counter_survives_reinsertion() -> None:
    card = VirtualCard(PROFILE)
    with Reader(card) as r:
        assert [r.verify("0000"), r.verify("9999")] == [0x63C2, 0x63C1]
    with Reader(card) as r:  # taken out and inserted again: one try left, as on a real card
        assert r.get_data(0x9F17) == 1
        assert r.verify("0000") == 0x6983  # the third wrong PIN blocks it
    with Reader(card) as r:
        assert r.verify(EMV.pin) == 0x6983  # blocked for good: even the right PIN
        assert r.get_data(0x9F17) == 0
    kept = card.counters.get(APP.pan, APP.aid)
    assert kept is not None and kept.pin_tries == 0


def test_the_offline_balance_is_kept_with_the_counters() -> None:
    prof = PROFILES["visa_fdda"]
    app = prof.apps[0]
    store = CounterStore()
    store.put(app.pan, app.aid, Counters(0x20, 0x10, 3, False, offline_balance=1234))
    card = VirtualCard(prof, counters=store)
    card.apdu(bytes([0x00, 0xA4, 0x04, 0x00, len(app.aid)]) + app.aid + b"\x00")
    gpo = bytes([0x83, app.pdol_length()]) + bytes(app.pdol_length())
    answer = card.apdu(bytes([0x80, 0xA8, 0x00, 0x00, len(gpo)]) + gpo + b"\x00")
    assert answer is not None and answer[-2:] == b"\x90\x00"
    assert card.emv is not None and (card.emv.atc, card.emv.offline_balance) == (0x21, 1234)
    assert store.get(app.pan, app.aid) == Counters(0x21, 0x10, 3, False, offline_balance=1234)


def test_the_file_store_survives_a_restart_and_never_holds_the_card_number(tmp_path: Path) -> None:
    path = tmp_path / "counters.json"
    with Reader(VirtualCard(PROFILE, counters=FileCounterStore(path))) as r:
        atc = r.get_data(0x9F36)
        assert r.verify("0000") == 0x63C2
    assert path.stat().st_mode & 0o777 == 0o600 and (tmp_path / "counters.json.key").stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert not any(pan in text for pan in TEST_PANS) and APP.pan[:6] + "******" + APP.pan[-4:] in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counters.json", "counters.json.key"]  # no temp file left
    with Reader(VirtualCard(PROFILE, counters=FileCounterStore(path))) as r:  # a new process, the same card
        assert (r.get_data(0x9F36), r.get_data(0x9F17)) == (atc + 1, 2)


def test_a_store_that_cannot_write_never_stops_the_card(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = FileCounterStore(tmp_path / "gone" / "counters.json")
    shutil.rmtree(tmp_path / "gone")
    (tmp_path / "gone").write_text("x")  # its directory is now a file: every write fails
    card = VirtualCard(PROFILE, counters=store)
    with Reader(card) as r:
        atc = r.get_data(0x9F36)
    with Reader(card) as r:  # kept in memory meanwhile
        assert r.get_data(0x9F36) == atc + 1
    assert store.write_errors >= 2 and "card counters not saved" in caplog.text


def test_the_store_is_bounded() -> None:
    store = CounterStore(max_cards=3)
    for n in range(10):
        store.put(f"99910100000{n:05d}", APP.aid, Counters(n, 0, 3, False))
    assert len(store) == 3 and store.get("9991010000000009", APP.aid) == Counters(9, 0, 3, False)
    assert store.get("9991010000000000", APP.aid) is None  # the least recently used went first
    with pytest.raises(ValueError, match=r"^counters\.atc: must be an integer 0\.\.65535$"):
        store.put(APP.pan, APP.aid, Counters(0x10000, 0, 3, False))


# ---- a damaged or hostile file: one error naming the file and the field


def _store_file(tmp_path: Path, cards: object, **top: object) -> Path:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"version": 2, "cards": cards, **top}))
    key = tmp_path / "c.json.key"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o600)
    return path


GOOD = {"atc": 17, "last_online_atc": 15, "pin_tries": 3, "blocked": False, "offline_balance": None}
KEY = "0" * 64 + ":A0000000031010"  # a card: its pan_token and its AID


@pytest.mark.parametrize(("content", "message"), [
    ("{", "not JSON at line 1 column 2"),
    ("[" * 100_000 + "]" * 100_000, "not JSON"),  # deeper than the parser's recursion: still one line
    ('{"version": 2, "cards": {}, "x": NaN}', "not JSON"),
    ("\xff\xfe", "not JSON"),
    ("[]", "must be a JSON object"),
    ('{"version": 1, "salt": "' + "0" * 32 + '", "cards": {}}', "version: must be 2"),  # salted hashes: refused
    ('{"version": 2, "salt": "' + "0" * 32 + '", "cards": {}}', "salt: unknown field"),
])
def test_a_damaged_file_is_one_error_naming_the_file_and_the_field(tmp_path: Path, content: str,
                                                                     message: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(content, encoding="latin-1")
    with pytest.raises(CountersFileError) as e:
        FileCounterStore(path)
    assert str(e.value) == f"{path}: {message}"


@pytest.mark.parametrize(("entry", "message"), [
    ({**GOOD, "atc": "17"}, "cards.{k}.atc: must be an integer 0..65535"),
    ({**GOOD, "atc": True}, "cards.{k}.atc: must be an integer 0..65535"),
    ({**GOOD, "atc": 17.0}, "cards.{k}.atc: must be an integer 0..65535"),
    ({**GOOD, "last_online_atc": -1}, "cards.{k}.last_online_atc: must be an integer 0..65535"),
    ({**GOOD, "atc": 15, "last_online_atc": 16}, "cards.{k}.last_online_atc: must not be above the atc (15)"),
    ({**GOOD, "pin_tries": 10**100}, "cards.{k}.pin_tries: must be an integer 0..15"),
    ({**GOOD, "blocked": 0}, "cards.{k}.blocked: must be true or false"),
    ({**GOOD, "offline_balance": 1.5}, "cards.{k}.offline_balance: must be null or an integer 0..999999999999"),
    ({**GOOD, "pan_masked": "1234567812345670"}, "cards.{k}.pan_masked: must be a masked card number"),
    ({k: v for k, v in GOOD.items() if k != "atc"}, "cards.{k}.atc: missing"),
    ({**GOOD, "pin": "1234"}, "cards.{k}.pin: unknown field"),
    ([1, 2], "cards.{k}: must be an object"),
    ({**GOOD, "salt": "00"}, "cards.{k}.salt: unknown field"),
])
def test_wrong_types_name_the_field(tmp_path: Path, entry: object, message: str) -> None:
    path = _store_file(tmp_path, {KEY: entry})
    with pytest.raises(CountersFileError, match="^" + str(path) + ": ") as e:
        FileCounterStore(path)
    assert str(e.value) == f"{path}: " + message.format(k=KEY)


def test_a_huge_file_or_too_many_cards_is_refused_before_use(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(" " * (MAX_FILE_BYTES + 1))
    with pytest.raises(CountersFileError, match="more than 1048576 bytes"):
        FileCounterStore(path)
    path = _store_file(tmp_path, {f"{n:032x}": GOOD for n in range(20)})
    with pytest.raises(CountersFileError, match=r"cards: 20 cards, at most 10$"):
        FileCounterStore(path, max_cards=10)
    path = _store_file(tmp_path, {"k" * 10_000: GOOD})
    with pytest.raises(CountersFileError) as e:
        FileCounterStore(path)
    assert "k" * 97 in str(e.value) and "k" * 98 not in str(e.value)  # a hostile key is not echoed whole


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda kids: st.one_of(st.lists(kids, max_size=4),
                                           st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                    max_leaves=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cards=st.dictionaries(st.just(KEY) | st.text(max_size=40), st.dictionaries(
    st.sampled_from([*GOOD, "pan_masked", "other"]), JSON, max_size=7), max_size=3) | JSON)
def test_any_json_opens_or_is_one_counters_error(tmp_path: Path, cards: object) -> None:
    path = _store_file(tmp_path, cards)
    try:
        store = FileCounterStore(path)
    except CountersFileError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
    else:
        assert len(store) <= 3


def test_sandbox_card_with_a_damaged_counters_file_exits_with_one_line(tmp_path: Path) -> None:
    path = _store_file(tmp_path, {KEY: {**GOOD, "atc": "x"}})
    res = subprocess.run([sys.executable, "-m", "guichet", "sandbox", "card", "--profile", "cib", "--counters",
                          str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [f"Error: --counters {path}: cards.{KEY}.atc: must be an integer "
                                               "0..65535"]


# ---- issuer script commands need the issuer's MAC


def _script(card: VirtualCard, arqc: bytes, head: str, data: bytes = b"") -> bytes:
    st_ = card.emv
    assert st_ is not None
    return issuer.script_command(18, st_.keys, st_.atc.to_bytes(2, "big"), arqc, bytes.fromhex(head), data)


def test_a_script_command_runs_only_with_the_issuers_mac() -> None:
    card = VirtualCard(PROFILE)
    with Reader(card) as r:
        assert r.verify("0000") == 0x63C2
        unblock = bytes.fromhex("8424000008") + bytes(8)
        assert r.send(unblock)[1] == 0x6985  # before any ARQC: nothing to MAC against
        arqc = r.arqc()
        good = _script(card, arqc, "84240000")  # PIN CHANGE/UNBLOCK
        bad = good[:-1] + bytes([good[-1] ^ 0x01])
        assert r.send(bad)[1] == 0x6988  # secure messaging data objects incorrect
        assert r.send(good[:5] + good[5:-1])[1] == 0x6988  # a MAC cut short
        assert r.send(bytes.fromhex("8424000000"))[1] == 0x6988  # no MAC at all
        assert r.get_data(0x9F17) == 2 and card.emv is not None and card.emv.scripts == []  # nothing executed
        assert r.send(good)[1] == 0x9000
        assert r.get_data(0x9F17) == 3  # the genuine command unblocked the PIN
        block = _script(card, arqc, "841E0000")  # APPLICATION BLOCK
        assert r.send(block[:-1] + bytes([block[-1] ^ 0x80]))[1] == 0x6988 and not card.emv.blocked
        assert r.send(block)[1] == 0x9000 and card.emv.blocked
    with Reader(card) as r:  # blocked stays blocked: the next transaction is refused offline (AAC)
        data, sw = r.send(bytes([0x80, 0xAE, 0x80, 0x00, len(CDOL1_DATA)]) + CDOL1_DATA + b"\x00")
        assert sw == 0x9000 and {t.tag: t.value for t in T.decode(data)[0].children}[0x9F27] == b"\x00"


def test_scripts_with_a_wrong_mac_fail_in_the_kernel_and_the_card_executes_nothing(emv_agent, insert,  # noqa: F811
                                                                                    billing_server,
                                                                                    seeded_references) -> None:
    r = requests.put(billing_server.url + "_sandbox/issuer", json={"scripts": True, "bad_script_mac": True},
                     headers=billing_server.admin_headers(), timeout=5)
    assert r.json()["bad_script_mac"] is True
    bill = emv_agent.flow.lookup(seeded_references[15])
    executed: list[list[bytes]] = []
    with insert("cib") as link:
        result = emv_agent.flow.pay([bill], method="card_reader", cashier_id="c1")
        executed.append(list(link.card.emv.scripts) if link.card.emv else [])
        answers = [c for c in link.card.commands if c[:2] in (b"\x04\xda", b"\x84\x18")]
    assert result.status == "approved", result.message  # the issuer approved; its scripts failed on the card
    [p] = result.payments
    chip = next(ev["detail"]["emv"] for ev in reversed(emv_agent.journal.audit(p.payment_id))
                if (ev.get("detail") or {}).get("emv"))
    assert [(s["template"], s["ok"]) for s in chip["scripts"]] == [("71", False), ("72", False)]
    assert int(chip["tvr"][8:10], 16) & 0x30 == 0x30  # script processing failed before and after the final AC
    assert len(answers) == 2 and executed == [[]]  # both were sent, neither was executed


# ---- the sandbox acquirer holds a card to a growing ATC


def test_two_payments_with_one_card_and_a_fresh_card_reusing_an_atc_is_declined(emv_agent, insert,  # noqa: F811
                                                                                billing_server, seeded_references):
    store = CounterStore()
    first, p1, _, _ = _pay(emv_agent, insert, "cib", seeded_references[20])
    assert first.status == "approved", first.message
    again, p2, _, _ = _pay(emv_agent, insert, "cib", seeded_references[21])  # the same card inserted again
    assert again.status == "approved", again.message
    atcs = {a["payment_id"]: a["chip"]["atc"] for a in _authorizations(billing_server).values()}
    assert int(atcs[p2.transaction_id], 16) == int(atcs[p1.transaction_id], 16) + 1
    # a new card object with the personalisation's counters: its first ARQC repeats an ATC the issuer saw
    bill = emv_agent.flow.lookup(seeded_references[22])
    with insert("cib", counters=store):
        replay = emv_agent.flow.pay([bill], method="card_reader", cashier_id="c1")
    [p3] = replay.payments
    chip = next(ev["detail"]["emv"] for ev in reversed(emv_agent.journal.audit(p3.payment_id))
                if (ev.get("detail") or {}).get("emv"))
    assert replay.status == "declined" and chip["response_code"] == "N7"  # the issuer refused the cryptogram
    auth = _authorizations(billing_server)[p3.transaction_id]
    assert auth["chip"]["reason"].startswith(f"9F36: ATC {atcs[p1.transaction_id]} is not above the card's last")


def test_two_wrong_pins_then_reinserted_the_third_blocks_through_the_kernel(emv_agent, insert,  # noqa: F811
                                                                          billing_server, seeded_references):
    from drivers.emv.pinpad import PinPad
    from tests.cards.pinpad_double import PinPadReader

    pads: list[PinPadReader] = []

    def pad_with(entries: list[str | None]):
        def pad(conn):
            pads.append(PinPadReader(conn, entries))
            return PinPad.detect(pads[-1])
        return pad

    authorizer = emv_agent.flow.authorizers["card_reader"]
    authorizer.pin_pad = pad_with(["0000", "9999", None])  # two wrong, then the customer gives up on the pad
    _first, _p, chip, commands = _pay(emv_agent, insert, "emv_pin_only", seeded_references[23])
    assert [c[:2] for c in commands].count(b"\x00\x20") == 2 and not int(chip["tvr"][4:6], 16) & 0x20
    authorizer.pin_pad = pad_with(["0000"])  # the same card again: one try left, and it is wrong
    _second, _p, chip, commands = _pay(emv_agent, insert, "emv_pin_only", seeded_references[24])
    assert [c[:2] for c in commands].count(b"\x00\x20") == 1
    assert int(chip["tvr"][4:6], 16) & 0x20  # PIN try limit exceeded: the third wrong PIN blocked it


# ---- review 10: the file names no card, a worn-out card stops, several processes share one file


PUBLIC_AIDS = ["A0000000031010", "A0000000032010", "A0000000041010", "A0000000043060", "A0000003330101",
               "A0000006581010", "A0000000651010", "A000000025010801"]


def _candidates(masked: str) -> list[str]:
    """Every Luhn-valid card number a masked one can stand for (first 6 and last 4 shown: 10^5 of them)."""
    head, tail, hidden = masked[:6], masked[-4:], len(masked) - 10
    return [c for mid in range(10**hidden) if luhn_valid(c := f"{head}{mid:0{hidden}d}{tail}")]


def test_the_card_number_cannot_be_recovered_from_the_file_alone(tmp_path: Path) -> None:
    partial = "539912345678901"
    pan = partial + luhn_check_digit(partial)  # made up, not a test PAN
    aid = bytes.fromhex("A0000000041010")
    path = tmp_path / "card-counters.json"
    FileCounterStore(path).put(pan, aid, Counters(0x21, 0x10, 3, False))
    data = json.loads(path.read_text())
    assert set(data) == {"version", "cards"}  # nothing that would be a key: no salt
    [(name, entry)] = data["cards"].items()
    token, aid_hex = name.split(":")
    assert aid_hex == "A0000000041010" and entry["pan_masked"] == "539912******9010"[:12] + pan[-4:]
    candidates = _candidates(entry["pan_masked"])
    assert len(candidates) == 100_000 and pan in candidates
    # Everything the file holds, tried as the key, and no key at all: no candidate gives the card's name.
    text = path.read_text()
    guesses = [text.encode(), token.encode(), aid_hex.encode(), entry["pan_masked"].encode(), b"2"]
    unkeyed = {hashlib.sha256(f"{c}|{a}".encode()).hexdigest()[:32] for c in candidates for a in PUBLIC_AIDS}
    assert token[:32] not in unkeyed and all(hashlib.sha256(c.encode()).hexdigest() != token for c in candidates)
    assert not [c for c in candidates for g in guesses if pan_token(c, g) == token]
    # With the key file beside it the same search finds the card at once: the key file is what guards it.
    key = bytes.fromhex((tmp_path / "card-counters.json.key").read_text().strip())
    assert [c for c in candidates if pan_token(c, key) == token] == [pan]


def test_a_card_at_the_last_atc_refuses_every_transaction_and_stays_blocked() -> None:
    store = CounterStore()
    store.put(APP.pan, APP.aid, Counters(0xFFFE, 0xFFF0, 3, False))
    card = VirtualCard(PROFILE, counters=store)
    with Reader(card) as r:  # its last transaction: ATC FFFF
        assert r.get_data(0x9F36) == 0xFFFF
        r.arqc()
    gpo = bytes([0x83, APP.pdol_length()]) + bytes(APP.pdol_length())
    for _ in range(2):  # never wraps to 0000: GPO refused, then nothing else answers
        card.power(True)
        selected = card.apdu(bytes([0x00, 0xA4, 0x04, 0x00, len(APP.aid)]) + APP.aid + b"\x00")
        assert selected is not None and selected[-2:] == b"\x90\x00"
        assert card.apdu(bytes([0x80, 0xA8, 0x00, 0x00, len(gpo)]) + gpo + b"\x00") == b"\x69\x85"
        ac = bytes([0x80, 0xAE, 0x80, 0x00, len(CDOL1_DATA)]) + CDOL1_DATA + b"\x00"
        assert card.apdu(ac) == b"\x69\x85" and card.emv is None
        assert store.get(APP.pan, APP.aid) == Counters(0xFFFF, 0xFFF0, 3, True)  # blocked, no balance (None)
    # a file holding what a wrap would leave (last online ATC above the ATC) is refused when opened
    with pytest.raises(ValueError, match=r"^counters\.last_online_atc: must not be above the atc \(0\)$"):
        store.put(APP.pan, APP.aid, Counters(0, 0xFFFF, 3, False))


@pytest.mark.parametrize("kind", ["fifo", "directory", "device", "fifo as the key file"])
def test_a_path_that_is_not_a_regular_file_is_one_error_never_a_hang(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "c.json"
    at_fault = path
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        path.symlink_to("/dev/zero")  # endless: read whole, it would never end
    else:
        at_fault = tmp_path / "c.json.key"
        os.mkfifo(at_fault)
    code = ("import sys\nfrom sandbox.cards.counters import CountersFileError, FileCounterStore\n"
            "try:\n    FileCounterStore(sys.argv[1])\nexcept CountersFileError as e:\n    print(e)\n")
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).parents[2])
    assert (res.returncode, res.stdout, res.stderr) == (0, f"{at_fault}: not a regular file\n", "")


def test_two_stores_on_one_file_keep_each_others_cards(tmp_path: Path) -> None:
    path = tmp_path / "cards.json"
    aid = APP.aid
    a, b = FileCounterStore(path), FileCounterStore(path)  # e.g. two card processes, both started
    a.put("5399000000000008", aid, Counters(0x40, 0x3F, 3, False))
    b.put("5399000000000016", aid, Counters(0x12, 0x10, 3, False))  # later: does not drop a's card
    again = FileCounterStore(path)
    assert again.get("5399000000000008", aid) == Counters(0x40, 0x3F, 3, False)
    assert again.get("5399000000000016", aid) == Counters(0x12, 0x10, 3, False)
    a.put("5399000000000016", aid, Counters(0x13, 0x10, 3, False))  # one card, moved by another process...
    assert b.get("5399000000000016", aid) == Counters(0x13, 0x10, 3, False)  # ...is seen moved


PUTTER = """
import sys
from sandbox.cards.counters import Counters, FileCounterStore
store = FileCounterStore(sys.argv[1])
for n in range(40):
    store.put(f"{sys.argv[2]}{n:04d}", bytes.fromhex("A0000000031010"), Counters(0x20 + n, 0x10, 3, False))
print(store.write_errors)
"""


def test_two_processes_writing_one_file_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cards.json"
    procs = [subprocess.Popen([sys.executable, "-c", PUTTER, str(path), prefix], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parents[2]) for prefix in ("999101000001", "999101000002")]
    assert [p.communicate(timeout=120)[0] for p in procs] == ["0\n", "0\n"]
    store = FileCounterStore(path)
    assert len(store) == 80
    for prefix in ("999101000001", "999101000002"):
        for n in range(40):
            assert store.get(f"{prefix}{n:04d}", bytes.fromhex("A0000000031010")) == Counters(0x20 + n, 0x10, 3, False)


def test_a_write_is_durable_once_put_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "counters.json"
    store = FileCounterStore(path)
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:  # what was on disk when the directory was synced
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced.append(path.read_text() if path.exists() else "")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    store.put(APP.pan, APP.aid, Counters(0x21, 0x10, 3, False))
    assert len(synced) == 1 and '"atc": 33' in synced[0]  # the directory synced after the rename


def test_the_least_recently_used_card_goes_first_after_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    pans = [f"99910100000{n:05d}" for n in range(8)]
    store = FileCounterStore(path, max_cards=8)
    used = [3, 0, 6, 1, 7, 2, 5, 4]  # the order the cards were last used in
    for atc, n in enumerate([*range(8), *used], start=0x20):
        store.put(pans[n], APP.aid, Counters(atc, 0x10, 3, False))
    store.close()
    again = FileCounterStore(path, max_cards=8)  # the next process
    gone: list[int] = []
    for k in range(8):
        again.put(f"99920200000{k:05d}", APP.aid, Counters(0x11, 0x0F, 3, False))
        kept = {c["pan_masked"] for c in json.loads(path.read_text())["cards"].values()}
        gone += [n for n in range(8) if n not in gone and f"999101******{n:04d}" not in kept]
    assert gone == used


@pytest.mark.parametrize(("key", "message"), [
    (b"xyz", "must hold the store's key: 64 lowercase hex digits"),
    (b"ab" * 32 + b"\nmore", "must hold the store's key: 64 lowercase hex digits"),
    (b"AB" * 32, "must hold the store's key: 64 lowercase hex digits"),
    (b"", "missing, and c.json names 1 card(s) with it (delete both files to start the cards afresh)"),
    (None, "missing, and c.json names 1 card(s) with it (delete both files to start the cards afresh)"),
    ("symlink", "cannot be opened (Too many levels of symbolic links)"),
])
def test_a_bad_or_missing_key_file_is_one_error_and_its_cards_never_restart(tmp_path: Path, key: bytes | str | None,
                                                                             message: str) -> None:
    path = _store_file(tmp_path, {KEY: GOOD})
    key_path = tmp_path / "c.json.key"
    key_path.unlink()
    if key == "symlink":
        key_path.symlink_to(tmp_path / "elsewhere")
    elif isinstance(key, bytes):
        key_path.write_bytes(key)
    with pytest.raises(CountersFileError) as e:
        FileCounterStore(path)
    assert str(e.value) == f"{key_path}: {message}"
    assert json.loads(path.read_text())["cards"] == {KEY: GOOD}  # left as it was
