"""Every virtual card profile read through the real pcscd + vpcd, with pyscard, as a hardware reader is."""

from __future__ import annotations

import copy
import json
import logging
import pickle
import threading
import time
from typing import Any

import pytest

from agent.cards import CardCancelled, CardExpired, CardReadError, CardTimeout, read_card
from drivers import pcsc
from drivers.emv import CardData, CardDataError, CardStatusError, EmvReader, PanWiped
from drivers.pan import mask_pan, pan_token
from sandbox.cards.profiles import PROFILES, TEST_PANS, sandbox_cards_config

pytestmark = pytest.mark.pcsc

GOOD = [name for name, p in PROFILES.items() if p.expect_error is None]
BAD = [name for name, p in PROFILES.items() if p.expect_error is not None]
KEY = sandbox_cards_config()["hmac_key"]


def _read(reader: str, cfg: Any, deadline: float | None = None) -> tuple[CardData, pcsc.Connection]:
    from agent.cards import terminal_for

    with pcsc.connect(reader) as conn:
        card = EmvReader(conn, schemes=cfg.cards.schemes, aids=cfg.cards.aids, terminal=terminal_for(cfg),
                         hmac_key=KEY, deadline=deadline).read()
    return card, conn


def test_every_profile_has_a_luhn_valid_test_pan() -> None:
    from drivers.pan import luhn_valid

    assert set(TEST_PANS) == {p.pan for p in PROFILES.values()}
    assert all(luhn_valid(pan) for pan in TEST_PANS)
    assert {"cib", "edahabia", "visa_cl", "mastercard_cl", "nopse", "t0", "track2", "twoapps", "expired",
            "pulled", "garbage_truncated", "garbage_overrun", "garbage_6f00", "garbage_wrong_tag",
            "garbage_wrong_length", "pdol_huge", "afl_flood", "bytes_flood", "dol_zero_length",
            "slow"} <= set(PROFILES)


@pytest.mark.parametrize("name", GOOD)
def test_profile_reads_correctly(name: str, insert: Any, vpcd_reader: str, cards_config: Any) -> None:
    prof = PROFILES[name]
    with insert(name) as link:
        card, conn = _read(vpcd_reader, cards_config)
        seen = link.apdus
    assert card.scheme == prof.scheme
    assert card.pan_masked == mask_pan(prof.pan)
    assert card.pan_token == pan_token(prof.pan, KEY)
    assert card.expiry == prof.expiry
    assert card.interface == prof.interface
    assert card.aid == (prof.apps[-1].aid if name == "twoapps" else prof.apps[0].aid).hex().upper()
    assert card.apdu_count == prof.expected_apdus == seen == conn.transmit_count
    assert card.expired == (name == "expired")
    assert card.reader == vpcd_reader and card.atr == prof.atr.hex().upper()
    assert (conn.protocol_name == "T=0") == prof.atr.startswith(bytes.fromhex("3BF9"))
    # The full PAN: never in what is shown or stored, handed out exactly once.
    shown = repr(card) + str(card) + json.dumps(card.to_dict()) + json.dumps(card.payment_card())
    assert prof.pan not in shown
    assert card.take_pan() == prof.pan
    with pytest.raises(PanWiped):
        card.take_pan()


def test_labels_language_and_sequence(insert: Any, vpcd_reader: str, cards_config: Any) -> None:
    with insert("edahabia"):
        card, _ = _read(vpcd_reader, cards_config)
    assert (card.label, card.preferred_name, card.display_label) == ("EDAHABIA TEST", "Edahabia", "Edahabia")
    assert card.language == "arfr" and card.pan_sequence == "01" and card.issuer_country == "012"
    card.wipe()


