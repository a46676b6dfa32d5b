"""Review 8, the e-mail/SMS outbox: a basket's e-mail lists every bill (sent only once the whole transaction is
uploaded), a 401 keeps every request, the address leaves the WAL even when a reader held it, the server's text
is never stored, one unreadable answer holds no other request back, the address rules are ASCII and whole,
and a double Enter on a new outbox is one request. Real SQLite, the sandbox server over HTTP on 127.0.0.1, and
for the answers the sandbox never gives, a hostile HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.context import AgentContext
from agent.errors import ApiError
from agent.outbox import MAX_ATTEMPTS, AddressError, Outbox, parse_address, send_pending
from sandbox.smtp_sink import SmtpSink, body_text
from tests.core.conftest import with_changes
from tests.receipts.test_send import _cfg, _job, _server, _stored_bytes
from ui.receipt import request_send

Answer = tuple[int, dict[str, Any]]


@contextmanager
def hostile(answer: Callable[[str, dict[str, Any]], Answer]) -> Iterator[str]:
    """A billing server on 127.0.0.1 answering each receipt send with `answer(receipt_number, body)`."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            number = self.path.split("/")[-2]
            status, data = answer(number, body)
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def _error(status: int, code: str, message: str) -> Answer:
    return status, {"error": {"code": code, "message": message}}


@contextmanager
def _agent(billing_config: Any, url: str) -> Iterator[AgentContext]:
    """The agent's context against `url`; its journal holds none of the receipts asked below (they are sent
    as they are, the server's answer decides)."""
    cfg = with_changes(billing_config, server={"url": url})
    with AgentContext.open(cfg, ["cash"]) as ctx:
        yield ctx


# -- finding 1: a basket's e-mail lists its three bills ------------------------------------------------------


def test_a_basket_is_sent_only_once_every_payment_is_uploaded(tmp_path: Path, billing_config: Any) -> None:
    with SmtpSink(tmp_path / "mail") as sink, _server(tmp_path, smtp=sink.address) as server:
        cfg = with_changes(_cfg(billing_config, server), sync={"batch_size": 1})
        with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
            bills = [ctx.flow.lookup(r) for r in server.references(status="unpaid")[:3]]
            payments = ctx.flow.pay(bills, method="cash", cashier_id="c0042").payments
            assert len(payments) == 3
            ctx.sync_worker().run_once(max_batches=1)  # one of the three reached the server
            request_send(cfg, payments[0].receipt_number, "amina@example.dz")
            sched = _job(ctx, cfg)
            assert sched.run_once(["receipt-send"])["receipt-send"].error is None
            box = Outbox.open(cfg.state.dir)
            [req] = box.requests(payments[0].receipt_number)
            assert req.state == "waiting" and "upload" in req.reason
            assert server.store.receipt_sends() == []  # not even asked: a partial e-mail is never sent

            ctx.sync_worker().run_once()  # the other two
            sched.run_once(["receipt-send"])
            [req] = box.requests(payments[0].receipt_number)
            assert req.state == "sent"
            box.close()
            [mail] = sink.wait_messages(1)
            text = body_text(mail)
            assert all(b.reference in text for b in bills), text


# -- finding 2: a 401 is the terminal's problem, not the customers' -------------------------------------------


def test_a_401_leaves_every_request_waiting(tmp_path: Path, billing_config: Any) -> None:
    with hostile(lambda n, b: _error(401, "unauthorized", f"token expired (to: {b['to']})")) as url, \
            _agent(billing_config, url) as ctx:
        box = Outbox.open(ctx.config.state.dir)
        for k in range(3):
            box.add(f"R-{k}", parse_address(f"c{k}@example.dz"))
        with pytest.raises(ApiError, match="401") as raised:
            send_pending(box, ctx.client, ctx.journal)
        assert "c0@" not in str(raised.value)  # the scheduler logs it
        waiting = box.waiting()
        assert [r.address for r in waiting] == [f"c{k}@example.dz" for k in range(3)]
        assert box.attention() == []
        box.close()


def test_a_bad_address_is_still_dropped_for_good(tmp_path: Path, billing_config: Any) -> None:
    with hostile(lambda n, b: _error(422, "invalid_address", "no")) as url, _agent(billing_config, url) as ctx:
        box = Outbox.open(ctx.config.state.dir)
        box.add("R-1", parse_address("c@example.dz"))
        send_pending(box, ctx.client, ctx.journal)
        [req] = box.attention()
        assert req.address is None and req.reason.startswith("422 invalid_address")
        box.close()


# -- finding 4: the server's message may echo the address: never stored ---------------------------------------


def test_the_servers_text_is_not_stored(tmp_path: Path, billing_config: Any) -> None:
    def echo(number: str, body: dict[str, Any]) -> Answer:
        return _error(400, "invalid_address", f"to: {body['to']} is not reachable")

    with hostile(echo) as url, _agent(billing_config, url) as ctx:
        state = Path(ctx.config.state.dir)
        box = Outbox.open(state)
        box.add("R-9", parse_address("+213 550 12 34 56"))
        box.add("R-8", parse_address("amina.haddad@example.dz"))
        send_pending(box, ctx.client, ctx.journal)
        reasons = [r.reason for r in box.attention()]
        assert reasons == ["400 invalid_address", "400 invalid_address"]
        box.close()
        stored = _stored_bytes(state)
        assert b"550123456" not in stored and b"amina.haddad" not in stored


