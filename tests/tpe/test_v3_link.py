"""Concert V3 / Caisse-AP over real loopback TCP, where it is V3's own: a terminal switched off and on again,
format errors (TCP's NAK), and a raw scripted peer for answers the simulator never gives (other amount, split
answers, arbitrary bytes). What every link promises (each behaviour's result, amounts, cancels, check) is in
test_links.py, run against both protocols."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.concert import Approved, Cancelled, LinkError, Result
from drivers.concert.v3_codec import build_request, encode_response, parse


def test_switched_on_again_it_serves(v3_sim, v3_link) -> None:
    sim = v3_sim(behaviour="silent")
    assert not v3_link(sim).pay(500, "DZD").amount_sent
    sim.behaviour = "approve"
    assert isinstance(v3_link(sim).pay(500, "DZD"), Approved)


def test_a_long_session_of_approvals_stays_approved(v3_sim, v3_link) -> None:
    """The simulator's authorisation codes never join its private data into a "card number" (they did from
    the 104th approval on, which the benchmark's 200 runs met)."""
    sim = v3_sim()
    link = v3_link(sim, quiet=0.0)
    results = [link.pay(500, "DZD") for _ in range(120)]
    assert [r.kind for r in results] == ["approved"] * 120


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
