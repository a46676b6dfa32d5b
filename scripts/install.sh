#!/usr/bin/env bash
# Install guichet on a counter PC (Debian 12). Run as root from a checkout of the repository:
#
#   sudo scripts/install.sh                 # console counter: cashier UI on tty1, TERM=linux (guichet.service)
#   sudo scripts/install.sh --headless      # no screen: guichet-headless.service
#   sudo scripts/install.sh --kiosk         # graphics: cage + foot full screen on tty1 (guichet-kiosk.service),
#                                           # Arabic drawn; needs the Debian packages cage, foot, fonts-dejavu-core
#   sudo scripts/install.sh --dry-run       # print what would be done, change nothing
#
# Creates the service user `guichet` (group dialout for serial terminals), a virtualenv under /opt/guichet,
# /etc/guichet (the config: asked for interactively on a terminal, mode 0600) and /var/lib/guichet
# (the journal, mode 0700), installs and enables the unit, then runs `guichet doctor`.
# Running it again upgrades the virtualenv and the unit; an existing config and journal are never touched.
set -euo pipefail

prefix=/opt/guichet
confdir=/etc/guichet
statedir=/var/lib/guichet
unitdir=/etc/systemd/system
user=guichet
unit=guichet.service
dry_run=0
start=1
with_debs=0
src="$(cd "$(dirname "$0")/.." && pwd)"

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; echo "options: --headless --kiosk --dry-run --no-start --with-debs --prefix DIR"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --headless) unit=guichet-headless.service ;;
        --kiosk) unit=guichet-kiosk.service ;;
        --dry-run) dry_run=1 ;;
        --no-start) start=0 ;;
        --with-debs) with_debs=1 ;;
        --prefix) prefix="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

venv="$prefix/venv"
units="guichet.service guichet-headless.service guichet-kiosk.service"
exe="$venv/bin/guichet"
config="$confdir/guichet.toml"

logind_conf=/etc/systemd/logind.conf.d/guichet-kiosk.conf
sysctl_conf=/etc/sysctl.d/90-guichet-kiosk.conf
cad=$unitdir/ctrl-alt-del.target

say() { printf 'install: %s\n' "$*"; }
# put FILE TEXT: FILE (mode 0644) holds TEXT, written whole (a temporary file renamed over it).
put() {
    if [ "$dry_run" -eq 1 ]; then printf '+ write %s\n' "$1"; return; fi
    printf '%s\n' "$2" >"$1.tmp" && chmod 0644 "$1.tmp" && mv "$1.tmp" "$1"
}
run() {
    if [ "$dry_run" -eq 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi
}

if [ "$dry_run" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo scripts/install.sh)" >&2
    exit 1
fi
[ -f "$src/pyproject.toml" ] || { echo "install.sh: $src is not a guichet checkout" >&2; exit 1; }

# The service user must be able to run the interpreter the venv points at: Debian's own python3, not one
# under a developer's home (pyenv in /root is mode 0700). PYTHON= overrides.
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x /usr/bin/python3 ]; then python=/usr/bin/python3; else python=python3; fi
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "install.sh: Python 3.11 or later is needed ($python)" >&2
    exit 1
fi

kiosk_debs="cage foot fonts-dejavu-core"
if [ "$with_debs" -eq 1 ]; then
    say "Debian packages"
    run apt-get install -y --no-install-recommends pcscd libpcsclite1 python3-venv
    [ "$unit" = guichet-kiosk.service ] && run apt-get install -y --no-install-recommends $kiosk_debs
fi
if [ "$unit" = guichet-kiosk.service ] && [ "$dry_run" -eq 0 ]; then
    for exe_ in /usr/bin/cage /usr/bin/foot /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf; do
        [ -e "$exe_" ] || { echo "install.sh: --kiosk needs $exe_ (apt-get install $kiosk_debs, or --with-debs)" >&2; exit 1; }
    done
fi

say "service user $user"
if ! id "$user" >/dev/null 2>&1; then
    run useradd --system --user-group --home-dir "$statedir" --no-create-home \
        --shell /usr/sbin/nologin --comment "guichet payment agent" "$user"
fi
# Serial payment terminals (/dev/ttyUSB*, /dev/ttyACM*) belong to group dialout.
run usermod -a -G dialout "$user"

say "virtualenv $venv"
run install -d -m 0755 "$prefix"
[ -x "$venv/bin/python" ] || run "$python" -m venv "$venv"
if [ "$dry_run" -eq 0 ] && id "$user" >/dev/null 2>&1 && ! runuser -u "$user" -- "$venv/bin/python" -c pass 2>/dev/null; then
    echo "install.sh: $user cannot run $venv/bin/python (it points at $(readlink -f "$venv/bin/python"));" \
        "remove $venv and run again with PYTHON=/usr/bin/python3" >&2
    exit 1
