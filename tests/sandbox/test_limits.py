"""Hostile requests against the sandbox server (contract 1.1 limits): huge bodies answer 413 without being
buffered, JSON that is malformed or nested too deep answers 400 invalid_json as a JSON error body, and the
server lives on. Real HTTP on 127.0.0.1; the big-body tests run the server as its own process to watch its
memory."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sandbox.billing.limits import MAX_BODY
from sandbox.billing.seed import first_reference
from tests.sandbox.conftest import Api, make_payment
from tests.sandbox.test_bills import assert_error
from tests.sandbox.test_server import GUICHET

MiB = 1024 * 1024
HEAD = "Authorization: Bearer tok\r\nX-Terminal-Id: ORAN-07-G1\r\nHost: 127.0.0.1\r\n"


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc, self.url = proc, url
        self.port = int(url.rstrip("/").rsplit(":", 1)[1])

    def peak_rss(self) -> int:
        """The server process's peak resident memory (VmHWM), bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    def alive_and_answering(self) -> bool:
        headers = {"Authorization": "Bearer tok", "X-Terminal-Id": "ORAN-07-G1"}
        r = requests.get(self.url + "v1/bills/" + first_reference("ORAN-07"), headers=headers, timeout=10)
        return self.proc.poll() is None and r.status_code == 200


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    proc = subprocess.Popen(
        [GUICHET, "sandbox", "serve", "--port", "0", "--db", str(tmp_path / "s.db"), "--token", "tok",
         "--seed-bills", "5", "--admin-token", "adm"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        srv = Served(proc, proc.stdout.readline().strip().removeprefix("listening on "))
        assert srv.alive_and_answering()
        yield srv
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes or stops (bounded)."""
    got = b""
    for _ in range(200):
        if not select.select([sock], [], [], 5)[0]:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        got += chunk
        if b"\r\n\r\n" in got and got.split(b"\r\n\r\n", 1)[1].count(b"}") >= 2:
            break
    return got


def stream_until_answer(port: int, head: bytes, total: int, chunked: bool) -> tuple[bytes, int]:
    """Send ``head`` then up to ``total`` body bytes in 64 KiB pieces, stopping at the first byte of an
    answer or when the server stops reading; returns (answer, bytes sent)."""
    piece = b"[" * 65536
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        while sent < total:  # bounded by total
            if select.select([sock], [], [], 0)[0]:
                break
            data = (b"%x\r\n" % len(piece) + piece + b"\r\n") if chunked else piece
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
            sent += len(piece)
        return read_answer(sock), sent


def status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"application/json" in head.lower(), head
    if b"transfer-encoding: chunked" in head.lower():
        body = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
    return status, json.loads(body)["error"]["code"]


def test_a_50_mib_streamed_body_is_refused_with_413_without_buffering_it(served: Served):
    before = served.peak_rss()
    head = f"POST /v1/payments/batch HTTP/1.1\r\n{HEAD}Content-Type: application/json\r\n" \
           "Transfer-Encoding: chunked\r\n\r\n"  # fmt: skip
    answer, sent = stream_until_answer(served.port, head.encode(), 50 * MiB, chunked=True)
    assert status_and_error(answer) == (413, "body_too_large")
    assert sent < 50 * MiB  # answered while the client was still sending, not after reading it all
    assert served.peak_rss() - before < 32 * MiB
    assert served.alive_and_answering()


def test_a_declared_1_gib_body_is_refused_before_any_byte_is_read(served: Served):
    before = served.peak_rss()
    head = (
        f"POST /v1/payments/batch HTTP/1.1\r\n{HEAD}Content-Type: application/json\r\nContent-Length: {1 << 30}\r\n\r\n"
    )
    answer, sent = stream_until_answer(served.port, head.encode(), 1 << 30, chunked=False)
    assert status_and_error(answer) == (413, "body_too_large")
    assert sent < 50 * MiB
    assert served.peak_rss() - before < 32 * MiB
    assert served.alive_and_answering()


def test_100000_deep_json_is_invalid_json_not_a_crash(served: Served):
    deep = b"[" * 100_000 + b"]" * 100_000
    for path in ("v1/payments/batch", "v1/terminals/ORAN-07-G1/heartbeat", "_sandbox/faults"):
        token = "adm" if path.startswith("_") else "tok"
        r = requests.request("PUT" if path.startswith("_") else "POST", served.url + path, data=deep, timeout=10,
                             headers={"Authorization": f"Bearer {token}", "X-Terminal-Id": "ORAN-07-G1"})  # fmt: skip
        assert "deeper than 32" in assert_error(r, 400, "invalid_json")
    assert served.alive_and_answering()
    assert served.proc.stderr is not None and served.proc.poll() is None


def nested(depth: int) -> bytes:
    """Objects nested ``depth`` levels deep."""
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'{"payments": [}',
        b"",
        b"\xff\xfe{}",
        b'{"payments": NaN}',
        b'{"payments": [Infinity]}',
        b'{"payments": [' + b"9" * 5000 + b"]}",
        nested(33),
        b"[" * 33 + b"]" * 33,
    ],
    ids=["open", "bad-bracket", "empty", "not-utf8", "nan", "infinity", "5000-digits", "33-objects", "33-arrays"],
)
def test_malformed_or_too_deep_json_is_400_invalid_json(api: Api, body: bytes):
    assert_error(api.post("v1/payments/batch", data=body), 400, "invalid_json")


def test_32_levels_are_still_json(api: Api, seeded_references):
    for body in (nested(32), b"[" * 32 + b"]" * 32):
        r = api.post("v1/payments/batch", data=body)
        assert r.status_code == 400 and r.json()["error"]["code"] in ("unknown_field", "invalid_request"), r.text
    # And a real batch near the limit is fine.
    payments = [make_payment(seeded_references[0], 1) for _ in range(500)]
    body = json.dumps({"payments": payments}).encode()
    assert len(body) < MAX_BODY
    assert api.post("v1/payments/batch", data=body).status_code == 200


def test_just_over_one_mib_is_413_through_requests(api: Api):
    r = api.post("v1/payments/batch", data=b" " * (MAX_BODY + 1))
    assert "body" in assert_error(r, 413, "body_too_large")
    assert_error(api.put("_sandbox/faults", data=b" " * (MAX_BODY + 1)), 413, "body_too_large")
