"""`guichet config init` asks a technician's questions, checks each answer, writes 0600, never prints secrets."""

from __future__ import annotations

import stat
import tomllib

from click.testing import CliRunner

from config import load_config
from guichet.cli import main

TOKEN = "tok-3f9a1c7e5b"


def init(path, answers: str, *args: str):
    return CliRunner().invoke(main, ["--config", str(path), "config", "init", "--interactive", *args],
                              input=answers, catch_exceptions=False)


def test_interactive_enrolment_writes_a_checked_config(tmp_path):
    path = tmp_path / "guichet.toml"
    # agency, counter, URL, token (hidden), reader (empty = any), TPE port
    r = init(path, "ORAN-07\n2\nhttps://billing.example.dz\n" + TOKEN + "\n\n/dev/ttyACM0\n",
             "--state-dir", str(tmp_path / "state"))
    assert r.exit_code == 0, r.output
    assert TOKEN not in r.output  # typed without echo and never printed back
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = load_config(path)
    assert cfg.terminal.id == "ORAN-07-G2" and cfg.terminal.agency_id == "ORAN-07"
    assert cfg.server.url == "https://billing.example.dz/"
    assert cfg.server.token.get_secret_value() == TOKEN
    assert cfg.tpe.port == "/dev/ttyACM0"
    assert cfg.cards.reader == ""
    assert len(cfg.cards.hmac_key.get_secret_value()) == 64  # a fresh company-key placeholder


def test_wrong_answers_are_explained_and_asked_again(tmp_path):
    path = tmp_path / "guichet.toml"
    r = init(path, "ORAN 07\nORAN-07\ncounter two\nG3\nftp://x\nhttp://10.0.0.5:8080\nhttps://10.0.0.5:8443\n"
             + TOKEN + "\n\nttyUSB0\n\n")
    assert r.exit_code == 0, r.output
    assert "agency id 'ORAN 07'" in r.output
    assert "counter number 'COUNTER TWO'" in r.output
    assert "must start with https://" in r.output
    assert "plain http:// to 10.0.0.5: use https://" in r.output  # the token must not cross a network in clear
    assert "a device path like /dev/ttyACM0" in r.output
    data = tomllib.loads(path.read_text())
    assert data["terminal"]["id"] == "ORAN-07-G3"
    assert data["tpe"]["port"] == ""


def test_options_are_not_asked_again(tmp_path):
    path = tmp_path / "guichet.toml"
    r = init(path, TOKEN + "\n", "--agency-id", "TUN-01", "--terminal-id", "TUN-01-G4",
             "--server-url", "https://b.example.tn/", "--reader", "", "--tpe-port", "")
    assert r.exit_code == 0, r.output
    assert "Agency id" not in r.output and "Counter number" not in r.output
    assert load_config(path).terminal.id == "TUN-01-G4"


def test_without_a_terminal_nothing_is_asked_and_existing_files_are_kept(tmp_path):
    path = tmp_path / "guichet.toml"
    r = CliRunner().invoke(main, ["--config", str(path), "config", "init", "--agency-id", "ORAN-07"], input="")
    assert r.exit_code == 0, r.output  # stdin is not a terminal: the defaults, no prompt
    assert "Agency id" not in r.output
    before = path.read_bytes()
    r = init(path, "ORAN-07\n")
    assert r.exit_code == 2 and "already exists" in r.output
    assert path.read_bytes() == before
