#!/bin/sh
# tests/deb/check-deb-install.sh -- runs as root inside the fresh Debian 12
# root that check-deb.sh made, with the packages and link-test.c in /check.
# Installs the packages with apt, checks what they put in place, purges
# them and checks that it is gone. Any failed check ends the run with
# "check-deb: FAIL: ...".
set -eu
cd /check
. ./check-deb-lib.sh

# The servers this script starts are stopped on any exit.
daemon_pid='' redis_pid=''
stop_servers() {
    for pid in $daemon_pid $redis_pid; do kill -KILL "$pid" 2> /dev/null || true; done
}
trap stop_servers EXIT

apt_get update
# The test's own tools, for the link test. They bring none of what the
# packages depend on, which is checked, so what the packages need has to
# arrive through their Depends alone.
apt_get install -y --no-install-recommends gcc libc6-dev pkg-config
for p in libhiredis0.14 libuv1 systemd; do
    ! installed "$p" || fail "$p is there before the packages are installed"
done
! getent passwd fmredisd > /dev/null || fail "user fmredisd exists before the install"

apt_get install -y ./fmredisd_*.deb ./libfmredis0_*.deb ./libfmredis-dev_*.deb
version=$(dpkg-query -W -f='${Version}' fmredisd)
for p in fmredisd libfmredis0 libfmredis-dev libhiredis0.14 libuv1 systemd; do
    installed "$p" || fail "$p is not installed"
done
ok "apt installed fmredisd, libfmredis0, libfmredis-dev $version and their dependencies"

# ---- the system user and the workers' group (sysusers, from the postinst)
pw=$(getent passwd fmredisd) || fail "no user fmredisd"
uid=$(echo "$pw" | cut -d: -f3)
[ "$uid" -lt 1000 ] || fail "fmredisd has uid $uid, not a system uid"
case $(echo "$pw" | cut -d: -f7) in
    */nologin|/bin/false) ;;
    *) fail "fmredisd has a login shell: $pw" ;;
esac
getent group fmredis > /dev/null || fail "no group fmredis"
ok "system user fmredisd (uid $uid) and group fmredis exist"

# ---- the units: installed and enabled as dh_installsystemd does it
for unit in fmredisd.service fmredisd.socket; do
    [ -f "/lib/systemd/system/$unit" ] || fail "/lib/systemd/system/$unit missing"
    wanted=$(sed -n 's/^WantedBy=//p' "/lib/systemd/system/$unit")
    [ -n "$wanted" ] || fail "$unit has no WantedBy="
    for target in $wanted; do
        link=/etc/systemd/system/$target.wants/$unit
        [ "$(readlink "$link")" = "/lib/systemd/system/$unit" ] \
            || fail "$link is not a link to /lib/systemd/system/$unit"
    done
    state=$(systemctl is-enabled "$unit" 2>&1) || true
    [ "$state" = enabled ] || fail "systemctl is-enabled $unit: $state"
    ok "$unit installed and enabled ($wanted)"
done

# The metrics timer is shipped for hosts with node_exporter, not enabled.
for unit in fmredisd-metrics.service fmredisd-metrics.timer; do
    [ -f "/lib/systemd/system/$unit" ] || fail "/lib/systemd/system/$unit missing"
    state=$(systemctl is-enabled "$unit" 2>&1) || true
    case $state in
    disabled|static) ok "$unit installed, not enabled ($state)" ;;
    *) fail "systemctl is-enabled $unit: $state (should not be enabled)" ;;
    esac
done

# The postinst starts the socket before the daemon (each in a start of its
# own), so that the daemon serves on the socket systemd holds.
order=$(sed -n "s/.*deb-systemd-invoke .*'fmredisd\.\([a-z]*\)'.*/\1/p" \
    /var/lib/dpkg/info/fmredisd.postinst | tr '\n' ' ')
[ "$order" = "socket service " ] || fail "the postinst starts the units in the order: $order"
ok "the postinst starts fmredisd.socket, then fmredisd.service"

# ---- the files
for f in /usr/sbin/fmredisd /usr/bin/fmredis; do
    [ -x "$f" ] || fail "$f missing or not executable"