@pytest.mark.parametrize("name", BAD)
def test_broken_cards_give_a_typed_clear_error(name: str, insert: Any, vpcd_reader: str, cards_config: Any) -> None:
    prof = PROFILES[name]
    # A stalling card is an error only under a read time limit shorter than its answers.
    deadline = time.monotonic() + prof.apdu_delay / 2 if prof.apdu_delay else None
    with insert(name), pytest.raises(Exception) as exc:
        _read(vpcd_reader, cards_config, deadline)
    assert type(exc.value).__name__ == prof.expect_error
    msg = str(exc.value)
    assert msg and "\n" not in msg
    if isinstance(exc.value, CardDataError) and exc.value.offset is not None:
        assert "at byte" in msg
    if isinstance(exc.value, CardStatusError):
        assert exc.value.sw == 0x6F00 and "6F00" in msg


def test_cards_without_the_right_application_are_refused_clearly(insert: Any, vpcd_reader: str) -> None:
    import config

    cfg = config.validate({"cards": sandbox_cards_config(aids=["A0000000651010"])})  # the card has no such AID
    with insert("nopse"), pytest.raises(Exception) as exc:
        _read(vpcd_reader, cfg)
    assert type(exc.value).__name__ == "NoApplication"


def test_default_config_has_no_cib_or_edahabia_rules(insert: Any, vpcd_reader: str) -> None:
    import config

    cfg = config.validate({"cards": {"hmac_key": KEY}})
    with insert("cib"):
        card, _ = _read(vpcd_reader, cfg)
    assert card.scheme == "OTHER" and card.display_label == "CIB TEST"  # the cashier sees the label
    card.wipe()


def test_pan_cannot_be_copied_or_pickled(insert: Any, vpcd_reader: str, cards_config: Any) -> None:
    import dataclasses

    with insert("visa_cl"):
        card, _ = _read(vpcd_reader, cards_config)
    with pytest.raises(TypeError):
        pickle.dumps(card)
    with pytest.raises(TypeError):
        copy.deepcopy(card)
    assert "4111111111111111" not in json.dumps(dataclasses.asdict(card))
    with card.pan_in_memory() as pan:
        assert pan == "4111111111111111"
    assert not card.has_pan


# ----------------------------------------------------------------------------- agent.read_card


def test_read_card_for_a_payment(insert: Any, cards_config: Any, caplog: pytest.LogCaptureFixture) -> None:
    statuses: list[str] = []
    caplog.set_level(logging.DEBUG)
    with insert("cib"):
        card = read_card(cards_config, threading.Event(), 5, on_status=statuses.append)
    assert statuses == ["insert_card", "reading_card"]
    assert card.payment_card() == {"scheme": "CIB", "pan_masked": mask_pan(PROFILES["cib"].pan),
                                   "pan_token": pan_token(PROFILES["cib"].pan, KEY), "expiry": "2028-05",
                                   "aid": "A0000009990101"}
    card.wipe()
    assert not any(pan in caplog.text for pan in TEST_PANS)


def test_read_card_refuses_an_expired_card(insert: Any, cards_config: Any) -> None:
    with insert("expired"), pytest.raises(CardExpired, match="2019-08"):
        read_card(cards_config, threading.Event(), 5)


def test_read_card_pulled_out_is_a_clear_error(insert: Any, cards_config: Any) -> None:
    with insert("pulled"), pytest.raises(CardReadError) as exc:
        read_card(cards_config, threading.Event(), 5)
    assert exc.value.kind == "CardRemoved" and "removed" in str(exc.value)


def test_read_card_times_out_and_can_be_cancelled(vpcd_reader: str, cards_config: Any) -> None:
    from tests.cards.conftest import vpcd_lock, wait_presence

    with vpcd_lock():
        wait_presence(vpcd_reader, False)
        with pytest.raises(CardTimeout):
            read_card(cards_config, threading.Event(), 0.3, reader=vpcd_reader)
        cancel = threading.Event()
        threading.Timer(0.2, cancel.set).start()
        with pytest.raises(CardCancelled):
            read_card(cards_config, cancel, 30, reader=vpcd_reader)


def test_read_card_needs_the_company_key(insert: Any) -> None:
    import config

    cfg = config.validate({"cards": sandbox_cards_config(hmac_key="")})
    with insert("visa_cl"), pytest.raises(CardReadError, match="hmac_key"):
        read_card(cfg, threading.Event(), 5)
