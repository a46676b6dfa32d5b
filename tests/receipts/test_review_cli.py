"""Review 1, findings 9, 10 and 15: the seal key is generated at init, long enough, never echoed, and a missing
one is "cannot verify" (exit 2), not a forgery; hostile pictures are one line (exit 2); a test print opens no
drawer and carries no seal."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tomllib
import zlib
from pathlib import Path

import pytest
from PIL import Image

from sandbox.printer import VirtualPrinter
from tests.receipts.conftest import KEY, one_bill
from tests.receipts.test_cli import ROOT, Run
from ui.receipts import seal_text

BASE = """
[terminal]
id = "ORAN-07-G2"
agency_id = "ORAN-07"
currency = "DZD"
[state]
dir = "{state}"
[printer]
url = "none"
drawer = true
"""


def runner(cfg: Path) -> Run:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GUICHET_CONFIG": str(cfg)}
        return subprocess.run([sys.executable, "-m", "guichet", *args], capture_output=True, text=True, env=env,
                              cwd=ROOT, timeout=60)

    return run


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "guichet.toml"
    cfg.write_text(BASE.format(state=tmp_path / "state"))
    cfg.chmod(0o600)
    return cfg


def test_init_generates_a_signing_key_and_set_hides_it(tmp_path: Path) -> None:
    cfg = tmp_path / "new.toml"
    r = runner(cfg)("config", "init", "--terminal-id", "ORAN-07-G2", "--agency-id", "ORAN-07",
                    "--server-url", "https://127.0.0.1:8443/")
    assert r.returncode == 0, r.stderr
    key = tomllib.loads(cfg.read_text())["receipts"]["signing_key"]
    assert len(bytes.fromhex(key)) == 32
    secret = "k" * 40
    r = runner(cfg)("config", "set", "receipts.signing_key", secret)
    assert r.returncode == 0 and secret not in r.stdout + r.stderr and "(hidden)" in r.stdout
    weak = runner(cfg)("config", "set", "receipts.signing_key", "2718")
    assert weak.returncode == 2 and "receipts.signing_key" in weak.stderr and "at least 32 bytes" in weak.stderr


def test_verify_without_a_key_cannot_verify(config: Path) -> None:
    r = runner(config)("receipt", "verify", seal_text(one_bill(), KEY))
    assert r.returncode == 2 and r.stderr.strip() == "guichet: cannot verify: [receipts] signing_key is not set"


def _bomb(path: Path, side: int = 13000) -> None:
    row = b"\x00" + b"\xff" * ((side + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_hostile_pictures_are_one_line(config: Path, tmp_path: Path) -> None:
    pytest.importorskip("zxingcpp")
    with config.open("a") as f:
        f.write(f'[receipts]\nsigning_key = "{KEY.decode()}"\n')
    lab = tmp_path / "lab.tif"
    Image.new("LAB", (64, 64)).save(lab)
    good = tmp_path / "ok.png"
    Image.new("L", (64, 64), 255).save(good)
    raw = bytearray(good.read_bytes())
    raw[raw.find(b"IDAT") + 6] ^= 0xFF
    broken = tmp_path / "crc.png"
    broken.write_bytes(bytes(raw))
    bomb = tmp_path / "bomb.png"
    _bomb(bomb)
    for picture in (lab, broken, bomb):
        r = runner(config)("receipt", "verify", str(picture))
        assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert "more than 4000000 pixels" in r.stderr


def test_a_test_print_opens_no_drawer_and_is_not_sealed(config: Path, tmp_path: Path) -> None:
    with config.open("a") as f:
        f.write(f'[receipts]\nsigning_key = "{KEY.decode()}"\n')
    with VirtualPrinter(tmp_path / "paper") as vp:
        vp.listen("127.0.0.1", 0)
        r = runner(config)("receipt", "test", "--printer", vp.url)
        assert r.returncode == 0, r.stderr
        job = vp.wait_jobs(1)[0].job
    assert job.drawer_kicks == 0 and "no QR seal" in r.stderr
