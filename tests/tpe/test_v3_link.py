"""Concert V3 / Caisse-AP over real loopback TCP against the simulator: every behaviour ends in its typed
result in bounded time, ``amount_sent`` tells a certain cancel from an unknown payment, amounts go exactly.
A raw scripted peer covers answers the simulator never gives (other amount, split answers, arbitrary bytes)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.concert import (
    AmountError,
    Approved,
    Cancelled,
    LinkError,
    Ready,
    Refused,
    Result,
    Timeout,
)
from drivers.concert.v3_codec import build_request, encode_response, parse
from sandbox.tpe import TEST_CARDS, TEST_PANS

MASKED = "628058******" + TEST_CARDS["EDAHABIA"][-4:]

# behaviour -> (result type, amount_sent, what the simulator recorded)
CASES: dict[str, tuple[type[Result], bool, str | None]] = {
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
}


@pytest.mark.parametrize("behaviour", list(CASES))
def test_every_behaviour_ends_in_its_typed_result(v3_sim, v3_link, behaviour: str) -> None:
    sim = v3_sim(behaviour=behaviour)
    events: list[str] = []
    result = v3_link(sim).pay(123450, "DZD", on_event=events.append)
    kind, sent, outcome = CASES[behaviour]
    assert type(result) is kind, result
    got: Any = result
    assert result.amount_sent is sent
    assert result.definitive is (kind in (Approved, Refused, Cancelled))
    sim.wait_idle()
    if outcome is None:
        assert sim.exchanges == [] and events == []  # switched off: nothing reached it
        assert "refused" in result.message.lower()
        return
    assert sim.exchanges[-1].outcome == outcome
    # The terminal got exactly what was asked, once: never resent after it may have been taken.
    requests = [e.request for e in sim.exchanges if e.request is not None]
    assert len(requests) == 1 and requests[0].amount == 123450 and requests[0].currency_numeric == "012"
    assert events[0] == "pin_on_terminal"
    if kind is Approved:
        assert got.response.pan_masked == MASKED  # the terminal's '#' mask, kept as ours
        assert got.response.auth_code and got.response.amount == 123450
    assert all(pan not in repr(result) for pan in TEST_PANS)
    if not result.definitive:
        assert "ticket" in result.message
    if behaviour == "nak_first":
        assert result.naks_received == 1 and sim.exchanges[-1].naks_sent == 1
    if behaviour == "cancel":
        assert got.by == "terminal"


@pytest.mark.parametrize(("amount", "currency"), [(1, "DZD"), (99_999_999, "DZD"), (100_000_000, "DZD"),
                                                  (999_999_999_999, "DZD"), (12_345, "TND")])
def test_amount_edges_reach_the_terminal_exactly(v3_sim, v3_link, amount: int, currency: str) -> None:
    sim = v3_sim()
    result = v3_link(sim).pay(amount, currency)
    assert isinstance(result, Approved) and result.response.amount == amount
    sim.wait_idle()
    req = sim.exchanges[-1].request
    assert req is not None and (req.amount, req.currency_numeric) == (amount, "012" if currency == "DZD" else "788")


@pytest.mark.parametrize("amount", [0, -5, 10**12])
def test_bad_amounts_are_refused_before_anything_is_sent(v3_sim, v3_link, amount: int) -> None:
    sim = v3_sim()
    with pytest.raises(AmountError):
        v3_link(sim).pay(amount, "DZD")
    assert isinstance(v3_link(sim).check(), Ready)  # the terminal is untouched and idle
    sim.wait_idle()
    assert [e.outcome for e in sim.exchanges] == ["handshake"]


def test_cancel_before_sending_is_certain(v3_sim, v3_link) -> None:
    sim = v3_sim()
    cancel = threading.Event()
    cancel.set()
    result = v3_link(sim).pay(500, "DZD", cancel=cancel)
    assert isinstance(result, Cancelled) and not result.amount_sent
    sim.wait_idle()
    assert sim.exchanges == []


def test_cancel_after_sending_waits_for_the_terminal_then_is_unknown(v3_sim, v3_link) -> None:
    sim = v3_sim(behaviour="slow", pin_delay=5.0)
    cancel = threading.Event()
    events: list[str] = []

    def on_event(key: str) -> None:
        events.append(key)
        if key == "pin_on_terminal":
            cancel.set()

    result = v3_link(sim, answer_timeout=5.0, cancel_grace=0.3).pay(500, "DZD", cancel=cancel, on_event=on_event)
    assert events == ["pin_on_terminal", "cancel_on_terminal"]
    assert isinstance(result, Timeout) and result.amount_sent  # the TPE holds it: unknown, not cancelled


def test_cancel_after_sending_then_customer_cancels_on_the_terminal(v3_sim, v3_link) -> None:
    sim = v3_sim(behaviour="cancel", think=0.3)
    cancel = threading.Event()
    result = v3_link(sim, cancel_grace=2.0).pay(
        500, "DZD", cancel=cancel, on_event=lambda k: cancel.set() if k == "pin_on_terminal" else None
    )
    assert isinstance(result, Cancelled) and result.by == "terminal" and result.amount_sent


def test_check_connects_and_sends_nothing(v3_sim, v3_link) -> None:
    sim = v3_sim()
    assert isinstance(v3_link(sim).check(), Ready)
    sim.wait_idle()
    assert [e.outcome for e in sim.exchanges] == ["handshake"]
    off = v3_link(v3_sim(behaviour="silent")).check()
    assert isinstance(off, LinkError) and not off.amount_sent


def test_switched_on_again_it_serves(v3_sim, v3_link) -> None:
    sim = v3_sim(behaviour="silent")
    assert not v3_link(sim).pay(500, "DZD").amount_sent
    sim.behaviour = "approve"
    assert isinstance(v3_link(sim).pay(500, "DZD"), Approved)


def test_every_format_error_means_nothing_was_taken(v3_sim, v3_link) -> None:
    sim = v3_sim()
    sim.script("nak_first", "nak_first")  # the resend is approved by the simulator: use max_retries=0
    result = v3_link(sim, max_retries=0).pay(500, "DZD")
    assert isinstance(result, LinkError) and not result.amount_sent and result.naks_received == 1


# -- a raw scripted peer: answers the simulator never gives -----------------------------------------------


class RawTerminal:
    """Loopback TCP peer: per connection, read the request, then send each (delay, bytes) piece and close."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.pieces: list[tuple[float, bytes]] = []
        self.requests: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.requests.append(conn.recv(4096))
                    for delay, data in self.pieces:
                        time.sleep(delay)
                        conn.sendall(data)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def raw() -> Iterator[RawTerminal]:
    peer = RawTerminal()
    yield peer
    peer.close()


