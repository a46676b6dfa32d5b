"""agent.kiosk.kiosk_checks: what `guichet doctor` says about the kiosk (cage + foot) on this counter."""

from __future__ import annotations

from pathlib import Path

import config
from agent.kiosk import KIOSK_UNIT, kiosk_checks


def cfg(language: str = "fr") -> config.Config:
    return config.validate({"terminal": {"id": "ORAN-07-G1", "agency_id": "ORAN-07"},
                            "ui": {"language": language}}, source="test")


def by_name(checks: list) -> dict:
    return {c.name: c for c in checks}


def installed(tmp_path: Path, env: str | None = "XKB_DEFAULT_LAYOUT=fr\n") -> dict[str, Path]:
    """What install.sh --kiosk leaves: the terminal's settings and the keyboard layout."""
    foot = tmp_path / "foot.ini"
    foot.write_text("[main]\n")
    kenv = tmp_path / "kiosk.env"
    if env is not None:
        kenv.write_text(env)
    return {"foot_ini": foot, "kiosk_env": kenv}


def test_not_installed_is_a_skip_not_a_failure(tmp_path: Path) -> None:
    checks = by_name(kiosk_checks(cfg(), foot_ini=tmp_path / "none.ini", state=lambda u: "not-found"))
    assert checks["kiosk_unit"].skipped
    assert not any(c.failed for c in checks.values())


def test_installed_and_enabled_is_ok(tmp_path: Path) -> None:
    checks = by_name(kiosk_checks(cfg(), state=lambda u: "enabled", **installed(tmp_path)))
    assert checks["kiosk_unit"].ok and checks["kiosk_terminal"].ok
    assert checks["kiosk_keyboard"].ok and "layout fr" in checks["kiosk_keyboard"].detail


def test_disabled_unit_and_missing_layout_are_warnings_with_a_fix(tmp_path: Path) -> None:
    paths = installed(tmp_path, env="# nothing set\n")
    checks = by_name(kiosk_checks(cfg(), state=lambda u: "disabled", **paths))
    assert checks["kiosk_unit"].label == "WARN" and "systemctl enable --now" in checks["kiosk_unit"].fix
    assert checks["kiosk_keyboard"].label == "WARN" and "XKB_DEFAULT_LAYOUT" in checks["kiosk_keyboard"].fix


def test_missing_foot_settings_fail(tmp_path: Path) -> None:
    paths = installed(tmp_path)
    paths["foot_ini"].unlink()
    checks = by_name(kiosk_checks(cfg(), state=lambda u: "enabled", **paths))
    assert checks["kiosk_terminal"].failed and "install.sh --kiosk" in checks["kiosk_terminal"].fix


def test_arabic_on_the_console_without_the_kiosk_fails(tmp_path: Path) -> None:
    states = {"guichet.service": "enabled", KIOSK_UNIT: "not-found"}
    checks = by_name(kiosk_checks(cfg("ar"), foot_ini=tmp_path / "none.ini", state=states.__getitem__))
    assert checks["kiosk_arabic"].failed
    assert "install.sh --kiosk" in checks["kiosk_arabic"].fix


def test_missing_font_is_named(tmp_path: Path) -> None:
    checks = by_name(kiosk_checks(cfg(), foot_ini=tmp_path / "none.ini", font_file=tmp_path / "none.ttf",
                                  state=lambda u: "not-found"))
    assert checks["kiosk_font"].label == "WARN" and "fonts-dejavu-core" in checks["kiosk_font"].fix


def test_a_hostile_kiosk_env_is_read_bounded_and_never_raises(tmp_path: Path) -> None:
    paths = installed(tmp_path, env=None)
    paths["kiosk_env"].write_bytes(b"\xff\xfe\x00garbage" * 100000 + b"\nXKB_DEFAULT_LAYOUT=ar\n")
    checks = by_name(kiosk_checks(cfg(), state=lambda u: "enabled", **paths))
    assert checks["kiosk_keyboard"].label == "WARN"  # past the 64 KiB read: not trusted, says what to add


def test_a_console_install_is_not_taken_for_a_kiosk(tmp_path: Path) -> None:
    """install.sh without --kiosk writes the kiosk's unit file too, disabled, and no foot.ini: the doctor
    says nothing fails about a kiosk that is not this counter's mode, and an Arabic UI on the console
    fails (review 6, finding 2)."""
    states = {"guichet.service": "enabled", KIOSK_UNIT: "disabled"}
    checks = by_name(kiosk_checks(cfg("ar"), foot_ini=tmp_path / "none.ini", font_file=tmp_path / "none.ttf",
                                  state=states.__getitem__))
    assert checks["kiosk_unit"].skipped
    assert "kiosk_terminal" not in checks and "kiosk_keyboard" not in checks
    assert checks["kiosk_font"].label == "WARN"  # a console counter needs no DejaVu
    assert checks["kiosk_arabic"].failed and "install.sh --kiosk" in checks["kiosk_arabic"].fix
    assert [c.name for c in checks.values() if c.failed] == ["kiosk_arabic"]


def test_an_enabled_kiosk_without_its_terminal_settings_fails(tmp_path: Path) -> None:
    checks = by_name(kiosk_checks(cfg(), foot_ini=tmp_path / "none.ini", kiosk_env=tmp_path / "none.env",
                                  state=lambda u: "enabled" if u == KIOSK_UNIT else "disabled"))
    assert checks["kiosk_unit"].ok and checks["kiosk_terminal"].failed
