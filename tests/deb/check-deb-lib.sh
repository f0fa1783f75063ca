# tests/deb/check-deb-lib.sh -- what the scripts check-deb.sh runs in its
# roots share; sourced, from /check.
export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)

fail() { echo "check-deb: FAIL: $*" >&2; exit 1; }
# An ok line says how long the script has run so far.
ok() { echo "check-deb: ok: $* [$(($(date +%s) - start)) s]"; }
installed() { [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]; }
# apt-get, its output shown only when it fails.
apt_get() {
    apt-get -q -o Dpkg::Use-Pty=0 "$@" > /check/apt.log 2>&1 \
        || { cat /check/apt.log; fail "apt-get $*"; }
}
