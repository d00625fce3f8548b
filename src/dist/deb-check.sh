#!/usr/bin/env bash
# make deb-check (CI): installs the package make deb built with dpkg -i, tries it as a user
# would (vaurien --version, man -w, vaurienctl --help, the completions, a proxy started from
# the installed example INI with its backend pointed at a local echo server, stopped by
# SIGTERM), then removes it with dpkg -r and checks that every file it installed is gone
# but its conffile (Debian keeps /etc/vaurien/vaurien.ini until a purge), and dpkg -P that
# nothing is left. Needs root (or sudo) and a machine where the package may be installed.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
deb="target/debian/vaurien_${version}_$(dpkg --print-architecture).deb"
[ -f "$deb" ] || { echo "deb-check: no $deb: run make deb" >&2; exit 1; }
if dpkg-query -W vaurien >/dev/null 2>&1 && [ "$(dpkg-query -W -f '${Status}' vaurien)" = "install ok installed" ]; then
    echo "deb-check: vaurien is installed already; not touching it" >&2
    exit 1
fi

fail() { echo "deb-check: FAILED: $*" >&2; exit 1; }
step() { echo "deb-check: $*"; }

# From here on, a failure purges what it installed, so that the next run starts clean.
installed=
purge() { [ -n "$installed" ] && $SUDO dpkg -P vaurien >/dev/null 2>&1 || true; }
trap purge EXIT
$SUDO dpkg -i "$deb"
installed=yes
files=$(dpkg -L vaurien)
step "installed $(echo "$files" | wc -l) paths"

step "$(/usr/bin/vaurien --version)"
/usr/bin/vaurien --version | grep -q '^vaurien ' || fail "vaurien --version"
man -w vaurien vaurienctl || fail "man -w vaurien vaurienctl"
/usr/bin/vaurienctl --help | grep -q '^Usage: vaurienctl' || fail "vaurienctl --help"
bash -c 'source /usr/share/bash-completion/completions/vaurien && complete -p vaurien' \
    || fail "the bash completion of vaurien"
[ ! -e /etc/systemd/system/multi-user.target.wants/vaurien.service ] \
    || fail "the unit is enabled: it must be installed disabled"
grep -q '^ExecStart=/usr/bin/vaurien --config /etc/vaurien/vaurien.ini' /usr/lib/systemd/system/vaurien.service \
    || fail "the unit does not run the installed INI"
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify /usr/lib/systemd/system/vaurien.service || fail "systemd-analyze verify"
    step "systemd-analyze verify: the unit is valid"
fi

# A local echo backend on a free port, for the example INI's proxy.
work=$(mktemp -d)
cleanup() {
    [ -n "${proxy_pid:-}" ] && kill "$proxy_pid" 2>/dev/null || true
    [ -n "${echo_pid:-}" ] && kill "$echo_pid" 2>/dev/null || true
    rm -rf "$work"
    purge
}
trap cleanup EXIT
python3 -u -c '
import socket, threading
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
def echo(c):
    with c:
        while (d := c.recv(65536)):
            c.sendall(d)
while True:
    c, _ = s.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
' > "$work/echo.port" &
echo_pid=$!
for _ in $(seq 100); do [ -s "$work/echo.port" ] && break; sleep 0.05; done
backend="127.0.0.1:$(head -n 1 "$work/echo.port")"

/usr/bin/vaurien --config /etc/vaurien/vaurien.ini --backend "$backend" \
    --proxy 127.0.0.1:0 --http-port 0 > "$work/ready" 2> "$work/log" &
proxy_pid=$!
for _ in $(seq 100); do grep -q '^vaurien listening' "$work/ready" 2>/dev/null && break; sleep 0.05; done
ready=$(head -n 1 "$work/ready")
step "$ready"
proxy=$(echo "$ready" | sed -n 's/.*proxy=\([^ ]*\).*/\1/p')
http=$(echo "$ready" | sed -n 's/.*http=\([^ ]*\).*/\1/p')
[ -n "$proxy" ] && [ -n "$http" ] || fail "no ready line: $(cat "$work/log")"
answer=$(python3 -c '
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
with socket.create_connection((host, int(port)), timeout=5) as c:
    c.sendall(b"through the packaged proxy")
    print(c.recv(100).decode())
' "$proxy")
[ "$answer" = "through the packaged proxy" ] || fail "the echo through $proxy: '$answer'"
mix=$(/usr/bin/vaurienctl --host "http://$http" get-behavior)
[ "$mix" = "20:delay,80:dummy" ] || fail "the installed INI's mix: '$mix'"
step "echo through $proxy; mix $mix"
kill -TERM "$proxy_pid"
status=0
wait "$proxy_pid" || status=$?
proxy_pid=
[ "$status" -eq 0 ] || fail "SIGTERM: exit status $status"

$SUDO dpkg -r vaurien
# Files only: the package lists its directories too (and /lib, a link to usr/lib here).
left=$(echo "$files" | while read -r f; do [ -e "$f" ] && [ ! -d "$f" ] && echo "$f"; done || true)
[ "$left" = "/etc/vaurien/vaurien.ini" ] || fail "after dpkg -r, left: ${left:-nothing}"
step "dpkg -r: every file gone but the conffile /etc/vaurien/vaurien.ini"
$SUDO dpkg -P vaurien
installed=
left=$(echo "$files" | while read -r f; do [ -e "$f" ] && [ ! -d "$f" ] && echo "$f"; done || true)
[ -z "$left" ] || fail "after dpkg -P, left: $left"
[ ! -e /etc/vaurien ] || fail "after dpkg -P, /etc/vaurien is left"
step "dpkg -P: nothing left"
echo "deb-check: passed"
