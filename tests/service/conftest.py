"""Fixtures of the service tests: a notify socket like systemd's, configs on disk, the agent as a subprocess."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from tests.conftest import BILLING_AGENCY, BILLING_TERMINAL, BILLING_TOKEN, TEST_HMAC_KEY

GUICHET = str(Path(sys.executable).with_name("guichet"))


class NotifyListener:
    """An AF_UNIX datagram socket standing in for systemd's notify socket; collects every message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> str:
        """The first new message satisfying predicate; fails after `timeout` seconds (a guard, not a measure)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.sock.recv(65536).decode("utf-8")
            except TimeoutError:
                continue
            self.messages.append(msg)
            if predicate(msg):
                return msg
        raise AssertionError(f"no matching notify message within {timeout} s; got {self.messages[-10:]}")

    def seen_or_wait(self, predicate: Any, timeout: float = 20.0) -> str:
        """Like wait_for, but an already received message counts too."""
        for msg in self.messages:
            if predicate(msg):
                return msg
        return self.wait_for(predicate, timeout)

    def drain(self) -> list[str]:
        """Messages already queued, without waiting."""
        got = []
        self.sock.setblocking(False)
        try:
            while True:
                got.append(self.sock.recv(65536).decode("utf-8"))
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(0.2)
        self.messages += got
        return got

    def collect(self, seconds: float) -> list[str]:
        """Every message arriving during `seconds`."""
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(min(0.2, left))
            try:
                got.append(self.sock.recv(65536).decode("utf-8"))
            except TimeoutError:
                continue
        self.sock.settimeout(0.2)
        self.messages += got
        return got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(tmp_path / "notify.sock")
    yield listener
    listener.close()


def write_config(path: Path, url: str, state_dir: Path, **sections: dict[str, Any]) -> Path:
    """A config file (mode 0600) for the sandbox server; `sections` override keys per section."""
    data: dict[str, dict[str, Any]] = {
        "terminal": {"id": BILLING_TERMINAL, "agency_id": BILLING_AGENCY, "currency": "DZD"},
        "server": {"url": url, "token": BILLING_TOKEN, "timeout": 5},
        "state": {"dir": str(state_dir)},
        "sync": {"interval": 0.2, "batch_size": 100, "bill_refresh": 900, "heartbeat": 60},
        "cards": {"hmac_key": TEST_HMAC_KEY},
        "payments": {"default_method": "cash", "methods": ["cash"]},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    path.write_text(tomlkit.dumps(data))
    path.chmod(0o600)
    return path


class Agent:
    """`guichet run --headless` as a real subprocess; stderr collected by a reader thread."""

    def __init__(self, config: Path, notify: Path | None, *, watchdog_usec: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        e = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        e.update(env or {})
        if notify is not None:
            e["NOTIFY_SOCKET"] = str(notify)
        cmd = [GUICHET, "--config", str(config), "run", "--headless"]
        if watchdog_usec is not None:
            e["WATCHDOG_USEC"] = str(watchdog_usec)
            # Like systemd: WATCHDOG_PID is the service's own pid; `exec` keeps the shell's pid.
            cmd = ["/bin/sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh", *cmd]
        self.proc = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            self.lines.put(line)

    def wait_line(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            if text in line:
                return line
        raise AssertionError(f"{text!r} not logged; stderr:\n{''.join(self.stderr)}")

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)


@pytest.fixture
def spawn() -> Iterator[Any]:
    agents: list[Agent] = []

    def start(*args: Any, **kwargs: Any) -> Agent:
        a = Agent(*args, **kwargs)
        agents.append(a)
        return a

    yield start
    for a in agents:
        a.kill()
