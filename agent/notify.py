"""sd_notify without a library: systemd's datagram protocol over the AF_UNIX socket in $NOTIFY_SOCKET.

Like systemd's own notify-selfcontained-example.py: one datagram per message, newline-separated
``KEY=VALUE`` assignments, UTF-8. Outside systemd ($NOTIFY_SOCKET unset) every call is a cheap no-op.

    >>> n = Notifier.from_env({})       # from_env() reads NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID
    >>> n.ready(status="journal open, 0 queued")   # READY=1 + STATUS=; False: nobody to tell here
    False
    >>> n.status("online; 3 queued, oldest 2 min")
    False
    >>> if n.watchdog_due(): n.watchdog()           # WATCHDOG=1 at half the interval systemd asked for
    >>> n.stopping()                                # STOPPING=1
    False

Sockets whose address starts with ``@`` are in the Linux abstract namespace (a leading NUL byte).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

__all__ = ["Notifier", "notify", "watchdog_interval"]


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """The watchdog timeout in seconds systemd asked for, or None when no watchdog applies to us.

    Like sd_watchdog_enabled(): WATCHDOG_USEC must be a positive integer, and when WATCHDOG_PID is set
    it must be our pid (a child the service forked must not ping on its parent's behalf).
    An unset WATCHDOG_PID is accepted (systemd always sets it, but tests and wrappers may not).
    """
    env = os.environ if env is None else env
    raw = env.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    wpid = env.get("WATCHDOG_PID", "")
    if wpid:
        try:
            if int(wpid) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 1_000_000


def _address(path: str) -> str | bytes | None:
    if not path:
        return None
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    if path.startswith("/"):
        return path
    return None  # systemd also accepts vsock: addresses; a counter PC never uses them


class Notifier:
    """Sends notifications to systemd. Never raises: a lost notification must not stop a payment agent."""

    def __init__(self, socket_path: str | None, watchdog: float | None = None) -> None:
        self.address = _address(socket_path or "")
        self.watchdog_timeout = watchdog
        self._sock: socket.socket | None = None
        self._last_ping = 0.0
        self.last_error: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET"), watchdog_interval(env))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send one datagram of KEY=VALUE lines; True when it was delivered to the socket."""
        if self.address is None:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value)
            # A newline would start a new assignment: STATUS= text comes from error messages.
            lines.append(f"{key}={' '.join(text.splitlines())}")
        payload = "\n".join(lines).encode("utf-8")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, self.address)
        except OSError as e:
            self.last_error = f"{e.strerror or e}"
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        fields: dict[str, str | int] = {"READY": 1}
        if status is not None:
            fields["STATUS"] = status
        return self.send(**fields)

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def stopping(self, status: str | None = None) -> bool:
        fields: dict[str, str | int] = {"STOPPING": 1}
        if status is not None:
            fields["STATUS"] = status
        return self.send(**fields)

    def watchdog(self) -> bool:
        self._last_ping = time.monotonic()
        return self.send(WATCHDOG=1)

    @property
    def ping_interval(self) -> float | None:
        """Half the watchdog timeout, as sd_watchdog_enabled(3) recommends."""
        return None if self.watchdog_timeout is None else self.watchdog_timeout / 2

    def watchdog_due(self) -> bool:
        interval = self.ping_interval
        return interval is not None and time.monotonic() - self._last_ping >= interval

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """One-shot: ``notify("READY=1\\nSTATUS=up")``; False when not under systemd or the send failed."""
    env = os.environ if env is None else env
    address = _address(env.get("NOTIFY_SOCKET", ""))
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(message.encode("utf-8"), address)
    except OSError:
        return False
    return True
