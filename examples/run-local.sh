#!/bin/sh
# run-local.sh DAEMON [CONF] -- runs fmredisd in the foreground, as `make run`
# does. With a configuration file, or with $REDIS_URL set, the daemon uses
# the Redis they name. Otherwise this script starts a private redis-server
# on a Unix socket in a temporary directory and stops it when the daemon
# exits. The daemon listens on $FMREDISD_SOCKET when set.
set -eu

daemon=$1
conf=${2:-}
set -- "$daemon"
[ -n "$conf" ] && set -- "$@" -c "$conf"
if [ -n "${FMREDISD_SOCKET:-}" ]; then
    set -- "$@" --socket "$FMREDISD_SOCKET"
    sock=$FMREDISD_SOCKET
else
    sock=/run/fmredisd/fmredisd.sock
fi
mkdir -p "$(dirname "$sock")"

if [ -n "$conf" ] || [ -n "${REDIS_URL:-}" ]; then
    exec "$@"
fi

dir=$(mktemp -d /tmp/fmredisd-redis.XXXXXX)
redis_pid=
daemon_pid=
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" || true
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" || true
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

redis-server --port 0 --unixsocket "$dir/redis.sock" --unixsocketperm 700 \
    --dir "$dir" --save '' --appendonly no --daemonize no \
    --logfile "$dir/redis.log" &
redis_pid=$!
# The daemon would connect anyway, retrying; waiting keeps the log quiet.
tries=0
while [ ! -S "$dir/redis.sock" ] && [ $tries -lt 100 ]; do
    sleep 0.05
    tries=$((tries + 1))
done
echo "run-local: private redis-server (pid $redis_pid) on $dir/redis.sock" >&2
echo "run-local: workers connect to $sock (export FMREDISD_SOCKET=$sock)" >&2

"$@" --redis_url "unix://$dir/redis.sock" &
daemon_pid=$!
wait "$daemon_pid"
status=$?
daemon_pid=
exit $status
