#!/usr/bin/env bash
# Remove guichet from a counter PC. The journal (/var/lib/guichet) and the config (/etc/guichet) stay
# unless --purge: they hold payments that may not have reached the billing server yet.
#
#   sudo scripts/uninstall.sh               # units and /opt/guichet removed; journal and config kept
#   sudo scripts/uninstall.sh --purge       # also the journal, the config and the service user
#                                           # (refused while payments wait for upload, unless --force)
#   sudo scripts/uninstall.sh --dry-run     # print what would be done
set -euo pipefail

prefix=/opt/guichet
confdir=/etc/guichet
statedir=/var/lib/guichet
unitdir=/etc/systemd/system
user=guichet
purge=0
force=0
dry_run=0

while [ $# -gt 0 ]; do
    case "$1" in
        --purge) purge=1 ;;
        --force) force=1 ;;
        --dry-run) dry_run=1 ;;
        --prefix) prefix="$2"; shift ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "uninstall.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

say() { printf 'uninstall: %s\n' "$*"; }
run() {
    if [ "$dry_run" -eq 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi
}

if [ "$dry_run" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "uninstall.sh: run as root" >&2
    exit 1
fi

exe="$prefix/venv/bin/guichet"
if [ "$purge" -eq 1 ] && [ "$force" -eq 0 ] && [ -x "$exe" ] && [ -e "$statedir/journal.db" ]; then
    # Ask the agent itself how many payments are still unsent before deleting its journal.
    pending="$("$exe" --config "$confdir/guichet.toml" queue status --json 2>/dev/null \
        | "$prefix/venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))' \
        2>/dev/null || echo unknown)"
    if [ "$pending" != 0 ]; then
        echo "uninstall.sh: the journal holds unsent payments ($pending); run \`guichet sync --once\`" \
             "until the queue is empty, or add --force to delete them" >&2
        exit 1
    fi
fi

say "stopping and removing the units"
systemd=1
[ "$dry_run" -eq 0 ] && [ ! -d /run/systemd/system ] && systemd=0  # a chroot or container: nothing runs
for u in guichet.service guichet-headless.service guichet-kiosk.service; do
    [ "$systemd" -eq 1 ] && { run systemctl disable --now "$u" 2>/dev/null || true; }
    run rm -f "$unitdir/$u"
done
# The kiosk's lockdown (install.sh --kiosk): the logind and sysctl files are ours; the Ctrl+Alt+Del mask
# only when install.sh made it (its marker under $prefix/kiosk).
cad="$unitdir/ctrl-alt-del.target"
if [ -e "$prefix/kiosk/masked-ctrl-alt-del" ] && [ -L "$cad" ] && [ "$(readlink "$cad")" = /dev/null ]; then
    run rm -f "$cad"
fi
run rm -f /etc/systemd/logind.conf.d/guichet-kiosk.conf /etc/sysctl.d/90-guichet-kiosk.conf
if [ -d /etc/systemd/logind.conf.d ] && [ -z "$(ls -A /etc/systemd/logind.conf.d)" ]; then
    run rmdir /etc/systemd/logind.conf.d
fi
if [ "$systemd" -eq 1 ]; then
    run systemctl daemon-reload || true
    # Our units conflicted with the login prompt on tty1: give the screen back to it.
    run systemctl start getty@tty1.service 2>/dev/null || true
fi

say "removing $prefix"
run rm -rf "$prefix"

if [ "$purge" -eq 1 ]; then
    say "purging $statedir, $confdir and user $user"
    run rm -rf "$statedir" "$confdir"  # the config, and the kiosk's keyboard layout (kiosk.env)
    if id "$user" >/dev/null 2>&1; then run userdel "$user"; fi
    # The shadow tools' backups (/etc/passwd- ...) still name the user: they become the current files.
    for f in passwd shadow group gshadow; do
        if [ -f "/etc/$f-" ] && grep -q "^$user:\|[:,]$user\(,\|\$\)" "/etc/$f-"; then
            run cp -p "/etc/$f" "/etc/$f-"
        fi
    done
else
    say "kept $statedir (journal) and $confdir (config); remove them with --purge"
fi
