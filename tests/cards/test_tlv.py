"""The BER-TLV codec, DOL building and scheme rules: no reader needed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.schema import SchemeRule
from drivers.emv import tlv as T
from drivers.emv.dol import build_dol, parse_dol
from drivers.emv.schemes import detect_scheme


def _tag_strategy(constructed: bool) -> st.SearchStrategy[int]:
    cls_bits = st.sampled_from([0x00, 0x40, 0x80, 0xC0])
    c_bit = 0x20 if constructed else 0x00
    # 00 is padding between objects, never a tag.
    one = st.builds(lambda c, n: c | c_bit | n, cls_bits, st.integers(0, 0x1E)).filter(bool)
    # Multi-byte: 1F marker, then 1 to 3 bytes with continuation bits on all but the last.
    tail = st.lists(st.integers(0x00, 0x7F), min_size=1, max_size=3).map(
        lambda bs: bytes([b | 0x80 for b in bs[:-1]] + [bs[-1]])
    )
    multi = st.builds(lambda c, t: int.from_bytes(bytes([c | c_bit | 0x1F]) + t, "big"), cls_bits, tail)
    return st.one_of(one, multi)


primitive = st.builds(lambda tag, v: T.TLV(tag, value=v), _tag_strategy(False), st.binary(max_size=300))


def _nodes(children: st.SearchStrategy[T.TLV]) -> st.SearchStrategy[T.TLV]:
    return st.builds(lambda tag, kids: T.TLV(tag, children=tuple(kids)), _tag_strategy(True),
                     st.lists(children, max_size=4))


trees = st.recursive(primitive, _nodes, max_leaves=12)


@given(st.lists(trees, max_size=5))
@settings(max_examples=300, deadline=None)
def test_decode_of_encode_is_identity(items: list[T.TLV]) -> None:
    assert T.decode(T.encode(items)) == items


@given(st.binary(max_size=400))
@settings(max_examples=1000, deadline=None)
def test_arbitrary_bytes_raise_only_the_codec_error(data: bytes) -> None:
    try:
        items = T.decode(data)
    except T.TLVError as e:
        assert 0 <= e.offset <= len(data)
        assert str(e).startswith("TLV: ")
    else:
        # Whatever decodes re-encodes to something that decodes the same (canonical form).
        assert T.decode(T.encode(items)) == items


@given(st.binary(min_size=1, max_size=60))
@settings(max_examples=300, deadline=None)
def test_arbitrary_dols_raise_only_the_codec_error(data: bytes) -> None:
    try:
        entries = parse_dol(data)
    except T.TLVError:
        return
    assert len(build_dol(data, {})) == sum(n for _, n in entries)


@pytest.mark.parametrize(
    ("hexdata", "offset", "fragment"),
    [
        ("5A0847", 1, "runs past the end"),
        ("9F", 0, "tag starting 9F is truncated"),
        ("5F24", 2, "length of tag 5F24 is missing"),
        ("5A8201", 1, "length of tag 5A is truncated"),
        ("5A80", 1, "indefinite length"),
        ("5A850000000001", 1, "uses 5 bytes"),
        ("7003" "5A0247", 3, "runs past the end"),  # inner length past the template
        ("9FFFFFFF01", 0, "longer than 4 bytes"),
    ],
)
def test_malformed_input_names_the_offset(hexdata: str, offset: int, fragment: str) -> None:
    with pytest.raises(T.TLVError) as exc:
        T.decode(bytes.fromhex(hexdata))
    assert exc.value.offset == offset
    assert fragment in str(exc.value)
    assert str(exc.value).endswith(f"at byte {offset}")


def test_long_lengths_and_multibyte_tags() -> None:
    value = bytes(range(200))
    raw = T.encode(T.tlv(0x70, [T.tlv(0x9F46, value), T.tlv(0x5F24, b"\x28\x05\x31")]))
    assert raw[:3] == b"\x70\x81\xd2"  # 210 bytes: long form
    assert raw[3:6] == b"\x9f\x46\x81"
    items = T.decode(raw)
    assert T.find_value(items, 0x9F46) == value
    assert T.find_value(items, 0x5F24) == b"\x28\x05\x31"
    assert T.decode(bytes.fromhex("5A8101AA")) == [T.TLV(0x5A, value=b"\xaa")]  # non-minimal length accepted
    assert T.decode(bytes.fromhex("00005A01AA00")) == [T.TLV(0x5A, value=b"\xaa")]  # 00 padding skipped


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    data = b""
    for _ in range(40):
        data = b"\x70" + T.encode_length(len(data)) + data
    with pytest.raises(T.TLVError, match="nested deeper"):
        T.decode(data)


def test_repr_never_shows_values() -> None:
    node = T.tlv(0x5A, bytes.fromhex("4111111111111111"))
    assert "4111" not in repr(node) and "5A" in repr(node)


dol_entries = st.lists(st.tuples(st.sampled_from([0x9F02, 0x5F2A, 0x9A, 0x9F37, 0xDF01, 0x9F7A]),
                                  st.integers(0, 0x7F)), max_size=12)


@given(dol_entries, st.integers(0, 300))
@settings(max_examples=300, deadline=None)
def test_dol_building_emits_exactly_what_is_asked_within_the_limit(entries: list[tuple[int, int]],
                                                                   limit: int) -> None:
    dol = b"".join(T.tag_bytes(tag) + bytes([n]) for tag, n in entries)
    data = {0x9F02: bytes.fromhex("000000012345"), 0x5F2A: b"\x00\x12", 0x9A: b"\x26\x11\x30", 0x9F37: b"abcd"}
    total = sum(n for _, n in entries)
    assert len(build_dol(dol, data)) == total  # a zero-length entry emits nothing
    if total > limit:
        with pytest.raises(T.TLVError, match=f"more than {limit} bytes"):
            build_dol(dol, data, limit=limit)
    else:
        assert len(build_dol(dol, data, limit=limit)) == total


def test_a_zero_length_dol_entry_emits_nothing() -> None:
    # value[-0:] is the whole value: a numeric tag of length 0 used to emit its 6 bytes.
    assert build_dol(bytes.fromhex("9F0200" "5F2A02"), {0x9F02: bytes(6), 0x5F2A: b"\x00\x12"}) == b"\x00\x12"


def test_dol_padding_follows_the_data_format() -> None:
    dol = bytes.fromhex("9F02049F1A035F2D039F3702")
    out = build_dol(dol, {0x9F02: bytes.fromhex("000000012345"), 0x9F1A: b"\x00\x12", 0x5F2D: b"frar",
                          0x9F37: b"\x01\x02\x03\x04"})
    # numeric: cut/padded on the left; others: on the right.
    assert out.hex() == "00012345" + "000012" + "667261" + "0102"
    assert build_dol(bytes.fromhex("9F7A01"), {}) == b"\x00"  # unknown tag: zeros


RULES = [
    SchemeRule(name="CIB", aids=["A0000009990101"], bins=["999101"], labels=["CIB"]),
    SchemeRule(name="EDAHABIA", aids=["A0000009990201"], bins=["999201"], labels=["EDAHABIA"]),
    SchemeRule(name="VISA", aids=["A0000000031010"], bins=["4"]),
    SchemeRule(name="MASTERCARD", aids=["A0000000041010"], bins=["51-55", "2221-2720"]),
]


@pytest.mark.parametrize(
    ("aid", "pan", "label", "scheme"),
    [
        ("A0000009990101", "4111111111111111", "", "CIB"),  # AID wins over BIN
        ("A000000999010101", "", "", "CIB"),  # the card's AID extends the configured one
        ("A0000000999999", "9992010000000000", "", "EDAHABIA"),  # then BIN prefix
        ("", "2221000000000009", "", "MASTERCARD"),  # BIN range, 4 digits
        ("", "2720990000000000", "", "MASTERCARD"),
        ("", "2721000000000000", "", "OTHER"),
        ("", "5600000000000000", "", "OTHER"),
        ("", "3000000000000000", "Carte CIB Banque", "CIB"),  # then label, case-insensitive
        ("", "3000000000000000", "SOMETHING", "OTHER"),
    ],
)
def test_scheme_rules(aid: str, pan: str, label: str, scheme: str) -> None:
    assert detect_scheme(RULES, aid=aid, pan=pan, label=label) == scheme


# ----------------------------------------------------------------------------- reader robustness, no reader
# The virtual card answers in-process here (no pcscd): hypothesis throws garbage at every step of the
# sequence and the reader must only ever raise its own typed errors.


class _Direct:
    """Hands APDUs straight to a sandbox VirtualCard (what vpcd does, minus the sockets)."""

    def __init__(self, card: object) -> None:
        self.card = card
        self.interface = "contact"

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        resp = self.card.apdu(apdu)  # type: ignore[attr-defined]
        assert resp is not None and len(resp) >= 2
        return resp[:-2], int.from_bytes(resp[-2:], "big")


@given(
    st.sampled_from(["SELECT PSE", "READ RECORD", "SELECT AID", "GPO"]),
    st.one_of(st.binary(max_size=80), st.binary(max_size=60).map(lambda b: b"\x6f" + bytes([len(b)]) + b)),
    st.sampled_from(["cib", "edahabia", "t0", "visa_cl", "dol_zero_length", "pdol_huge", "afl_flood"]),
)
@settings(max_examples=400, deadline=None)
def test_reader_survives_garbage_answers(command: str, garbage: bytes, name: str) -> None:
    import dataclasses

    from drivers.emv import CardData, EmvError, EmvReader
    from sandbox.cards.card import VirtualCard
    from sandbox.cards.profiles import PROFILES, sandbox_cards_config

    prof = dataclasses.replace(PROFILES[name], garbage={command: garbage})
    transport = _Direct(VirtualCard(prof))
    transport.interface = prof.interface
    cfg = sandbox_cards_config()
    try:
        card = EmvReader(transport, schemes=[SchemeRule(**r) for r in cfg["schemes"]], aids=cfg["aids"],
                         hmac_key="k").read()
    except EmvError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert isinstance(card, CardData)
        card.wipe()


afl_entry = st.builds(lambda sfi, first, span, n: bytes([sfi << 3, first, min(255, first + span), n]),
                      st.integers(0, 31), st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))
afls = st.one_of(st.binary(max_size=260), st.lists(afl_entry, max_size=63).map(b"".join))
pdols = st.one_of(st.none(), st.binary(max_size=40),
                  st.lists(st.tuples(st.sampled_from([b"\x9f\x02", b"\xdf\x01", b"\x9a"]), st.integers(0, 0x7F)),
                           max_size=6).map(lambda es: b"".join(t + bytes([n]) for t, n in es)))


@given(afls, pdols, st.booleans())
@settings(max_examples=300, deadline=None)
def test_reader_bounds_any_afl_and_pdol(afl: bytes, pdol: bytes | None, format2: bool) -> None:
    """Whatever AFL and PDOL a card gives (every record answers 9000), the read ends in a typed error or a
    card, within MAX_RECORDS READ RECORDs and never sending more than 255 bytes of command data."""
    import dataclasses

    from drivers.emv import CardData, EmvError, EmvReader
    from drivers.emv.reader import MAX_APDUS, MAX_RECORDS
    from sandbox.cards.card import VirtualCard
    from sandbox.cards.profiles import PROFILES, sandbox_cards_config

    base = PROFILES["afl_flood"]
    app = dataclasses.replace(base.apps[0], afl=afl, pdol=pdol, gpo_format=2 if format2 else 1)
    card = VirtualCard(dataclasses.replace(base, apps=[app]))
    sent: list[bytes] = []

    class Spy(_Direct):
        def transmit(self, apdu: bytes) -> tuple[bytes, int]:
            sent.append(apdu)
            return super().transmit(apdu)

    cfg = sandbox_cards_config()
    try:
        got = EmvReader(Spy(card), schemes=[SchemeRule(**r) for r in cfg["schemes"]], aids=cfg["aids"],
                        hmac_key="k").read()
    except EmvError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert isinstance(got, CardData)
        got.wipe()
    assert len([a for a in sent if a[1] == 0xB2]) <= MAX_RECORDS + 2 and len(sent) <= MAX_APDUS  # + PSE directory
    assert all(len(a) <= 4 + 1 + 255 + 1 for a in sent)
