"""Hostile billing server answers (issue 12): each one is one typed error or a skipped item, never a traceback.

A stub server on 127.0.0.1 serves exactly the broken bytes over real HTTP; the sane side is the sandbox.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.billing import (
    MAX_BODY,
    MAX_FEED_BODY,
    RETRY_AFTER_CAP,
    BillingClient,
    feed_cap,
    json_shape,
    parse_json,
    parse_retry_after,
)
from agent.bills import BillCache
from agent.errors import ApiError, BadAnswer, ServerUnreachable
from agent.sync import SyncWorker
from contract import models
from tests.core.conftest import recorded_ids, with_changes
from tests.core.stub_server import RawServer, StubServer, json_answer
from tests.core.test_review_fixes import requests_forward


def _bill(ref: str, **over: object) -> dict[str, object]:
    bill: dict[str, object] = {
        "reference": ref, "contract": "07-118-00423", "customer_name": "B. Amel", "service": "water",
        "period": "2026-T3", "issued_on": "2026-10-05", "due_on": "2026-11-15", "amount_due": 345600,
        "currency": "DZD", "status": "unpaid", "agency_id": "ORAN-07", "customer_id": "C-0071182", "version": 3,
    }
    bill.update(over)
    return bill


def _client(cfg, url: str, **server: object) -> BillingClient:
    return BillingClient(with_changes(cfg, server={"url": url, **server}))


def _pay_cash(agent, refs: list[str]) -> list[str]:
    return [agent.flow.pay([agent.flow.lookup(r)], method="cash", cashier_id="c").payments[0].payment_id
            for r in refs]


# -- the batch answer -------------------------------------------------------------------------------------

def test_a_batch_result_whose_error_is_a_string_is_one_error_and_nothing_is_marked(
        agent, billing_server, seeded_references):
    ids = _pay_cash(agent, seeded_references[:3])
    forward = requests_forward(billing_server)
    garbage = {"on": True}

    def handler(method, path, body):
        if garbage["on"] and path.endswith("/payments/batch"):
            forward(method, path, body)  # the server recorded them; only the answer is broken
            return json_answer(200, {"results": [{"payment_id": p["payment_id"], "status": "rejected",
                                                  "error": "invalid_payment"} for p in body["payments"]]})
        return forward(method, path, body)

    with StubServer(handler) as stub:
        cfg = with_changes(agent.config, server={"url": stub.url})
        worker = SyncWorker(cfg, agent.journal, BillingClient(cfg))
        report, _ = worker.step()
        assert report.error == "billing server: batch answer: results[0].error: should be a valid dictionary or " \
            "instance of ErrorDetail (and 2 more)"
        assert {p.state for p in agent.journal.list()} == {"approved"}  # nothing marked sent, nor rejected
        assert worker.status().last_error == report.error and worker.status().online is False
        garbage["on"] = False
        report, _ = worker.step()
    assert report.error is None and report.duplicates == 3 and report.remaining == 0
    assert sorted(recorded_ids(billing_server)) == sorted(ids)


@pytest.mark.parametrize("results, fault", [
    ({"results": "ok"}, "results: should be a valid list"),
    ({"results": [{"payment_id": "x", "status": "maybe"}]}, "results[0].status: not one of"),
    ({"results": [{"payment_id": 7, "status": "accepted"}]}, "results[0].payment_id: should be a valid string"),
    ([1, 2], "body: should be a valid dictionary"),
    (None, "body: should be a valid dictionary"),
])
def test_a_batch_answer_outside_the_contract_names_the_field(billing_config, results, fault):
    with StubServer(lambda m, p, b: json_answer(200, results)) as stub:
        with pytest.raises(BadAnswer) as e:
            _client(billing_config, stub.url).post_batch([{"payment_id": "x"}])
    assert str(e.value).startswith("billing server: batch answer: " + fault)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("status, body, ctype", [
    (299, None, "application/json"),  # a 2xx the contract never gives
    (200, "utf-16", "application/json; charset=utf-16"),  # JSON between systems is UTF-8
    (200, "utf-8-sig", "application/json"),
])
def test_a_well_formed_success_in_a_form_outside_the_contract_marks_nothing_sent(
        agent, billing_server, seeded_references, status, body, ctype):
    [pid] = _pay_cash(agent, seeded_references[:1])

    def handler(method, path, payload):
        answer = {"results": [{"payment_id": p["payment_id"], "status": "accepted"} for p in payload["payments"]]}
        text = json.dumps(answer)
        return status, {"Content-Type": ctype}, text.encode(body) if body else text.encode()

    with StubServer(handler) as stub:  # the server never recorded it: "accepted" would lose the payment
        cfg = with_changes(agent.config, server={"url": stub.url})
        report, _ = SyncWorker(cfg, agent.journal, BillingClient(cfg)).step()
    assert report.error is not None and report.uploaded == 0
    assert agent.journal.get(pid).state == "approved"


# -- JSON nesting, body size, total time ---------------------------------------------------------------------

def test_json_nested_100000_deep_is_one_typed_error(billing_config):
    deep = b"[" * 100_000 + b"]" * 100_000
    with StubServer(lambda m, p, b: (200, {"Content-Type": "application/json"}, deep)) as stub:
        client = _client(billing_config, stub.url)
        with pytest.raises(BadAnswer, match="nested deeper than 64 levels"):
            client.get_bill("410726095518")
        with pytest.raises(BadAnswer, match="nested deeper than 64 levels"):
            client.post_batch([{"payment_id": "x"}])


def test_json_nested_past_the_limit_but_parseable_is_refused_too():
    with pytest.raises(BadAnswer, match="nested deeper"):
        parse_json(b'{"a":' * 100 + b"1" + b"}" * 100)
    assert parse_json(b'{"a":' * 60 + b"1" + b"}" * 60) is not None


def test_a_body_above_the_limit_is_refused_declared_or_not(billing_config):
    big = b'{"reference": "1", ' + b" " * (MAX_BODY + 10) + b"}"  # a bill: 1 MiB at most
    with StubServer(lambda m, p, b: (200, {"Content-Type": "application/json"}, big)) as stub:
        with pytest.raises(BadAnswer, match="above the 1 MiB limit"):
            _client(billing_config, stub.url).get_bill("410726095518")
    feed = b'{"items": [' + b" " * (MAX_FEED_BODY + 10) + b"]}"  # the feed: limit x 4 KiB, 8 MiB at most
    with StubServer(lambda m, p, b: (200, {"Content-Type": "application/json"}, feed)) as stub:
        with pytest.raises(BadAnswer, match="above the 8 MiB limit"):
            _client(billing_config, stub.url).bills_feed("ORAN-07", limit=5000)
        with pytest.raises(BadAnswer, match="above the 4000 KiB limit"):
            _client(billing_config, stub.url).bills_feed("ORAN-07", limit=1000)
    assert feed_cap(1) == MAX_BODY and feed_cap(1000) == 4000 << 10 and feed_cap(5000) == MAX_FEED_BODY


def _gzip_bomb(size: int) -> bytes:
    import zlib

    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing; 1 GiB of zeros is 1,043,658 bytes
    chunk = b"0" * (1 << 20)
    return b"".join([*(z.compress(chunk) for _ in range(size >> 20)), z.flush()])


def test_a_gzip_bomb_is_cut_at_the_limit_with_the_memory_bounded(billing_config):
    """1 GiB of zeros in ~1 MB of gzip (Content-Encoding: gzip): decoded only up to the cap (urllib3 >= 2.6
    decompresses in bounded steps), then one BadAnswer."""
    import resource

    bomb = _gzip_bomb(1 << 30)
    assert len(bomb) < MAX_BODY  # the declared length passes: only the decoding can stop it
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with StubServer(lambda m, p, b: (200, headers, bomb)) as stub:
        with pytest.raises(BadAnswer, match="^billing server: answer above the 1 MiB limit$"):
            _client(billing_config, stub.url).get_bill("410726095518")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 64, f"{grown_mib:.0f} MiB"


@pytest.mark.parametrize("what", ["bill", "feed"])
def test_a_body_of_empty_arrays_is_refused_before_it_is_parsed(billing_config, what):
    """Within the size cap, `[[],[],...]` would cost json.loads some 56 bytes per 3 sent (430 MB for 8 MiB)."""
    cap = MAX_BODY if what == "bill" else MAX_FEED_BODY
    body = b'{"items": [' + b"[]," * (cap // 3 - 10) + b"[]]}"
    with StubServer(lambda m, p, b: (200, {"Content-Type": "application/json"}, body)) as stub:
        client = _client(billing_config, stub.url)
        with pytest.raises(BadAnswer, match="arrays and objects in"):
            if what == "bill":
                client.get_bill("410726095518")
            else:
                client.bills_feed("ORAN-07", limit=5000)


def _tree_shape(v: object) -> tuple[int, int]:
    if isinstance(v, (dict, list)):
        inner = [_tree_shape(x) for x in (v.values() if isinstance(v, dict) else v)]
        return 1 + max((d for d, _ in inner), default=0), 1 + sum(n for _, n in inner)
    return 0, 0


_tricky = st.text(alphabet=st.sampled_from(['[', ']', '{', '}', '"', '\\', 'a', 'é', '\u2028', '\x00']), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.integers() | _tricky,
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(_tricky, kids, max_size=4),
                    max_leaves=30), st.booleans())
def test_the_raw_depth_scan_agrees_with_the_parsed_tree(value, ascii_only):
    """Brackets inside strings and escaped quotes never count: the scan of the bytes sees the tree json sees."""
    assert json_shape(json.dumps(value, ensure_ascii=ascii_only).encode()) == _tree_shape(value)


class DripServer(RawServer):
    """Answers every request with valid JSON headers, then one byte of body every `every` seconds (at most
    `seconds` in all): each read succeeds, so only a total deadline ends the request."""

    def __init__(self, every: float = 0.2, seconds: float = 15.0, headers: bool = False) -> None:
        super().__init__()
        self.every, self.seconds, self.headers = every, seconds, headers

    def handle(self, conn: socket.socket) -> None:
        body = b" " * 200 + b'{"server_time": "2026-11-30T10:00:00+00:00"}'
        conn.recv(65536)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        if self.headers:  # the status line, then header lines one byte at a time (bounded by `seconds`)
            conn.sendall(head)
            drip = b"".join(b"X-Pad-%d: y\r\n" % i for i in range(1000))
        else:  # the headers at once, then the body one byte at a time
            conn.sendall(head + b"\r\n")
            drip = body
        end = time.monotonic() + self.seconds
        for byte in drip:
            if self.stop.is_set() or time.monotonic() > end:
                break
            conn.sendall(bytes([byte]))
            self.stop.wait(self.every)


@pytest.mark.parametrize("headers", [False, True], ids=["body", "headers"])
def test_a_slow_drip_answer_is_cut_at_the_total_deadline(billing_config, headers):
    with DripServer(every=0.2, seconds=15, headers=headers) as drip:
        client = _client(billing_config, drip.url, timeout=0.5)  # each read waits 0.2 s < 0.5 s: never times out
        with pytest.raises(ServerUnreachable, match=r"no complete answer within 1 s"):
            client.heartbeat({})


# -- the bill feed and the cache ----------------------------------------------------------------------------

def test_a_feed_item_with_version_2_70_is_skipped_and_the_rest_cached(billing_config, tmp_path):
    items = [_bill("100000000001"), _bill("100000000002", version=2**70), _bill("100000000003")]
    pages = [json_answer(200, {"items": items, "next_cursor": "c1"})]
    with StubServer(lambda m, p, b: pages[0]) as stub:
        client = _client(billing_config, stub.url)
        cache = BillCache.open(tmp_path)
        assert cache.refresh(client, "ORAN-07", limit=10) == 2
        page = client.bills_feed_page("ORAN-07", limit=10)
    assert (page.received, page.skipped) == (3, 1)
    assert client.skipped == 2
    assert cache.get("100000000001") is not None and cache.get("100000000003") is not None
    assert cache.get("100000000002") is None
    assert cache._meta("cursor") == "c1"  # the feed moved on: one bad bill never blocks the cache
    cache.close()


@pytest.mark.parametrize("cursor", ["c1", ""])
def test_a_feed_stuck_on_one_cursor_is_asked_once_per_refresh_not_ten_thousand_times(billing_config, tmp_path, cursor):
    items = [_bill(f"1000000000{i:02d}") for i in range(3)]  # a full page (limit 3), the cursor never moves
    with StubServer(lambda m, p, b: json_answer(200, {"items": items, "next_cursor": cursor})) as stub:
        cache = BillCache.open(tmp_path)
        cache.store([], "c1")
        assert cache.refresh(_client(billing_config, stub.url), "ORAN-07", limit=3) == 3
        assert len(stub.requests) == 1 and cache.freshness() is None  # not caught up: not marked fresh
        cache.close()


def test_bills_with_unexpected_fields_or_an_object_for_a_string_never_break_offline_lookups(
        agent, billing_server, seeded_references):
    ref_extra, ref_object, ref_fine = seeded_references[:3]
    bills = {r: billing_server.bill(r) for r in (ref_extra, ref_object, ref_fine)}
    # Fields the contract does not have (some named like the client's own attributes), and an object where
    # the contract has a string.
    bills[ref_extra] = {**bills[ref_extra], "source": "server-x", "fetched_at": {"x": 1}, "cache_age": 9,
                        "loyalty": {"points": 3}}
    bills[ref_object] = {**bills[ref_object], "customer_name": {"first": "B.", "last": "Amel"}}
    feed = json_answer(200, {"items": list(bills.values()), "next_cursor": "c9"})
    with StubServer(lambda m, p, b: feed) as stub:
        cfg = with_changes(agent.config, server={"url": stub.url})
        assert agent.bills.refresh(BillingClient(cfg), "ORAN-07") == 2
    billing_server.stop()  # offline from now on: every lookup comes from the cache
    try:
        bill = agent.flow.lookup(ref_extra)
        assert bill.offline and bill.reference == ref_extra and bill.source == "cache"
        assert set(bill.to_api()) == set(models.Bill.model_fields)
        assert agent.flow.lookup(ref_fine).offline
        with pytest.raises(Exception, match="not in the offline cache"):
            agent.flow.lookup(ref_object)
        again = agent.flow.lookup(ref_extra)  # and again: the stored copy is clean
        assert again.reference == ref_extra
    finally:
        billing_server.start()


def test_the_cache_ignores_a_garbage_copy_left_by_an_older_version(tmp_path):
    cache = BillCache.open(tmp_path)
    with cache._lock:
        cache._conn.execute(
            "INSERT INTO bills (reference, customer_id, version, data, fetched_at) VALUES (?,?,?,?,?)",
            ("100000000009", "C-1", 1, json.dumps(_bill("100000000009", source="x", amount_due="12")),
             "2026-11-30T10:00:00+00:00"),
        )
    assert cache.get("100000000009") is None
    assert cache.customer_bills("C-1") == []
    cache.close()


def test_a_bill_answer_is_normalised_to_the_contract_fields(billing_config):
    bill = _bill("100000000001", extra={"a": 1}, customer_name=None)
    with StubServer(lambda m, p, b: json_answer(200, bill)) as stub:
        got = _client(billing_config, stub.url).get_bill("100000000001")
    assert set(got) == set(models.Bill.model_fields) and got["customer_name"] == ""


@pytest.mark.parametrize("field, value, fault", [
    ("amount_due", "345600", "amount_due: should be a valid integer"),
    ("amount_due", True, "amount_due: should be a valid integer"),
    ("amount_due", 3456.0, "amount_due: should be a valid integer"),
    ("amount_due", -1, "amount_due: should be greater than or equal to 0"),
    ("version", 2**70, "version: integer above 2**63-1"),
    ("customer_name", "x" * 201, "customer_name: too long"),
    ("status", "lost", "status: not one of"),
])
def test_a_bad_bill_names_its_field(billing_config, field, value, fault):
    with StubServer(lambda m, p, b: json_answer(200, _bill("100000000001", **{field: value}))) as stub:
        with pytest.raises(BadAnswer) as e:
            _client(billing_config, stub.url).get_bill("100000000001")
    assert str(e.value).startswith("billing server: bill: " + fault)


# -- other answers ------------------------------------------------------------------------------------------

def test_an_error_body_of_the_wrong_shape_is_a_bad_answer_not_a_traceback(billing_config):
    with StubServer(lambda m, p, b: json_answer(400, {"error": "nope"})) as stub:
        with pytest.raises(BadAnswer, match="without a valid error body: error: should be a valid dictionary"):
            _client(billing_config, stub.url).get_bill("1")
    with StubServer(lambda m, p, b: json_answer(400, {"error": {"code": "x", "message": "m" * 10_000}})) as stub:
        with pytest.raises(ApiError) as e:
            _client(billing_config, stub.url).get_bill("1")
    assert len(e.value.message) == 500


def test_a_4xx_the_contract_never_gives_is_no_answer_so_a_lookup_falls_back_to_the_cache(
        agent, billing_server, seeded_references):
    ref = seeded_references[0]
    agent.flow.lookup(ref)  # online: now cached
    teapot = json_answer(418, {"error": {"code": "teapot", "message": "I'm a teapot"}})
    with StubServer(lambda m, p, b: teapot) as stub:
        cfg = with_changes(agent.config, server={"url": stub.url})
        with pytest.raises(BadAnswer, match="answered 418, a status the contract does not give"):
            BillingClient(cfg).get_bill(ref)
        agent.flow.client = BillingClient(cfg)
        bill = agent.flow.lookup(ref)
    assert bill.offline and bill.reference == ref


def test_an_authorization_answer_with_approved_as_a_string_is_refused(billing_config):
    with StubServer(lambda m, p, b: json_answer(200, {"approved": "true", "response_code": "00"})) as stub:
        with pytest.raises(BadAnswer, match="approved: should be a valid boolean"):
            _client(billing_config, stub.url).authorize({}, idempotency_key="k")


# -- Retry-After --------------------------------------------------------------------------------------------

def test_retry_after_is_capped_at_the_backoff_cap(billing_config):
    headers = {"Retry-After": "999999999999"}
    with StubServer(lambda m, p, b: (503, headers, b"")) as stub:
        with pytest.raises(ServerUnreachable) as e:
            _client(billing_config, stub.url).post_batch([{"payment_id": "x"}])
    assert e.value.retry_after == RETRY_AFTER_CAP == 300
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") == 300
    assert parse_retry_after("²") is None and parse_retry_after("9" * 5000) is None


@given(st.text(max_size=80))
@settings(max_examples=300)
def test_retry_after_never_raises_and_stays_bounded(value):
    wait = parse_retry_after(value)
    assert wait is None or 0 <= wait <= RETRY_AFTER_CAP


# -- properties of the edge: any JSON is a valid model or one BadAnswer -----------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)
_bill_like = st.fixed_dictionaries({k: st.one_of(st.just(v), _json) for k, v in _bill("1").items()},
                                   optional={"extra": _json})


@given(_bill_like)
@settings(max_examples=300)
def test_any_bill_like_body_is_a_clean_bill_or_one_line(body):
    try:
        bill = BillingClient._model(models.Bill, body, "bill")
    except BadAnswer as e:
        assert "\n" not in str(e) and str(e).startswith("billing server: bill: ")
        return
    data = bill.to_api()
    assert set(data) == set(models.Bill.model_fields)
    assert isinstance(data["amount_due"], int) and 0 <= data["amount_due"] < 2**63
    assert all(isinstance(data[k], str) for k in data if k not in ("amount_due", "version"))


@given(st.one_of(_json, st.fixed_dictionaries({"results": st.lists(
    st.fixed_dictionaries({"payment_id": st.one_of(st.just("x"), _json), "status": st.one_of(
        st.sampled_from(["accepted", "duplicate", "rejected"]), _json)},
        optional={"error": _json, "notice": _json, "receipt_number": _json}), max_size=3)})))
@settings(max_examples=300)
def test_any_batch_answer_is_valid_results_or_one_line(body):
    try:
        answer = BillingClient._model(models.BatchResults, body, "batch answer")
    except BadAnswer as e:
        assert "\n" not in str(e)
        return
    for r in answer.results:
        assert r.error is None or isinstance(r.error.code, str)


@given(st.binary(max_size=200))
@settings(max_examples=300)
def test_parse_json_takes_any_bytes(raw):
    try:
        parse_json(raw)
    except BadAnswer as e:
        assert "\n" not in str(e)

