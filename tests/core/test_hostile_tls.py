"""A garbled TLS answer (issue 12, review item 1): once the request has left, a bad record or alert in the
answer is a lost answer (sent), never "not sent". A card payment the acquirer may have approved must end
`unknown`, never `cancelled` (a cancelled card payment is paid again: the customer is charged twice).

A TLS stub on 127.0.0.1 with a self-signed certificate (openssl CLI) reads the request, then breaks the answer.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.billing import BillingClient
from agent.context import AgentContext
from agent.errors import ServerUnreachable
from sandbox.cards.profiles import sandbox_cards_config
from tests.cards.conftest import insert, vpcd_reader  # noqa: F401 - the virtual card fixtures
from tests.core.conftest import with_changes
from tests.core.stub_server import RawServer

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")

BAD_RECORD = b"\x17\x03\x03\x00\x20" + b"\x00" * 32  # application data that fails its MAC
CLEAR_ALERT = b"\x15\x03\x03\x00\x02\x02\x50"  # a fatal internal_error alert, unencrypted


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "c.pem", d / "k.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True, timeout=60)
    return crt, key


class TlsStub(RawServer):
    """Serves TLS on 127.0.0.1. mode: 'bad_record' / 'alert' after reading a whole request; 'close' drops
    the connection before the handshake. `requests` holds the request lines it read."""

    def __init__(self, cert: tuple[Path, Path], mode: str) -> None:
        super().__init__("https")
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        self.mode = mode
        self.requests: list[bytes] = []

    def handle(self, conn: socket.socket) -> None:
        if self.mode == "close":
            return
        conn.settimeout(5)
        tls = self.ctx.wrap_socket(conn, server_side=True)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:  # bounded: headers, then the declared body
            chunk = tls.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < min(length, 65536):
            chunk = tls.recv(65536)
            if not chunk:
                break
            body += chunk
        self.requests.append(head.split(b"\r\n")[0])
        os.write(tls.fileno(), BAD_RECORD if self.mode == "bad_record" else CLEAR_ALERT)  # under the TLS layer


@pytest.mark.parametrize("mode", ["bad_record", "alert"])
def test_a_garbled_tls_answer_after_the_request_left_is_sent(billing_config, cert, mode):
    with TlsStub(cert, mode) as stub:
        client = BillingClient(with_changes(billing_config, server={"url": stub.url, "ca_bundle": str(cert[0]),
                                                                    "timeout": 3}))
        with pytest.raises(ServerUnreachable) as e:
            client.authorize({"payment_id": "p"}, idempotency_key="p")
    assert stub.requests == [b"POST /v1/authorizations HTTP/1.1"]  # the server took the whole request
    assert e.value.sent is True


def test_a_tls_handshake_that_fails_is_not_sent(billing_config, cert, tmp_path):
    with TlsStub(cert, "close") as stub:
        client = BillingClient(with_changes(billing_config, server={"url": stub.url, "ca_bundle": str(cert[0]),
                                                                    "timeout": 3}))
        with pytest.raises(ServerUnreachable) as e:
            client.authorize({"payment_id": "p"}, idempotency_key="p")
    assert e.value.sent is False and stub.requests == []


def test_an_untrusted_certificate_is_not_sent(billing_config, cert):
    with TlsStub(cert, "bad_record") as stub:
        client = BillingClient(with_changes(billing_config, server={"url": stub.url, "timeout": 3}))
        with pytest.raises(ServerUnreachable) as e:
            client.authorize({"payment_id": "p"}, idempotency_key="p")
    assert e.value.sent is False and stub.requests == []


@pytest.fixture
def reader_agent(billing_config, vpcd_reader) -> Iterator[AgentContext]:  # noqa: F811
    cfg = with_changes(billing_config, cards=sandbox_cards_config(reader=vpcd_reader, read_timeout=15))
    ctx = AgentContext.open(cfg, ["card_reader"], take_payments=True)
    yield ctx
    ctx.close()


def test_a_card_payment_whose_tls_answer_is_garbled_is_unknown_never_cancelled(
        reader_agent, insert, billing_server, seeded_references, cert):  # noqa: F811
    bill = reader_agent.flow.lookup(seeded_references[0])
    with TlsStub(cert, "bad_record") as stub:
        cfg = with_changes(reader_agent.config, server={"url": stub.url, "ca_bundle": str(cert[0]), "timeout": 3})
        reader_agent.flow.authorizers["card_reader"].client = BillingClient(cfg)
        with insert("cib"):
            result = reader_agent.flow.pay([bill], method="card_reader", cashier_id="c0042")
    assert stub.requests and stub.requests[0] == b"POST /v1/authorizations HTTP/1.1"
    assert result.status == "unknown", result.message
    [p] = result.payments
    assert reader_agent.journal.get(p.payment_id).state == "unknown"