fi
run "$venv/bin/pip" install --quiet --upgrade pip
run "$venv/bin/pip" install --quiet "$src"
run install -d -m 0755 "$prefix/docs"
for doc in "$src"/docs/*.md; do
    [ -e "$doc" ] && run install -m 0644 "$doc" "$prefix/docs/"
done

say "config $config"
run install -d -m 0750 -o root -g "$user" "$confdir"
if [ ! -e "$config" ]; then
    if [ -t 0 ]; then
        run "$exe" --config "$config" config init --interactive
    else
        run "$exe" --config "$config" config init --no-interactive
        say "edit $config (terminal.id, terminal.agency_id, server.url, server.token), then: guichet config check"
    fi
fi
run chown "$user:$user" "$config"
run chmod 0600 "$config"

say "state directory $statedir"
run install -d -m 0700 -o "$user" -g "$user" "$statedir"

if [ "$unit" = guichet-kiosk.service ]; then
    # The kiosk's terminal settings (font, no key that opens another window) and its keyboard layout.
    say "kiosk $prefix/kiosk"
    run install -d -m 0755 "$prefix/kiosk"
    run install -m 0644 "$src/scripts/kiosk-foot.ini" "$prefix/kiosk/foot.ini"
    if [ ! -e "$confdir/kiosk.env" ]; then
        run install -m 0644 "$src/scripts/kiosk.env" "$confdir/kiosk.env"
    fi
    # Lock the counter's keyboard to the cashier's session (docs/kiosk.md "Locked down"): no login prompt
    # on another VT (Ctrl+Alt+F2) while the session restarts, no power key, no magic SysRq (Alt+SysRq+R/K/B),
    # no reboot on Ctrl+Alt+Del. Each file is ours alone; uninstall.sh removes them.
    say "kiosk lockdown: $logind_conf, $sysctl_conf, $cad masked"
    run install -d -m 0755 "$(dirname "$logind_conf")"
    put "$logind_conf" "$(printf '%s\n' '# guichet kiosk (scripts/install.sh --kiosk): no other VT, no power key' \
        '[Login]' 'NAutoVTs=0' 'ReserveVT=0' 'HandlePowerKey=ignore')"
    put "$sysctl_conf" "$(printf '%s\n' '# guichet kiosk (scripts/install.sh --kiosk): no magic SysRq keys' \
        'kernel.sysrq = 0')"
    if [ ! -L "$cad" ] || [ "$(readlink "$cad")" != /dev/null ]; then
        if [ -e "$cad" ] || [ -L "$cad" ]; then
            say "$cad exists and is not a mask: left as it is"
        else
            # The marker says the mask is ours: uninstall.sh lifts it only then.
            run ln -s /dev/null "$cad"
            run touch "$prefix/kiosk/masked-ctrl-alt-del"
        fi
    fi
    if [ "$start" -eq 1 ] && [ "$dry_run" -eq 1 -o -d /run/systemd/system ]; then
        run sysctl -q -p "$sysctl_conf" || true
    fi
fi

say "unit $unit"
for u in $units; do
    if [ "$dry_run" -eq 1 ]; then
        printf '+ sed s#/opt/guichet#%s# %s > %s\n' "$prefix" "$src/systemd/$u" "$unitdir/$u"
    else
        sed "s#/opt/guichet#$prefix#g" "$src/systemd/$u" >"$unitdir/$u.tmp"
        chmod 0644 "$unitdir/$u.tmp"
        mv "$unitdir/$u.tmp" "$unitdir/$u"
    fi
done
if [ "$dry_run" -eq 0 ] && [ ! -d /run/systemd/system ]; then
    # A chroot, a container or an image being prepared: the units are in place, systemd is not running.
    say "systemd is not running here: $unit is installed but not enabled; once booted with systemd:"
    say "  systemctl enable --now $unit"
else
    run systemctl daemon-reload
    # --no-start changes the next boot only: a live counter (the console UI mid-payment) is not stopped.
    now=--now
    [ "$start" -eq 1 ] || now=
    for other in $units; do
        [ "$other" = "$unit" ] || run systemctl disable $now "$other" 2>/dev/null || true
    done
    run systemctl enable $now "$unit"
fi

say "checking the installation"
run runuser -u "$user" -- "$exe" --config "$config" doctor || \
    say "doctor found problems: fix them (each says how), then: systemctl restart $unit"
say "done. Logs: journalctl -u $unit -f"
