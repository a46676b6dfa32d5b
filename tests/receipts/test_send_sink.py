"""`guichet sandbox smtp` (the SMTP sink as a command) and the demo's receipt devices, on 127.0.0.1."""

from __future__ import annotations

import smtplib
import socket
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

from drivers.printer import open_printer
from sandbox.smtp_sink import start_receipt_devices


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mail(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "recus@seor.sandbox.dz", to, "Reçu ORAN-07-G1-000001"
    msg.set_content("Reçu de paiement\nReçu: ORAN-07-G1-000001\n")
    return msg


def test_guichet_sandbox_smtp_keeps_every_message(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "guichet", "sandbox", "smtp", "--listen", f"127.0.0.1:{port}",
                             "--out", str(tmp_path / "mail")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"127.0.0.1:{port}"  # printed once it listens
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.send_message(_mail("client@example.dz"))
    finally:
        proc.terminate()
        proc.wait(10)
    [eml] = sorted((tmp_path / "mail").glob("*.eml"))
    assert b"ORAN-07-G1-000001" in eml.read_bytes() and eml.stat().st_mode & 0o777 == 0o600


def test_a_bad_listen_address_is_one_line() -> None:
    r = subprocess.run([sys.executable, "-m", "guichet", "sandbox", "smtp", "--listen", "nowhere"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "HOST:PORT" in r.stderr and "Traceback" not in r.stderr


def test_the_demo_receipt_devices(tmp_path: Path) -> None:
    devices = start_receipt_devices(tmp_path)
    try:
        assert open_printer(devices.printer_url, timeout=2).status().ready
        host, port = devices.smtp.rsplit(":", 1)
        with smtplib.SMTP(host, int(port), timeout=10) as smtp:
            smtp.send_message(_mail("client@example.dz"))
        assert devices.sink.wait_messages(1)[0]["To"] == "client@example.dz"
    finally:
        devices.close()


def test_the_sink_refuses_a_message_over_its_bound(tmp_path: Path) -> None:
    from sandbox.smtp_sink import MAX_MESSAGE, SmtpSink

    with SmtpSink(tmp_path / "mail") as sink:
        big = _mail("client@example.dz")
        big.set_content("x" * (MAX_MESSAGE + 10))
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as smtp:
            try:
                smtp.send_message(big)
                refused = False
            except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused, smtplib.SMTPServerDisconnected) as e:
                refused = "552" in str(e) or isinstance(e, smtplib.SMTPServerDisconnected)
        assert refused and list((tmp_path / "mail").glob("*.eml")) == []
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as smtp:  # and it goes on
            smtp.send_message(_mail("client@example.dz"))
        assert len(sink.wait_messages(1)) == 1


def test_an_sms_gateway_gets_the_text(tmp_path: Path) -> None:
    """--sms-url: a POST of JSON to the gateway (here a stand-in on 127.0.0.1 that keeps what it gets)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from sandbox.billing.sender import ReceiptSender, message_for

    got: list[dict[str, str]] = []

    class Gateway(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(201 if len(got) > 1 else 503)  # down once: the sender tries again
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sender = ReceiptSender(sms_url=f"http://127.0.0.1:{server.server_port}/sms", retry_wait=0.05)
        payments = [{"amount": 1127300, "stamp_duty": None, "currency": "DZD", "bill_reference": "SEOR-1",
                     "method": "card_reader", "captured_at": "2026-11-30T08:14:00Z"}]
        assert sender.submit(message_for("ORAN-07-G1-000007", "sms", "+21698123456", "en", payments))
        assert not sender.submit(message_for("ORAN-07-G1-000007", "sms", "+21698123456", "en", payments))  # once
        assert sender.wait_idle(20) and not sender.failed
    finally:
        server.shutdown()
    assert len(got) == 2 and got[-1]["to"] == "+21698123456" and got[-1]["receipt_number"] == "ORAN-07-G1-000007"
    assert "Payment receipt" in got[-1]["text"] and "SEOR-1" in got[-1]["text"] and "DZD" in got[-1]["text"]


def test_guichet_sandbox_serve_takes_the_sending_options(tmp_path: Path) -> None:
    bad = subprocess.run([sys.executable, "-m", "guichet", "sandbox", "serve", "--port", "0", "--db",
                          str(tmp_path / "b.db"), "--smtp", "nowhere"], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert bad.returncode == 2 and "--smtp" in bad.stderr and "Traceback" not in bad.stderr
    proc = subprocess.Popen([sys.executable, "-m", "guichet", "sandbox", "serve", "--port", "0", "--db",
                             str(tmp_path / "b.db"), "--smtp", "127.0.0.1:2525", "--sms-file", str(tmp_path / "s")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
    finally:
        proc.terminate()
        proc.wait(10)
    assert any("receipts: e-mail via 127.0.0.1:2525; SMS to" in line for line in lines), lines
