"""What the two Concert terminal simulators share: the test cards, the behaviours and their script, the
serving thread, idleness and line noise. ``eplus_sim.TpeSimulator`` (a pty) and ``v3_sim.V3Simulator`` (TCP)
are the two.

    class MySimulator(Simulator[MyExchange]):
        behaviours = {"approve": "approve after the think time", ...}
        thread_name = "tpe-my-sim"
        def serve(self) -> None: ...            # answer exchanges until self._stop is set
        def _close(self) -> None: ...           # let go of the line or port (after the thread ended)

    with MySimulator(behaviour="approve") as sim:
        sim.script("refuse")                    # the next exchange; then back to ``behaviour``
        sim.wait_idle()
        sim.exchanges[-1].outcome
"""

from __future__ import annotations

import random
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from typing import ClassVar, Generic, Self, TypeVar

from drivers.pan import luhn_check_digit


def _test_pan(prefix: str, length: int = 16) -> str:
    body = (prefix + "0" * length)[: length - 4] + "123"
    return body + luhn_check_digit(body)


# Test cards of the simulators (Luhn-valid, test BINs). Only their masked form goes on the line.
TEST_CARDS: dict[str, str] = {
    "EDAHABIA": _test_pan("628058"),
    "CIB": _test_pan("603620"),
    "VISA": _test_pan("476173"),
}
TEST_PANS: tuple[str, ...] = tuple(TEST_CARDS.values())

NOISE = b"\x00\x7f\x1f#?AZz~ \x11\x13"  # line noise that never forms a byte or tag the protocols react to

ExchangeT = TypeVar("ExchangeT")


class Simulator(ABC, Generic[ExchangeT]):
    """The terminal side of a Concert link. Runs in a thread (``start``/``stop``, or ``with``)."""

    behaviours: ClassVar[dict[str, str]]
    thread_name: ClassVar[str]

    def __init__(
        self,
        *,
        behaviour: str,
        think: float,
        pin_delay: float,
        card: str,
        log: Callable[[str], None] | None,
        seed: int | None,
    ) -> None:
        self._check(behaviour)
        if card not in TEST_CARDS:
            raise ValueError(f"card: {card!r} is not one of {', '.join(TEST_CARDS)}")
        self._behaviour = behaviour
        self.think = think
        self.pin_delay = pin_delay
        self.card = card
        self.exchanges: list[ExchangeT] = []
        self._script: deque[str] = deque()
        self._log = log or (lambda _m: None)
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0
        self.busy = threading.Event()  # set while an exchange is in progress
        self.unplugged = threading.Event()  # the line is gone for good (E+); a V3 unplug drops one connection

    # -- behaviours ----------------------------------------------------------------------------------------

    def _check(self, behaviour: str) -> None:
        if behaviour not in self.behaviours:
            raise ValueError(f"behaviour: {behaviour!r} is not one of {', '.join(self.behaviours)}")

    @property
    def behaviour(self) -> str:
        """What the terminal does with every exchange the script does not name."""
        return self._behaviour

    @behaviour.setter
    def behaviour(self, value: str) -> None:
        self._check(value)
        self._behaviour = value
        self._switched(value)

    def _switched(self, behaviour: str) -> None:
        """A new standing behaviour (V3: "silent" switches the terminal off)."""

    def script(self, *behaviours: str) -> None:
        """Behaviours for the next exchanges, in order; afterwards ``behaviour`` applies again."""
        for b in behaviours:
            self._check_scripted(b)
        self._script.extend(behaviours)

    def _check_scripted(self, behaviour: str) -> None:
        self._check(behaviour)

    def _next_behaviour(self) -> str:
        return self._script.popleft() if self._script else self.behaviour

    def _noise(self) -> bytes:
        return bytes(self._rng.choice(NOISE) for _ in range(self._rng.randint(3, 12)))

    # -- control -------------------------------------------------------------------------------------------

    def _idle(self) -> bool:
        return not self.busy.is_set()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait (bounded) until the exchange in progress is over; True if idle."""
        end = time.monotonic() + timeout
        while not self._idle() and time.monotonic() < end:
            time.sleep(0.005)
        return self._idle()

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.serve, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @abstractmethod
    def serve(self) -> None:
        """Answer exchanges until ``stop()``."""

    @abstractmethod
    def _close(self) -> None:
        """Let go of the line or the port."""
