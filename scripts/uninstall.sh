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
[ "$systemd" -eq 1 ] && { run systemctl daemon-reload || true; }

say "removing $prefix"
run rm -rf "$prefix"

if [ "$purge" -eq 1 ]; then
    say "purging $statedir, $confdir and user $user"
    run rm -rf "$statedir" "$confdir"  # the config, and the kiosk's keyboard layout (kiosk.env)
    if id "$user" >/dev/null 2>&1; then run userdel "$user"; fi
else
    say "kept $statedir (journal) and $confdir (config); remove them with --purge"
fi
