"""What both Concert links promise, run against both simulators (E+ on a real pty, V3 on loopback TCP): every
behaviour ends in its typed result, ``amount_sent`` tells a certain cancel from an unknown payment, amounts go
exactly, a bad amount or a cancel before sending never reaches the terminal, ``check`` sends no amount."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from drivers.concert import AmountError, Approved, Cancelled, LinkError, Ready, Refused, Result, Timeout
from sandbox.tpe import TEST_CARDS, TEST_PANS

MASKED = "628058******" + TEST_CARDS["EDAHABIA"][-4:]

# protocol -> behaviour -> (result type, amount_sent, what the simulator recorded; None: nothing reached it)
CASES: dict[str, dict[str, tuple[type[Result], bool, str | None]]] = {
    "E+": {
        "approve": (Approved, True, "approved"),
        "refuse": (Refused, True, "refused"),
        "cancel": (Cancelled, True, "cancelled"),
        "slow": (Approved, True, "approved"),
        "nak_first": (Approved, True, "approved"),
        "bad_lrc": (Approved, True, "approved"),
        "bad_lrc_always": (LinkError, True, "aborted"),
        "no_answer": (Timeout, True, "no_answer"),
        "silent": (Timeout, False, "silent"),
        "garbage": (Approved, True, "approved"),
        "unplug": (LinkError, True, "unplugged"),
    },
    "V3": {
        "approve": (Approved, True, "approved"),
        "refuse": (Refused, True, "refused"),
        "cancel": (Cancelled, True, "cancelled"),
        "slow": (Approved, True, "approved"),
        "nak_first": (Approved, True, "approved"),
        "malformed": (LinkError, True, "malformed"),
        "no_answer": (Timeout, True, "no_answer"),
        "silent": (LinkError, False, None),
        "garbage": (Approved, True, "approved"),
        "fragmented": (Approved, True, "approved"),
        "unplug": (LinkError, True, "unplugged"),
    },
}
# NAKs the E+ link answers (V3 has none: a TCP answer is never resent)
NAKS_SENT = {"bad_lrc": 1, "bad_lrc_always": 4}  # 4: 1 + max_retries, then unknown, never guessed


@pytest.mark.parametrize(("protocol", "behaviour"), [(p, b) for p in CASES for b in CASES[p]])
def test_every_behaviour_ends_in_its_typed_result(terminals, protocol: str, behaviour: str) -> None:
    t = terminals[protocol]
    sim = t.sim(behaviour=behaviour)
    events: list[str] = []
    result = t.link(sim).pay(123450, "DZD", on_event=events.append)
    kind, sent, outcome = CASES[protocol][behaviour]
    assert type(result) is kind, result
    got: Any = result
    assert result.amount_sent is sent
    assert result.definitive is (kind in (Approved, Refused, Cancelled))
    assert all(pan not in repr(result) for pan in TEST_PANS)
    sim.wait_idle()
    if outcome is None:
        assert sim.exchanges == [] and events == []  # switched off: nothing reached it
        assert "refused" in result.message.lower()
        return
    assert sim.exchanges[-1].outcome == outcome
    if sent:
        # The terminal got exactly what was asked, once: never resent after it may have been taken.
        requests = [e.request for e in sim.exchanges if e.request is not None]
        assert len(requests) == 1 and requests[0].amount == 123450 and requests[0].currency_numeric == "012"
        assert events[0] == "pin_on_terminal"
    if kind is Approved:
        assert got.response.pan_masked == MASKED  # V3: the terminal's '#' mask, kept as ours
        assert got.response.auth_code and got.response.amount == 123450
    if kind is Cancelled:
        assert got.by == "terminal"
    if behaviour == "nak_first":
        assert result.naks_received == 1 and sim.exchanges[-1].naks_sent == 1
    if protocol == "E+" and behaviour in NAKS_SENT:
        assert result.naks_sent == NAKS_SENT[behaviour]
    if protocol == "V3" and not result.definitive:
        assert "ticket" in result.message


AMOUNTS = {
    "E+": [(1, "DZD"), (99_999_999, "DZD"), (12_345, "TND")],  # 8 digits
    "V3": [(1, "DZD"), (99_999_999, "DZD"), (100_000_000, "DZD"), (999_999_999_999, "DZD"), (12_345, "TND")],
}


@pytest.mark.parametrize(("protocol", "amount", "currency"), [(p, *a) for p in AMOUNTS for a in AMOUNTS[p]])
def test_amount_edges_reach_the_terminal_exactly(terminals, protocol: str, amount: int, currency: str) -> None:
    t = terminals[protocol]
    sim = t.sim()
    result = t.link(sim).pay(amount, currency)
    assert isinstance(result, Approved) and result.response.amount == amount
    sim.wait_idle()
    req = sim.exchanges[-1].request
    assert req is not None and (req.amount, req.currency_numeric) == (amount, "012" if currency == "DZD" else "788")


BAD_AMOUNTS = {"E+": [0, -5, 100_000_000], "V3": [0, -5, 10**12]}


@pytest.mark.parametrize(("protocol", "amount"), [(p, a) for p in BAD_AMOUNTS for a in BAD_AMOUNTS[p]])
def test_bad_amounts_are_refused_before_anything_is_sent(terminals, protocol: str, amount: int) -> None:
    t = terminals[protocol]
    sim = t.sim()
    with pytest.raises(AmountError):
        t.link(sim).pay(amount, "DZD")
    assert isinstance(t.link(sim).check(), Ready)  # the terminal is untouched and idle
    sim.wait_idle()
    assert [e.outcome for e in sim.exchanges] == ["handshake"]


def test_cancel_before_sending_is_certain(terminal) -> None:
    sim = terminal.sim()
    cancel = threading.Event()
    cancel.set()
    result = terminal.link(sim).pay(500, "DZD", cancel=cancel)
    assert isinstance(result, Cancelled) and not result.amount_sent
    sim.wait_idle()
    assert sim.exchanges == []


def test_cancel_after_sending_waits_for_the_terminal_then_is_unknown(terminal) -> None:
    sim = terminal.sim(behaviour="slow", pin_delay=5.0)
    cancel = threading.Event()
    events: list[str] = []

    def on_event(key: str) -> None:
        events.append(key)
        if key == "pin_on_terminal":
            cancel.set()

    link = terminal.link(sim, answer_timeout=5.0, cancel_grace=0.3)
    result = link.pay(500, "DZD", cancel=cancel, on_event=on_event)
    assert events == ["pin_on_terminal", "cancel_on_terminal"]
    assert isinstance(result, Timeout) and result.amount_sent  # the TPE holds it: unknown, not cancelled


def test_cancel_after_sending_then_customer_cancels_on_the_terminal(terminal) -> None:
    sim = terminal.sim(behaviour="cancel", think=0.3)
    cancel = threading.Event()
    result = terminal.link(sim, cancel_grace=2.0).pay(
        500, "DZD", cancel=cancel, on_event=lambda k: cancel.set() if k == "pin_on_terminal" else None
    )
    assert isinstance(result, Cancelled) and result.by == "terminal" and result.amount_sent


# What a switched-off terminal looks like to ``check``: no ACK to ENQ (E+), the connection refused (V3).
OFF = {"E+": Timeout, "V3": LinkError}


def test_check_sends_no_amount(terminal) -> None:
    sim = terminal.sim()
    assert isinstance(terminal.link(sim).check(), Ready)
    sim.wait_idle()
    assert [e.outcome for e in sim.exchanges] == ["handshake"]
    off = terminal.link(terminal.sim(behaviour="silent"), ack_timeout=0.1).check()
    assert type(off) is OFF[terminal.protocol] and not off.amount_sent
