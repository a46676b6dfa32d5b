"""Technicians write, check and change the config from the CLI; mistakes name the key and change nothing."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from config import ConfigError, load_config
from guichet.cli import main


def run(path: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(path), *args])


def test_init_writes_a_private_valid_config_with_a_fresh_key(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "guichet.toml"
    r = run(path, "config", "init", "--terminal-id", "ORAN-07-G2", "--agency-id", "ORAN-07")
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = load_config(path)
    assert cfg.terminal.id == "ORAN-07-G2" and len(cfg.cards.hmac_key.get_secret_value()) == 64
    assert "# guichet configuration" in path.read_text()  # the comments are kept for the technician
    assert run(path, "config", "init").exit_code == 2  # never overwrites without --force


def test_show_hides_secrets(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    run(path, "config", "init")
    assert run(path, "config", "set", "server.token", "s3cret-token-value").exit_code == 0
    r = run(path, "config", "show")
    assert r.exit_code == 0
    assert "s3cret-token-value" not in r.output and load_config(path).cards.hmac_key.get_secret_value() not in r.output
    assert 'token = "(set, hidden)"' in r.output
    assert "s3cret" not in run(path, "config", "set", "server.token", "s3cret-2").output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[sync]\nbatch_size = 900\n", "sync.batch_size: Input should be less than or equal to 500"),
        ("[terminal]\ncolour = 'blue'\n", "terminal.colour: unknown key"),
        ("[terminal]\ncurrency = 'USD'\n", "terminal.currency: unknown currency 'USD'"),
        ("[tpe]\nframing = '9N2'\n", "tpe.framing"),
        ("[cards]\n[[cards.schemes]]\nname = 'CIB'\naids = ['zz']\n", "cards.schemes.0.aids"),
        ("[server\nurl = 1", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "g.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as e:
        load_config(path)
    assert expected in str(e.value) and str(path) in str(e.value)
    r = run(path, "config", "check")
    assert r.exit_code == 2 and expected in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_set_refuses_invalid_values_and_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    run(path, "config", "init")
    before = path.read_text()
    for key, value, msg in [
        ("sync.batch_size", "0", "sync.batch_size"),
        ("sync.batch_size", "ten", "sync.batch_size: 'ten'"),
        ("terminal.nope", "x", "terminal.nope: unknown key"),
        ("offline.max_count", "-1", "offline.max_count"),
    ]:
        r = run(path, "config", "set", key, value)
        assert r.exit_code == 2 and msg in r.output, r.output
    assert path.read_text() == before
    assert run(path, "config", "set", "sync.batch_size", "250").exit_code == 0
    assert load_config(path).sync.batch_size == 250
    assert "# guichet configuration" in path.read_text()


def test_check_flags_a_config_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    run(path, "config", "init")
    assert run(path, "config", "check").exit_code == 0
    path.chmod(0o644)
    r = run(path, "config", "check")
    assert r.exit_code == 2 and "chmod 600" in r.output


def test_commands_needing_a_config_exit_2_when_it_is_missing(tmp_path: Path) -> None:
    r = run(tmp_path / "missing.toml", "queue", "status")
    assert r.exit_code == 2 and "no such config file" in r.output


def test_set_a_decimal_on_a_key_written_as_an_integer(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    run(path, "config", "init")
    assert run(path, "config", "set", "sync.interval", "0.5").exit_code == 0
    assert load_config(path).sync.interval == 0.5
