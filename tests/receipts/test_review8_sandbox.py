"""Review 8, the sandbox's sending: a relay trickling its answers holds a message (and the ones behind it) for
one session deadline at most, a text that a mail header reads as two recipients is refused, an SMTP refusal
naming the address is recorded and logged without it, and /_sandbox/receipts (full addresses) needs the
admin token. Relays are sockets on 127.0.0.1; the server is the sandbox over HTTP."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.billing.sender import ReceiptMessage, ReceiptSender
from tests.conftest import BILLING_TERMINAL, BILLING_TOKEN
from tests.receipts.test_send import _server


def _relay(session: Any) -> Iterator[int]:
    """A relay on 127.0.0.1 running `session(conn)` for each connection; its port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)

    def accept() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=session, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()


@pytest.fixture
def trickling_relay() -> Iterator[int]:
    def session(c: socket.socket) -> None:
        try:
            for ch in b"220 " + b"x" * 60 + b"\r\n":  # a byte every 0.1 s: no socket timeout ever fires
                c.send(bytes([ch]))
                time.sleep(0.1)
            while c.recv(1024):
                c.send(b"250 ok\r\n")
        except OSError:
            pass
        finally:
            c.close()

    yield from _relay(session)


@pytest.fixture
def refusing_relay() -> Iterator[int]:
    def session(c: socket.socket) -> None:
        f = c.makefile("rb")
        try:
            c.send(b"220 relay\r\n")
            while line := f.readline():
                if line.upper().startswith(b"RCPT"):
                    to = line.split(b"<", 1)[1].split(b">", 1)[0]
                    c.send(b"550 5.1.1 <" + to + b">: Recipient address rejected: User unknown\r\n")
                elif line.upper().startswith(b"QUIT"):
                    c.send(b"221 bye\r\n")
                    return
                else:
                    c.send(b"250 ok\r\n")
        except OSError:
            pass
        finally:
            c.close()

    yield from _relay(session)


def _msg(n: str, to: str) -> ReceiptMessage:
    return ReceiptMessage(n, "email", to, "fr", "Votre reçu", "Reçu de paiement")


def test_a_trickling_relay_holds_each_message_one_deadline_at_most(trickling_relay: int) -> None:
    sender = ReceiptSender(smtp=f"127.0.0.1:{trickling_relay}", retry_wait=0, deadline=0.5)
    sender.submit(_msg("R-1", "a@example.dz"))
    sender.submit(_msg("R-2", "c@example.dz"))
    # 3 attempts x 0.5 s x 2 messages; without a deadline each attempt takes the greeting's 6 s
    assert sender.wait_idle(5)
    assert [o.receipt_number for o in sender.failed] == ["R-1", "R-2"]
    assert all("TimeoutError" in o.error for o in sender.failed)


def test_an_smtp_refusal_is_kept_without_the_address(
    refusing_relay: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sender = ReceiptSender(smtp=f"127.0.0.1:{refusing_relay}", retry_wait=0)
    sender.submit(_msg("R-1", "amina.haddad@example.dz"))
    assert sender.wait_idle(20)
    [failed] = sender.failed
    assert "550" in failed.error and "amina" not in failed.error
    assert "amina" not in caplog.text


def _post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - the sandbox on 127.0.0.1
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _get(url: str, headers: dict[str, str]) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:  # noqa: S310
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


TERMINAL = {"Authorization": f"Bearer {BILLING_TOKEN}", "X-Terminal-Id": BILLING_TERMINAL}


@pytest.mark.parametrize("to", ["evil@x.dz,root", "a,b@c.dz", '"x"<evil@e.dz>', "a@b.dz\n", "a@b.dz\r\nBcc: c@d.dz"])
def test_the_server_refuses_what_a_header_reads_as_two_recipients(tmp_path: Path, to: str) -> None:
    with _server(tmp_path) as server:
        status, body = _post(f"{server.url}v1/receipts/R-1/send", {"channel": "email", "to": to}, TERMINAL)
        assert (status, body["error"]["code"]) == (400, "invalid_address")


def test_the_sent_addresses_need_the_admin_token(tmp_path: Path) -> None:
    with _server(tmp_path) as server:
        assert _get(f"{server.url}_sandbox/receipts", {}) == 401
        assert _get(f"{server.url}_sandbox/receipts", TERMINAL) == 403
        assert _get(f"{server.url}_sandbox/receipts", server.admin_headers()) == 200
