#!/bin/bash
# check-install.sh -- `make check-install`: proves that what `make install`
# puts in place works, without touching the machine's own directories.
#
#  1. make install DESTDIR=<tmp> PREFIX=/usr/local; every expected file is
#     there, and the library's names and soname are right.
#  2. A worker (worker.c) is compiled and linked against that tree with
#     `pkg-config --cflags --libs libfmredis` alone, and run with the
#     installed library against the installed daemon (started with the
#     installed configuration file) and a private redis-server: the lock it
#     holds and the execution it cached are checked in Redis. The daemon
#     runs under strace through that, a reload and a drain: every system
#     call it made must pass the unit's SystemCallFilter= (syscalls.sh).
#  3. systemd-analyze verify on the units of a second install, made with
#     PREFIX=<tmp> so that their paths exist on this machine: any complaint
#     about them fails. Then reinstalling keeps a changed configuration
#     file, and uninstalling keeps it and removes the rest.
#  4. systemd-analyze security --offline: fmredisd.service rates under 2.0.
#  5. mandoc -T lint -W warning on the four man pages.
#  6. The installed bash completion offers what it should (completion.sh).
#  7. make uninstall leaves no file in DESTDIR, and none of fmredisd's own
#     directories. Directories shared with other software (bin, lib,
#     share/man/man8, ...) stay: uninstall cannot know whether install made
#     them, and on a real system they exist beforehand.
#
# Runs as any user; starts its servers in a temporary directory and stops
# them (by pid) and removes everything on any exit. The files made from
# templates go to the temporary directory too (GEN), so build/gen keeps the
# paths of the last real install. Environment: MAKE, CC.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
here=$src/tests/install
MAKE=${MAKE:-make}
CC=${CC:-cc}
tmp=$(mktemp -d /tmp/fm-check-install.XXXXXX)
dest=$tmp/dest
root=$dest/usr/local
t0=$(date +%s%N)
pids=()

