"""PCI DSS: after the suite's payment runs, no test PAN is anywhere in a state directory, a journal or a log.

This package sorts last, so it runs after every other area (`./dev test` runs the others on two workers, then
this package alone with GUICHET_PCI_SCAN naming their temp root). It also makes its own card payment (reader and
TPE) with debug logging to a file first, so it checks something even when run alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import config
from sandbox.cards.profiles import PROFILES, sandbox_cards_config
from sandbox.cards.profiles import TEST_PANS as CARD_PANS
from sandbox.tpe import TEST_PANS as TPE_PANS
from tests.cards.conftest import _vpcd_reader, vpcd_lock, wait_presence
from tests.core.conftest import with_changes

ALL_PANS = sorted({*CARD_PANS, *TPE_PANS})
GUICHET = [sys.executable, "-m", "guichet"]


def scan(root: Path) -> list[str]:
    """Files under `root` holding a test PAN (as ASCII digits or BCD), as 'path: pan'."""
    hits = []
    needles = [(p, p.encode()) for p in ALL_PANS] + [(p, bytes.fromhex(p)) for p in ALL_PANS if len(p) % 2 == 0]
    for path in root.rglob("*"):
        try:
            if not path.is_file() or path.is_symlink() or path.stat().st_size > 64 * 1024 * 1024:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        hits += [f"{path}: {pan}" for pan, needle in needles if needle in data]
    return hits


@pytest.fixture
def card_payment_state(tmp_path: Path, billing_server, billing_config, seeded_references) -> Path:
    """One card_reader payment and one card_terminal payment through the real CLI, logging at DEBUG to files."""
    reader, why = _vpcd_reader()
    if reader is None:
        if os.environ.get("CI"):
            pytest.fail(f"pcscd + vpcd are required in CI: {why}")
        pytest.skip(why)
    cfg = with_changes(billing_config, cards=sandbox_cards_config(reader=reader))
    path = config.write_config(cfg, tmp_path / "guichet.toml")
    env = {**os.environ, "GUICHET_CONFIG": str(path), "GUICHET_LOG_LEVEL": "DEBUG"}
    env.pop("GUICHET_CRASHPOINT", None)
    from sandbox.cards.card import VirtualCard
    from sandbox.cards.vpcd import VpcdLink

    with vpcd_lock():
        wait_presence(reader, False)
        link = VpcdLink(VirtualCard(PROFILES["cib"])).start()
        try:
            wait_presence(reader, True)
            r = subprocess.run([*GUICHET, "pay", seeded_references[0], "--method", "card_reader", "--json"],
                               capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
        finally:
            link.remove()
            wait_presence(reader, False)
    (tmp_path / "pay.stdout.log").write_text(r.stdout)
    (tmp_path / "pay.stderr.log").write_text(r.stderr)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "uploaded"
    r = subprocess.run([*GUICHET, "card", "read", "--reader", reader, "--timeout", "0.5", "--json"],
                       capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    (tmp_path / "card-read.log").write_text(r.stdout + r.stderr)
    return tmp_path


def test_no_test_pan_in_state_dirs_journals_or_logs(card_payment_state: Path, tmp_path_factory) -> None:
    assert PROFILES["cib"].pan in ALL_PANS and len(ALL_PANS) >= 10
    roots = [tmp_path_factory.getbasetemp()]  # every test's tmp_path: state dirs, journals, server DBs, logs
    # ./dev test runs the suite on two workers first, then this package over what they left (GUICHET_PCI_SCAN)
    roots += [Path(p) for p in os.environ.get("GUICHET_PCI_SCAN", "").split(os.pathsep) if p]
    hits = [h for root in roots for h in scan(root)]
    assert hits == [], "full card numbers stored:\n" + "\n".join(hits[:20])


def test_the_scan_finds_a_pan_where_there_is_one(tmp_path: Path) -> None:
    (tmp_path / "leak.log").write_text(f"oops {PROFILES['cib'].pan} oops")
    assert scan(tmp_path) == [f"{tmp_path / 'leak.log'}: {PROFILES['cib'].pan}"]