done
for f in /usr/share/man/man8/fmredisd.8.gz /usr/share/man/man5/fmredisd.conf.5.gz \
         /usr/share/man/man1/fmredis.1.gz /usr/share/man/man3/libfmredis.3.gz \
         /usr/lib/sysusers.d/fmredisd.conf /etc/fmredisd/fmredisd.conf \
         /usr/include/fmredis.h /usr/include/fm_wire.h; do
    [ -f "$f" ] || fail "$f missing"
done
dpkg-query -W -f='${Conffiles}\n' fmredisd | grep -q '^ /etc/fmredisd/fmredisd.conf ' \
    || fail "/etc/fmredisd/fmredisd.conf is not a conffile of fmredisd"
ok "programs, man pages, headers, sysusers file and the conffile are in place"

# ---- the shipped configuration, read as the service reads it
runuser -u fmredisd -- fmredisd -t -c /etc/fmredisd/fmredisd.conf \
    || fail "fmredisd -t rejects the shipped /etc/fmredisd/fmredisd.conf"
# ... and -t does refuse a bad file, so the pass above means something.
{ cat /etc/fmredisd/fmredisd.conf; echo "no_such_directive 1"; } > /check/bad.conf
if fmredisd -t -c /check/bad.conf 2> /check/bad.err; then
    fail "fmredisd -t accepts a file with an unknown directive"
fi
ok "fmredisd -t accepts the shipped config (as user fmredisd), refuses a bad one: $(head -n 1 /check/bad.err)"

out=$(fmredis --version) || fail "fmredis --version failed"
case $out in *"$version"*) ;; *) fail "fmredis --version says '$out', the package is $version" ;; esac
ok "fmredis --version: $out"

# ---- the library: a worker built with pkg-config alone
ma=$(gcc -print-multiarch)
[ "$(readlink "/usr/lib/$ma/libfmredis.so.0")" = "libfmredis.so.$version" ] \
    || fail "/usr/lib/$ma/libfmredis.so.0 does not point to libfmredis.so.$version"
[ "$(pkg-config --modversion libfmredis)" = "$version" ] || fail "pkg-config --modversion libfmredis"
# shellcheck disable=SC2046 # pkg-config's output is words
gcc -Wall -Werror -o /check/worker /check/link-test.c $(pkg-config --cflags --libs libfmredis) \
    || fail "a worker does not build with pkg-config --cflags --libs libfmredis"
# (ldd may name it through /lib, a link to /usr/lib in Debian 12)
loaded=$(ldd /check/worker | sed -n 's/^[[:space:]]*libfmredis\.so\.0 => \([^ ]*\) .*/\1/p')
[ -n "$loaded" ] && [ "$(realpath "$loaded")" = "$(realpath "/usr/lib/$ma/libfmredis.so.0")" ] \
    || fail "the worker does not load /usr/lib/$ma/libfmredis.so.0: $(ldd /check/worker)"
/check/worker || fail "the worker built against libfmredis-dev failed"
# shellcheck disable=SC2046
gcc -Wall -Werror -o /check/worker-static /check/link-test.c $(pkg-config --cflags libfmredis) \
    -Wl,-Bstatic $(pkg-config --libs --static libfmredis) -Wl,-Bdynamic \
    || fail "a worker does not link libfmredis.a"
! ldd /check/worker-static | grep -q libfmredis || fail "the static worker loads libfmredis.so"
/check/worker-static || fail "the worker linked with libfmredis.a failed"
ok "a worker builds with pkg-config and runs, with libfmredis.so.0 and with libfmredis.a"

# ---- the service, started by hand the way fmredisd.service starts it
# (systemd cannot run here): user fmredisd, group fmredis, the runtime
# directory fmredisd:fmredis 0750, umask 077, the shipped config. Only
# redis_url is overridden, to a private redis-server on a Unix socket.
# A worker in the group fmredis takes a lock through it; a user outside it
# cannot connect.
apt_get install -y --no-install-recommends redis-server
install -d -m 0755 /run/check-redis
redis-server --port 0 --unixsocket /run/check-redis/redis.sock --unixsocketperm 777 \
    --save '' --appendonly no --daemonize no > /check/redis.log 2>&1 &