REQ = build_request(500, "DZD")


def test_done_for_another_amount_is_unknown(raw, v3_link) -> None:
    raw.pieces = [(0, encode_response(build_request(50_000, "DZD"), status="10"))]
    result = v3_link(raw.url).pay(500, "DZD")
    assert isinstance(result, LinkError) and result.amount_sent and "50000" in result.message


def test_answer_for_another_pos_is_unknown(raw, v3_link) -> None:
    raw.pieces = [(0, encode_response(build_request(500, "DZD", pos_number="02"), status="10"))]
    result = v3_link(raw.url).pay(500, "DZD")
    assert isinstance(result, LinkError) and result.amount_sent and "POS 02" in result.message


def test_an_answer_split_over_a_pause_is_reassembled(raw, v3_link) -> None:
    answer = encode_response(REQ, status="10", extra={"AA": "6280580000001239", "AC": "123456"})
    # The status first, the POS/amount/currency 0.2 s later: longer than `quiet`, but the outcome's tags are
    # not all there yet, so the link keeps reading.
    cut = answer.index(b"AE")
    raw.pieces = [(0, answer[:9] + answer[cut:]), (0.2, answer[9:cut])]
    result = v3_link(raw.url).pay(500, "DZD")
    assert isinstance(result, Approved), result
    assert result.response.pan_masked == "628058******1239"  # a full PAN from the terminal is masked at once
    assert "0000001239" not in repr(result)
    assert dict(parse(raw.requests[0]))["CB"] == "500"


def test_contradictory_answer_is_unknown(raw, v3_link) -> None:
    raw.pieces = [(0, encode_response(REQ, status="01", reason="01"))]
    result = v3_link(raw.url).pay(500, "DZD")
    assert isinstance(result, LinkError) and result.amount_sent


def test_a_request_the_terminal_could_not_take_is_cancelled(raw, v3_link) -> None:
    raw.pieces = [(0, encode_response(REQ, status="01", reason="13"))]
    result = v3_link(raw.url).pay(500, "DZD")
    assert isinstance(result, Cancelled) and "currency not supported" in result.message


def test_an_answer_cut_short_is_unknown(raw, v3_link) -> None:
    raw.pieces = [(0, encode_response(REQ, status="10")[:-4])]
    result = v3_link(raw.url).pay(500, "DZD")
    assert isinstance(result, LinkError) and result.amount_sent and "incomplete" in result.message


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=120), max_size=3))
def test_arbitrary_bytes_from_the_terminal_end_in_a_typed_result(raw, v3_link, chunks: list[bytes]) -> None:
    raw.pieces = [(0, c) for c in chunks if c]
    result = v3_link(raw.url, answer_timeout=0.5).pay(500, "DZD")
    assert isinstance(result, Result)
    assert result.amount_sent  # whatever came back, the request may have been read
    assert not isinstance(result, Approved)  # random bytes never make a valid approval of this amount
