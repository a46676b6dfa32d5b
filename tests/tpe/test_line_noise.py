"""Arbitrary bytes from the terminal's side never crash the driver: every exchange ends in a typed Result,
within its deadlines, and an answer is only trusted when it is a well-formed frame."""

from __future__ import annotations

import os
import pty
import select
import threading
import tty
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.concert import Approved, ConcertLink, Result
from drivers.concert.eplus_codec import ACK, ENQ, EOT, NAK, STX, encode_frame, encode_response

GOOD_ANSWER = encode_frame(
    encode_response(pos_number="01", status="0", amount=100, currency_numeric="012", report="628058******1239")
)
# Pieces a broken or hostile line may carry, mixed with raw noise.
chunk = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([bytes([ACK]), bytes([NAK]), bytes([ENQ]), bytes([EOT]), bytes([STX]), GOOD_ANSWER,
                     GOOD_ANSWER[:-1] + b"\x00", GOOD_ANSWER[:20]]),
)


class Responder:
    """The far end of a raw pty: after each write from the driver, answers the next scripted chunk."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.chunks: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.02)
            if not r:
                continue
            try:
                os.read(self.master, 4096)
            except OSError:
                return
            if self.chunks:
                os.write(self.master, self.chunks.pop(0))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture(scope="module")
def responder() -> Iterator[Responder]:
    r = Responder()
    yield r
    r.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(chunk, max_size=8))
def test_arbitrary_bytes_end_in_a_typed_result(responder: Responder, chunks: list[bytes]) -> None:
    responder.chunks = list(chunks)
    link = ConcertLink(responder.path, baud=115200, framing="8N1", ack_timeout=0.03, answer_timeout=0.12,
                       max_retries=1, cancel_grace=0.05)
    result = link.pay(100, "DZD")
    assert isinstance(result, Result)
    if isinstance(result, Approved):
        assert result.response.amount == 100 and result.response.pan_masked == "628058******1239"
    if not result.amount_sent:
        assert not isinstance(result, Approved)