# Stops what this script started, by pid, the last started first.
cleanup() {
    local i
    exec 3>&- 2>/dev/null || true
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fail() {
    echo "check-install: FAILED: $*" >&2
    exit 1
}
step() { echo "check-install: $*"; }

# wait_for WHAT COMMAND...: runs COMMAND until it succeeds, 10 s at most.
wait_for() {
    local what=$1 i
    shift
    for ((i = 0; i < 200; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    fail "$what did not happen within 10 s"
}

# ---- 1. install into DESTDIR ------------------------------------------------
step "make install DESTDIR=$dest PREFIX=/usr/local"
$MAKE -s -C "$src" GEN="$tmp/gen" install DESTDIR="$dest" PREFIX=/usr/local > "$tmp/install.log" ||
    { cat "$tmp/install.log"; fail "make install"; }

version=$(sed -n 's/^#define FMREDIS_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' \
    "$src/proto/fm_wire.h" | paste -sd.)
so=$(sed -n 's/^#define FMREDIS_SOVERSION \([0-9]*\)$/\1/p' "$src/proto/fm_wire.h")
sofull=$so.${version#*.}
for f in sbin/fmredisd bin/fmredis lib/libfmredis.a lib/libfmredis.so.$sofull \
         include/fmredis.h include/fm_wire.h lib/pkgconfig/libfmredis.pc \
         lib/systemd/system/fmredisd.service lib/systemd/system/fmredisd.socket \
         lib/sysusers.d/fmredisd.conf etc/fmredisd/fmredisd.conf \
         share/doc/fmredisd/examples/fmredisd.conf.example \
         share/bash-completion/completions/fmredis \
         share/man/man8/fmredisd.8 share/man/man5/fmredisd.conf.5 \
         share/man/man1/fmredis.1 share/man/man3/libfmredis.3; do
    [ -f "$root/$f" ] && [ ! -L "$root/$f" ] || fail "$root/$f is not installed as a file"
done
[ -x "$root/sbin/fmredisd" ] && [ -x "$root/bin/fmredis" ] || fail "programs not executable"
[ "$(readlink "$root/lib/libfmredis.so.$so")" = "libfmredis.so.$sofull" ] ||
    fail "lib/libfmredis.so.$so does not point to libfmredis.so.$sofull"
[ "$(readlink "$root/lib/libfmredis.so")" = "libfmredis.so.$so" ] ||
    fail "lib/libfmredis.so does not point to libfmredis.so.$so"
readelf -d "$root/lib/libfmredis.so.$sofull" | grep -q "SONAME.*\[libfmredis.so.$so\]" ||
    fail "libfmredis.so.$sofull does not have the soname libfmredis.so.$so"
grep -q "^ExecStart=/usr/local/sbin/fmredisd -c /usr/local/etc/fmredisd/fmredisd.conf$" \
    "$root/lib/systemd/system/fmredisd.service" || fail "ExecStart has the wrong paths"

# ---- 2. a worker built with pkg-config alone, against a real daemon ----------
step "worker built with pkg-config --cflags --libs libfmredis"
# PKG_CONFIG_LIBDIR replaces the default search path, so that no
# libfmredis.pc installed on this machine can be found instead; the sysroot
# puts DESTDIR in front of the paths the .pc file gives.
export PKG_CONFIG_LIBDIR=$root/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest
[ "$(pkg-config --modversion libfmredis)" = "$version" ] || fail "libfmredis.pc has the wrong version"
flags=$(pkg-config --cflags --libs libfmredis)
"$CC" -Wall -Wextra -Werror -o "$tmp/worker" "$here/worker.c" $flags ||
    fail "compiling the worker with: $flags"
readelf -d "$tmp/worker" | grep -q "NEEDED.*\[libfmredis.so.$so\]" ||
    fail "the worker is not linked with the shared libfmredis.so.$so"
unset PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR

conf=$root/etc/fmredisd/fmredisd.conf
"$root/sbin/fmredisd" -t -c "$conf" > /dev/null || fail "fmredisd -t rejects the installed $conf"

redis-server --port 0 --unixsocket "$tmp/redis.sock" --unixsocketperm 700 \
    --dir "$tmp" --save '' --appendonly no --daemonize no \
    --logfile "$tmp/redis.log" &
pids+=($!)
rcli() { redis-cli -s "$tmp/redis.sock" "$@"; }
wait_for "redis-server start" rcli ping

# Under strace, to hold its system calls against the unit's filter below.
# socket_group as the packaged config sets it, so that its lchown(2) is
# among the calls checked.
strace -f -qq -o "$tmp/trace" "$root/sbin/fmredisd" -c "$conf" --socket "$tmp/fm.sock" \
    --socket_group "$(id -gn)" \
    --redis_url "unix://$tmp/redis.sock" 2> "$tmp/fmredisd.log" &
strace_pid=$!
pids+=($strace_pid)
wait_for "the daemon's start under strace" pgrep -P "$strace_pid"
daemon=$(pgrep -P "$strace_pid")
pids+=($daemon)
cli=("$root/bin/fmredis" -s "$tmp/fm.sock" -t 2000)
wait_for "the installed daemon answering the installed CLI" "${cli[@]}" ping --redis

key=check-install-$$
mkfifo "$tmp/go"
LD_LIBRARY_PATH=$root/lib FMREDISD_SOCKET=$tmp/fm.sock \
    "$tmp/worker" "$key" "exec-$key" < "$tmp/go" > "$tmp/worker.out" 2> "$tmp/worker.err" &
worker=$!
pids+=($worker)
exec 3> "$tmp/go"
wait_for "the worker taking the lock" grep -q '^held ' "$tmp/worker.out"
token=$(awk '/^held /{print $2}' "$tmp/worker.out")
grep -q "$root/lib/libfmredis.so.$sofull" "/proc/$worker/maps" ||
    fail "the worker did not load the installed library"
[ "$(rcli GET "fm:lock:$key")" = "$token" ] || fail "Redis does not hold fm:lock:$key = $token"
"${cli[@]}" lock status "$key" > /dev/null || fail "fmredis lock status: not locked"
exec 3>&-
rc=0
wait "$worker" || rc=$?
[ "$rc" = 0 ] || { cat "$tmp/worker.err"; fail "the worker exited $rc"; }
[ "$(rcli EXISTS "fm:lock:$key")" = 0 ] || fail "fm:lock:$key still exists after the release"
rcli GET "fm:exec:exec-$key" | grep -qF "\"token\":\"$token\"" ||
    fail "fm:exec:exec-$key does not hold the worker's execution"

# A reload and a drain, then every system call the daemon made must be one
# that fmredisd.service's SystemCallFilter= lets through (systemd cannot
# run here to enforce it).
kill -HUP "$daemon"
wait_for "the reload" grep -q "reloaded $conf" "$tmp/fmredisd.log"
kill -TERM "$daemon"
rc=0
wait "$strace_pid" || rc=$?
[ "$rc" = 0 ] || { cat "$tmp/fmredisd.log"; fail "the daemon exited $rc after SIGTERM"; }
denied=$(bash "$here/syscalls.sh" "$root/lib/systemd/system/fmredisd.service" "$tmp/trace") ||
    fail "the daemon made system calls fmredisd.service forbids: $denied"
step "  $(sed -n 's/^[0-9]\{1,\} \{1,\}\([a-z_0-9]\{1,\}\)(.*/\1/p' "$tmp/trace" | sort -u | wc -l) distinct system calls, all inside the unit's filter"

# ---- 3. systemd-analyze verify, on a second install that resolves here -------
step "systemd-analyze verify"
p=$tmp/prefix
$MAKE -s -C "$src" GEN="$tmp/gen" install PREFIX="$p" > "$tmp/install2.log" ||
    { cat "$tmp/install2.log"; fail "make install PREFIX=$p"; }
# verify checks that ExecStart's program exists and that the man pages of
# Documentation= open (with man, hence MANPATH).
rc=0
MANPATH=$p/share/man systemd-analyze verify \
    "$p/lib/systemd/system/fmredisd.service" "$p/lib/systemd/system/fmredisd.socket" \
    "$p/lib/systemd/system/fmredisd-metrics.service" "$p/lib/systemd/system/fmredisd-metrics.timer" \
    > "$tmp/verify.log" 2>&1 || rc=$?
if [ "$rc" != 0 ] || grep -q fmredisd "$tmp/verify.log"; then
    cat "$tmp/verify.log"
    fail "systemd-analyze verify (exit $rc)"
fi

echo "# changed by the operator" >> "$p/etc/fmredisd/fmredisd.conf"
$MAKE -s -C "$src" GEN="$tmp/gen" install PREFIX="$p" > /dev/null || fail "reinstall"
tail -n 1 "$p/etc/fmredisd/fmredisd.conf" | grep -q "changed by the operator" ||
    fail "make install overwrote a changed configuration file"
$MAKE -s -C "$src" GEN="$tmp/gen" uninstall PREFIX="$p" > /dev/null || fail "make uninstall PREFIX=$p"
[ "$(find "$p" ! -type d)" = "$p/etc/fmredisd/fmredisd.conf" ] ||
    fail "make uninstall PREFIX=$p left: $(find "$p" ! -type d) (or removed the changed configuration)"

# ---- 4. systemd-analyze security ------------------------------------------------
step "systemd-analyze security --offline=yes"
systemd-analyze security --offline=yes "$root/lib/systemd/system/fmredisd.service" \
    > "$tmp/security.log" 2>&1 || { cat "$tmp/security.log"; fail "systemd-analyze security"; }
score=$(sed -n 's/.*Overall exposure level for fmredisd.service: \([0-9.]*\) .*/\1/p' "$tmp/security.log")
[ -n "$score" ] || { cat "$tmp/security.log"; fail "no exposure level in the output"; }
awk -v s="$score" 'BEGIN { exit !(s < 2.0) }' ||
    { grep '✗' "$tmp/security.log"; fail "exposure level $score, not under 2.0"; }
step "  exposure level $score"

# ---- 5. man pages ---------------------------------------------------------------
step "mandoc -T lint -W warning"
man=("$root"/share/man/man8/fmredisd.8 "$root"/share/man/man5/fmredisd.conf.5
     "$root"/share/man/man1/fmredis.1 "$root"/share/man/man3/libfmredis.3)
lint=$(mandoc -T lint -W warning "${man[@]}" 2>&1) || { echo "$lint"; fail "mandoc lint"; }
[ -z "$lint" ] || { echo "$lint"; fail "mandoc lint"; }

# ---- 6. bash completion ---------------------------------------------------------
step "bash completion"
bash "$here/completion.sh" "$root/share/bash-completion/completions/fmredis" ||
    fail "bash completion"

# ---- 7. uninstall ---------------------------------------------------------------
step "make uninstall DESTDIR=$dest PREFIX=/usr/local"
$MAKE -s -C "$src" GEN="$tmp/gen" uninstall DESTDIR="$dest" PREFIX=/usr/local > /dev/null || fail "make uninstall"
left=$(find "$dest" ! -type d -o -type d -name '*fmredis*')
[ -z "$left" ] || fail "make uninstall left: $left"

step "passed in $((($(date +%s%N) - t0) / 1000000)) ms"