redis_pid=$!
install -d -o fmredisd -g fmredis -m 0750 /run/fmredisd
(umask 077; exec setpriv --reuid=fmredisd --regid=fmredis --init-groups -- \
    fmredisd -c /etc/fmredisd/fmredisd.conf \
    --redis_url unix:///run/check-redis/redis.sock) > /check/fmredisd.log 2>&1 &
daemon_pid=$!
useradd --no-create-home check-worker
usermod -a -G fmredis check-worker
useradd --no-create-home check-outsider
as() { user=$1; shift; setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"; }

# Up, with its Redis link: ping --redis exits 0 once the link is up.
deadline=$(($(date +%s) + 20))
until as check-worker fmredis -t 1000 ping --redis > /dev/null 2>&1; do
    kill -0 "$daemon_pid" 2> /dev/null || { cat /check/fmredisd.log; fail "fmredisd exited"; }
    [ "$(date +%s)" -lt "$deadline" ] || { cat /check/fmredisd.log; fail "fmredisd not up with Redis in 20 s"; }
    sleep 0.1
done
perm=$(stat -c '%U:%G %a' /run/fmredisd/fmredisd.sock)
[ "$perm" = "fmredisd:fmredis 660" ] || fail "the socket is $perm, not fmredisd:fmredis 660"
as check-worker /check/worker /run/fmredisd/fmredisd.sock \
    || fail "the worker built against libfmredis-dev cannot say hello"
out=$(as check-worker fmredis lock acquire check-job --keep --ttl 60000) \
    || fail "fmredis lock acquire as a member of fmredis"
token=${out%% *}    # out is "TOKEN FENCE"
[ "$(redis-cli -s /run/check-redis/redis.sock GET fm:lock:check-job)" = "$token" ] \
    || fail "Redis does not hold the token $token in fm:lock:check-job"
as check-worker fmredis lock release check-job "$token" || fail "fmredis lock release"
[ "$(redis-cli -s /run/check-redis/redis.sock EXISTS fm:lock:check-job)" = 0 ] \
    || fail "fm:lock:check-job still in Redis after the release"
ok "fmredisd runs as fmredisd:fmredis on the shipped config; a member of fmredis took and released a lock (token $token in Redis)"
rc=0
as check-outsider /check/worker /run/fmredisd/fmredisd.sock 2> /check/outsider.err || rc=$?
[ $rc -eq 2 ] && grep -q 'Permission denied' /check/outsider.err \
    || fail "a user outside fmredis: status $rc, $(cat /check/outsider.err)"
ok "a user outside fmredis cannot connect: $(cat /check/outsider.err)"
kill -TERM "$daemon_pid"
rc=0; wait "$daemon_pid" || rc=$?
daemon_pid=''
[ $rc -eq 0 ] || { cat /check/fmredisd.log; fail "fmredisd exited with $rc on SIGTERM"; }
[ ! -e /run/fmredisd/fmredisd.sock ] || fail "the socket is left after fmredisd stopped"
kill -TERM "$redis_pid"; wait "$redis_pid" || true
redis_pid=''
ok "fmredisd stopped on SIGTERM with status 0 and removed its socket"

# ---- purge: everything the packages installed goes
dpkg -L fmredisd libfmredis0 libfmredis-dev | sort -u | while read -r f; do
    [ -d "$f" ] || echo "$f"    # directories (and /lib, a link to one) may be shared
done > /check/files
ls /etc/systemd/system/*.wants/fmredisd.* >> /check/files
[ -s /check/files ] || fail "no files listed"
apt_get purge -y fmredisd libfmredis0 libfmredis-dev
for p in fmredisd libfmredis0 libfmredis-dev; do
    ! installed "$p" || fail "$p still installed after the purge"
done
left=$(while read -r f; do [ ! -e "$f" ] && [ ! -L "$f" ] || echo "$f"; done < /check/files)
[ -z "$left" ] || fail "left after the purge: $left"
[ ! -e /etc/fmredisd ] || fail "/etc/fmredisd left after the purge: $(ls -la /etc/fmredisd)"
ok "purged: none of the $(wc -l < /check/files) files is left, nor /etc/fmredisd"
# As Debian leaves system users: files they own may outlive the package.
getent passwd fmredisd > /dev/null && getent group fmredis > /dev/null \
    || fail "the user fmredisd or the group fmredis went with the purge"
ok "the user fmredisd and the group fmredis stay after the purge"
