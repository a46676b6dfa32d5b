"""Concert E+ codecs: frames, LRC, request/response records, amounts at the edges of the 8-digit field."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.concert import AmountError, ConcertError
from drivers.concert.eplus_codec import (
    ETX,
    STX,
    FrameError,
    LrcError,
    Request,
    Response,
    build_request,
    decode_frame,
    encode_frame,
    encode_response,
    lrc,
)
from sandbox.tpe import TEST_PANS

printable = st.binary(min_size=0, max_size=120).map(lambda b: bytes(0x20 + x % 95 for x in b))


@given(printable)
def test_frame_round_trip(payload: bytes) -> None:
    frame = encode_frame(payload)
    assert frame[0] == STX and frame[-2] == ETX
    assert decode_frame(frame) == payload


@given(st.binary(max_size=300))
def test_lrc_of_body_and_lrc_is_zero(data: bytes) -> None:
    # XOR of everything after STX, LRC included, is 0: what a receiver checks.
    assert lrc(data + bytes([lrc(data)])) == 0


@given(printable, st.data())
def test_any_single_byte_change_is_detected(payload: bytes, data: st.DataObject) -> None:
    frame = bytearray(encode_frame(payload))
    i = data.draw(st.integers(1, len(frame) - 1))
    flip = data.draw(st.integers(1, 255))
    frame[i] ^= flip
    with pytest.raises(FrameError):
        decode_frame(bytes(frame))


@given(st.binary(max_size=100))
def test_decoding_arbitrary_bytes_only_raises_frame_errors(data: bytes) -> None:
    try:
        payload = decode_frame(data)
    except FrameError:
        return
    for decode in (Request.decode, Response.decode):
        try:
            decode(payload)
        except FrameError:
            pass


def test_lrc_error_names_both_bytes() -> None:
    frame = bytearray(encode_frame(b"0123"))
    frame[-1] ^= 0x01
    with pytest.raises(LrcError, match=r"LRC byte is 0x.., computed 0x.."):
        decode_frame(bytes(frame))


def test_control_byte_in_payload_is_refused_naming_it() -> None:
    with pytest.raises(FrameError, match="payload byte 2 is 0x03"):
        encode_frame(b"01\x0399")


@given(
    st.integers(1, 99_999_999),
    st.sampled_from(["DZD", "TND", "EUR"]),
    st.integers(0, 99).map(lambda n: f"{n:02d}"),
)
def test_request_round_trip(amount: int, cur: str, pos: str) -> None:
    req = build_request(amount, cur, pos_number=pos)
    back = Request.decode(decode_frame(encode_frame(req.encode())))
    assert back == req
    assert back.amount == amount


@pytest.mark.parametrize(
    ("amount", "currency", "field"),
    [(1, "DZD", b"00000001012"), (99_999_999, "DZD", b"99999999012"), (12_345, "TND", b"00012345788")],
)
def test_amount_edges_sent_exactly(amount: int, currency: str, field: bytes) -> None:
    payload = build_request(amount, currency).encode()
    assert payload[2:10] + payload[13:16] == field
    assert len(payload) == 34


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (0, "amount: 0"),
        (-1, "negative"),
        (100_000_000, "9 digits; the Concert amount field holds 8"),
        (10**12, "13 digits"),
        (12.5, "not an integer"),
        (True, "not an integer"),
    ],
)
def test_amounts_refused_before_anything_is_built(amount: object, message: str) -> None:
    with pytest.raises(AmountError, match=message):
        build_request(amount, "DZD")  # type: ignore[arg-type]


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(ConcertError, match="currency"):
        build_request(100, "XXX")


@pytest.mark.parametrize("pan", TEST_PANS)
def test_response_keeps_only_the_masked_pan(pan: str) -> None:
    # A real terminal may put the full PAN in the report: decoding masks it and drops the rest.
    payload = encode_response(
        pos_number="01", status="0", amount=123450, currency_numeric="012", report=f"{pan} 2812 SOMETHING"
    )
    r = Response.decode(payload)
    assert r.approved and r.amount == 123450 and r.extended
    assert r.pan_masked == pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
    assert pan not in repr(r)
    assert "2812" not in repr(r)


def test_short_answer_and_empty_report() -> None:
    short = Response.decode(encode_response(pos_number="01", status="7", amount=5, currency_numeric="788", report=None))
    assert not short.extended and short.pan_masked is None and short.status == "7"
    empty = Response.decode(encode_response(pos_number="01", status="7", amount=5, currency_numeric="788", report=""))
    assert empty.extended and not empty.card_presented


def test_answer_of_wrong_length_is_a_frame_error() -> None:
    with pytest.raises(FrameError, match="answer payload is 10 bytes"):
        Response.decode(b"0100000001")


@settings(max_examples=50)
@given(st.text(alphabet="0123456789* ", max_size=55))
def test_report_never_yields_a_long_digit_run(report: str) -> None:
    r = Response.decode(encode_response(pos_number="01", status="0", amount=1, currency_numeric="012", report=report))
    if r.pan_masked is not None:
        assert "*" in r.pan_masked or len(r.pan_masked) < 12

