"""Fixtures for the TPE tests: the Concert simulator on a real pty, and links with short timeouts.

    def test_x(tpe_sim, tpe_link):
        sim = tpe_sim(behaviour="refuse")          # running in a thread; stopped at teardown
        result = tpe_link(sim).pay(123450, "DZD")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import config
from config import Config
from drivers.concert import ConcertLink
from sandbox.tpe import TpeSimulator

FAST_BAUD = 115200
# Short but generous against a loaded CI machine: every wait is bounded by these.
TPE_TIMEOUTS = {"ack_timeout": 0.5, "answer_timeout": 1.5, "max_retries": 3, "cancel_grace": 0.6}


@pytest.fixture
def tpe_sim() -> Iterator[Callable[..., TpeSimulator]]:
    sims: list[TpeSimulator] = []

    def make(**kw: Any) -> TpeSimulator:
        kw.setdefault("baud", FAST_BAUD)
        kw.setdefault("framing", "7E1")
        kw.setdefault("think", 0.0)
        kw.setdefault("pin_delay", 0.3)
        kw.setdefault("ack_timeout", 0.5)
        sim = TpeSimulator.on_pty(**kw)
        sims.append(sim)
        return sim.start()

    yield make
    for sim in sims:
        sim.stop()


@pytest.fixture
def tpe_link() -> Callable[..., ConcertLink]:
    def make(sim: TpeSimulator, *, port: str | None = None, **kw: Any) -> ConcertLink:
        opts: dict[str, Any] = {"baud": sim.baud, "framing": sim.framing, **TPE_TIMEOUTS, **kw}
        return ConcertLink(port or sim.path, **opts)

    return make


def tpe_config(port: str, *, baud: int = FAST_BAUD, framing: str = "7E1", **tpe: Any) -> Config:
    return config.validate(
        {
            "tpe": {"port": port, "baud": baud, "framing": framing, **TPE_TIMEOUTS, **tpe},
            "cards": {
                "hmac_key": "k" * 32,
                "schemes": [
                    {"name": "EDAHABIA", "bins": ["628058"]},
                    {"name": "CIB", "bins": ["603620"]},
                    {"name": "VISA", "bins": ["4"]},
                ],
            },
        }
    )