# -- finding 5: one unreadable 202 holds no other request back ------------------------------------------------


def test_one_bad_answer_holds_no_other_request_back(tmp_path: Path, billing_config: Any) -> None:
    asked: list[str] = []

    def answer(number: str, body: dict[str, Any]) -> Answer:
        asked.append(number)
        if number == "R-0":
            return 202, {"receipt_number": "someone-else", "status": "queued"}
        return 202, {"receipt_number": number, "status": "queued"}

    with hostile(answer) as url, _agent(billing_config, url) as ctx:
        box = Outbox.open(ctx.config.state.dir)
        for k in range(3):
            box.add(f"R-{k}", parse_address(f"c{k}@example.dz"))
        send_pending(box, ctx.client, ctx.journal)
        assert [box.requests(f"R-{k}")[0].state for k in range(3)] == ["waiting", "sent", "sent"]
        for _ in range(MAX_ATTEMPTS):
            send_pending(box, ctx.client, ctx.journal)
        [req] = box.requests("R-0")
        assert req.state == "attention" and req.address is None  # a person looks; it is not asked forever
        assert asked.count("R-0") == MAX_ATTEMPTS and asked.count("R-1") == 1
        box.close()


# -- finding 3: the address leaves the WAL even when a reader held it -----------------------------------------


def test_a_reader_during_the_drop_only_delays_the_forgetting(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path)
    i = box.add("R-1", parse_address("amina.haddad@example.dz"))
    box.later(i, "x")
    reader = sqlite3.connect(tmp_path / "outbox.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM sends").fetchone()
    box.sent(i)  # the checkpoint is busy: the mark stays
    assert box.forget_pending() is False
    reader.execute("COMMIT")
    reader.close()
    assert box.forget_pending() is True
    assert b"amina.haddad" not in _stored_bytes(tmp_path)
    box.close()


def test_a_drop_left_busy_is_finished_at_the_next_open(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path)
    i = box.add("R-1", parse_address("amina.haddad@example.dz"))
    reader = sqlite3.connect(tmp_path / "outbox.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM sends").fetchone()
    box.refused(i, "400 invalid_address")
    reader.execute("COMMIT")
    reader.close()
    box.conn.close()  # the agent stopped before its next run (close() would checkpoint: not what we test)
    assert Outbox.open(tmp_path).forget_pending() is True
    assert b"amina.haddad" not in _stored_bytes(tmp_path)


# -- findings 9, 10: the address rules ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["a\n@example.dz", "x@example\n.dz", "evil@x.dz,root", "a,b@c.dz",
                                  '"x"<evil@e.dz>'])
def test_no_newline_nor_second_address(text: str) -> None:
    with pytest.raises(AddressError):
        parse_address(text)


@pytest.mark.parametrize("text", ["0550\u0661\u0662\u0663\u0664\u0665\u0666",
                                  "\u0660\u0665\u0665\u0660\u0661\u0662\u0663\u0664\u0665\u0666",
                                  "0550\uff11\uff12\uff13\uff14\uff15\uff16"])
def test_other_scripts_digits_are_read_as_ascii(text: str) -> None:
    assert parse_address(text).to == "+213550123456"


def test_the_short_form_is_the_counters_country() -> None:
    with pytest.raises(AddressError, match=r"\+216"):
        parse_address("55123456")  # at an Oran counter
    assert parse_address("55123456", "TN").to == "+21655123456"
    with pytest.raises(AddressError, match=r"\+213"):
        parse_address("0550123456", "TN")
    assert parse_address("+213550123456", "TN").to == "+213550123456"


def test_request_send_reads_the_country_from_the_currency(billing_config: Any) -> None:
    with pytest.raises(AddressError):
        request_send(billing_config, "R-1", "55123456")  # DZD
    tnd = with_changes(billing_config, terminal={"currency": "TND"})
    assert request_send(tnd, "R-1", "55123456").to == "+21655123456"


# -- finding 11: a double Enter on a new outbox ---------------------------------------------------------------


def test_a_double_enter_on_a_new_outbox_is_one_request(tmp_path: Path, billing_config: Any) -> None:
    for trial in range(10):
        state = tmp_path / f"s{trial}"
        state.mkdir()
        cfg = with_changes(billing_config, state={"dir": str(state)})
        errors: list[str] = []

        def go(cfg: Any = cfg, errors: list[str] = errors) -> None:
            try:
                request_send(cfg, "R-1", "0661 23 45 67")
            except Exception as e:  # noqa: BLE001 - the test names what went wrong
                errors.append(f"{type(e).__name__}: {e}")

        threads = [threading.Thread(target=go) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        box = Outbox.open(state)
        assert (len(box.requests("R-1")), errors) == (1, []), trial
        box.close()
