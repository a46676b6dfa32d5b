"""`guichet doctor`'s kiosk checks: is this counter set up to show the cashier UI full screen (cage + foot)?

    from agent.kiosk import kiosk_checks
    for c in kiosk_checks(cfg):           # cfg: a loaded Config, or None when it did not load
        print(c.label, c.name, c.detail)
    ok   kiosk_programs  cage and foot installed
    ok   kiosk_font      DejaVu Sans Mono (Arabic, Latin, box drawing): /usr/share/fonts/...
    skip kiosk_unit      not checked: the kiosk is not installed (scripts/install.sh --kiosk)

The kiosk (systemd/guichet-kiosk.service, docs/kiosk.md) is optional: without it a counter runs the UI on
the Linux console (guichet.service), which has no Arabic glyphs. So the checks only warn, except one:
`ui.language = "ar"` with the console service enabled and no kiosk is a failure, since the cashier would
get a UI that refuses to start in Arabic. Nothing here changes the system; each probe is bounded.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from agent.doctor import Check, failed, passed, skipped, warning
from config import Config

KIOSK_UNIT = "guichet-kiosk.service"
CONSOLE_UNIT = "guichet.service"
PROGRAMS = ("cage", "foot")
FONT_FILE = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")
KIOSK_ENV = Path("/etc/guichet/kiosk.env")
FOOT_INI = Path("/opt/guichet/kiosk/foot.ini")
SYSTEMCTL_TIMEOUT = 5.0
DEBS = "cage foot fonts-dejavu-core"


def unit_state(unit: str) -> str:
    """`systemctl is-enabled UNIT` ("enabled", "disabled", "not-found"...), or "unknown" without systemd."""
    if not Path("/run/systemd/system").is_dir() or shutil.which("systemctl") is None:
        return "unknown"
    try:
        out = subprocess.run(
            ["systemctl", "is-enabled", unit], capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (out.stdout.strip() or "not-found").splitlines()[0]


def kiosk_checks(
    cfg: Config | None,
    *,
    kiosk_env: Path = KIOSK_ENV,
    foot_ini: Path = FOOT_INI,
    font_file: Path = FONT_FILE,
    state: Callable[[str], str] = unit_state,
) -> list[Check]:
    """The kiosk's checks, in the order a technician fixes them (paths overridable for tests).

    ``state`` is called with a unit name and returns what `systemctl is-enabled` says.
    """
    checks: list[Check] = []
    # install.sh writes every unit file whatever the mode, so a unit file says nothing: the kiosk is this
    # counter's mode when its unit is enabled, or when install.sh --kiosk left its terminal settings.
    kiosk_state = state(KIOSK_UNIT)
    installed = kiosk_state == "enabled" or foot_ini.is_file()
    missing = [p for p in PROGRAMS if shutil.which(p) is None and not Path("/usr/bin", p).exists()]
    if missing:
        make = warning if not installed else failed
        checks.append(make("kiosk_programs", f"{' and '.join(missing)} not installed",
                           f"apt-get install {DEBS}"))
    else:
        checks.append(passed("kiosk_programs", "cage and foot installed"))
    if font_file.is_file():
        checks.append(passed("kiosk_font", f"DejaVu Sans Mono (Arabic, Latin, box drawing): {font_file}"))
    else:
        make = warning if not installed else failed
        checks.append(make("kiosk_font", f"{font_file} missing: foot would draw Arabic as boxes",
                           "apt-get install fonts-dejavu-core"))

    if not installed:
        checks.append(skipped("kiosk_unit", "the kiosk is not installed (scripts/install.sh --kiosk)"))
    else:
        enabled = kiosk_state
        if enabled == "enabled":
            checks.append(passed("kiosk_unit", f"{KIOSK_UNIT} enabled: cage + foot on tty1 at boot"))
        elif enabled == "unknown":
            checks.append(skipped("kiosk_unit", "systemd is not running here"))
        else:
            checks.append(warning("kiosk_unit", f"{KIOSK_UNIT} is {enabled}: the counter boots without the UI",
                                  f"systemctl enable --now {KIOSK_UNIT}"))
        if not foot_ini.is_file():
            checks.append(failed("kiosk_terminal", f"{foot_ini} missing: foot would use its defaults "
                                 "(no Arabic font chosen, keys that open other windows)",
                                 "run scripts/install.sh --kiosk again"))
        else:
            checks.append(passed("kiosk_terminal", f"foot settings {foot_ini}"))
        checks.append(_keyboard(kiosk_env))

    if cfg is not None and cfg.ui.language == "ar":
        console = (state(CONSOLE_UNIT))
        if console == "enabled" and not installed:
            checks.append(failed("kiosk_arabic", "ui.language is ar but the UI runs on the Linux console, "
                                 "which has no Arabic glyphs", "sudo scripts/install.sh --kiosk"))
        else:
            checks.append(passed("kiosk_arabic", "ui.language is ar: the kiosk draws Arabic"
                                 if installed else "ui.language is ar; the console service is not enabled"))
    return checks


def _keyboard(env: Path) -> Check:
    """The layout the keyboard and the barcode scanner type with (XKB_DEFAULT_LAYOUT in kiosk.env)."""
    try:
        text = env.read_text(encoding="utf-8", errors="replace")[:65536]
    except OSError:
        return warning("kiosk_keyboard", f"{env} missing: cage uses the US layout",
                       f"echo XKB_DEFAULT_LAYOUT=fr > {env}")
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "XKB_DEFAULT_LAYOUT" and value.strip():
            layout = value.strip().strip("\"'")
            return passed("kiosk_keyboard", f"layout {layout} (set the barcode scanner to the same layout)")
    return warning("kiosk_keyboard", f"{env} sets no XKB_DEFAULT_LAYOUT: cage uses the US layout",
                   f"add XKB_DEFAULT_LAYOUT=fr to {env}")
