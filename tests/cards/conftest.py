"""Fixtures for the card tests: the real pcscd + vpcd reader, and virtual cards inserted one at a time.

Tests that need the reader skip with a reason when pcscd/vpcd is missing, and fail instead when $CI is set.
Insertions are serialised across processes with a lock file (there is one vpcd slot), and every fixture
waits, bounded, until pcscd sees the card present (and absent again after the test).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import config
from sandbox.cards.card import Profile, VirtualCard
from sandbox.cards.counters import CounterStore
from sandbox.cards.profiles import PROFILES, sandbox_cards_config
from sandbox.cards.vpcd import VPCD_HOST, VPCD_PORT, VpcdLink, slot, vpcd_listening

SETTLE = 8.0  # seconds pcscd may take to notice an insertion/removal (it polls vpcd ~every 0.4 s)


def _vpcd_reader() -> tuple[str | None, str]:
    try:
        from drivers import pcsc

        names = pcsc.list_readers()
    except Exception as e:  # noqa: BLE001
        return None, f"PC/SC unavailable: {e}"
    vpcd = [n for n in names if n.startswith("Virtual PCD") and n.endswith("00 00")]
    if not vpcd:
        return None, f"no vpcd reader among {names}"
    if not vpcd_listening():
        return None, f"vpcd not listening on {VPCD_HOST}:{VPCD_PORT}"
    return vpcd[0], ""


@pytest.fixture(scope="session")
def vpcd_reader() -> str:
    name, why = _vpcd_reader()
    if name is None:
        if os.environ.get("CI"):
            pytest.fail(f"pcscd + vpcd are required in CI: {why}")
        pytest.skip(f"needs pcscd with the vpcd virtual reader: {why}")
    return name


def card_present(reader: str) -> bool:
    from drivers import pcsc

    return any(s.name == reader and s.card_present for s in pcsc.reader_states())


def wait_presence(reader: str, present: bool, timeout: float = SETTLE) -> None:
    deadline = time.monotonic() + timeout
    while card_present(reader) != present:
        if time.monotonic() > deadline:
            raise AssertionError(f"pcscd did not see the card {'inserted' if present else 'removed'} in {timeout} s")
        time.sleep(0.02)


@contextmanager
def vpcd_lock() -> Iterator[None]:
    with slot():
        yield



@pytest.fixture
def insert(vpcd_reader: str) -> Callable[..., object]:
    """``with insert("cib") as link:`` a card present in the reader; taken out (and seen out) after.

    The cards of one test keep their counters in one store (``link.card.counters``), so inserting the same
    profile twice is one card inserted twice: its ATC grows, as the sandbox acquirer's strict ATC rule expects.
    ``insert(profile, counters=store)`` uses another store."""
    store = CounterStore()

    @contextmanager
    def _insert(profile: str | Profile, wait: bool = True, counters: CounterStore | None = None
                ) -> Iterator[VpcdLink]:
        prof = PROFILES[profile] if isinstance(profile, str) else profile
        with vpcd_lock():
            wait_presence(vpcd_reader, False)
            link = VpcdLink(VirtualCard(prof, counters=store if counters is None else counters)).start()
            try:
                if wait:
                    wait_presence(vpcd_reader, True)
                yield link
            finally:
                link.remove()
                wait_presence(vpcd_reader, False)

    return _insert


@pytest.fixture
def cards_config() -> config.Config:
    return config.validate({"cards": sandbox_cards_config()})


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A config file for the CLI, with the test schemes (fake CIB/Edahabia values)."""
    import tomlkit

    data = {"cards": sandbox_cards_config(), "state": {"dir": str(tmp_path / "state")}}
    path = tmp_path / "guichet.toml"
    path.write_text(tomlkit.dumps(data))
    path.chmod(0o600)
    return path
