#!/bin/sh
# packaging/check-deb.sh DEBDIR CACHE -- what `make check-deb` runs, as
# root, from the source directory.
#
# Makes a fresh Debian 12 root (debootstrap, variant minbase), installs the
# packages in DEBDIR into it with apt, and runs check-deb-root.sh there,
# which checks them and purges them again.
#
# The finished debootstrap root is cached as CACHE/bookworm-minbase.tar:
# the first run takes about 30 s to make it, later runs unpack it in a few
# seconds. Each run gets its own new root from it (CACHE/root.XXXXXX),
# unmounted and removed on any exit. Delete the tarball to make it anew.
# DEB_MIRROR overrides the mirror (http://deb.debian.org/debian).
set -eu
debs=$1
cache=$2
mirror=${DEB_MIRROR:-http://deb.debian.org/debian}
base=$cache/bookworm-minbase.tar

mkdir -p "$cache"
root=$(realpath "$(mktemp -d "$cache/root.XXXXXX")")

# Everything mounted under the root (debootstrap mounts /proc and /sys
# while it works, this script /proc), deepest first.
mounts_under() {
    awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r
}
cleanup() {
    rc=$?
    # Processes still running in the root (servers check-deb-root.sh
    # started, when it was killed before it could stop them).
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" != "$root" ] || kill -KILL "${p#/proc/}" 2>/dev/null || true
    done
    for m in $(mounts_under); do
        umount "$m" 2>/dev/null || umount -l "$m"
    done
    # Never remove a tree while anything is still mounted in it.
    if [ -n "$(mounts_under)" ]; then
        echo "check-deb: still mounted under $root, not removed:" $(mounts_under) >&2
        exit 1
    fi
    rm -rf "$root"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

t0=$(date +%s)
if [ -s "$base" ]; then
    tar -C "$root" -xf "$base"
    echo "check-deb: a new bookworm root from $base ($(($(date +%s) - t0)) s)"
else
    echo "check-deb: debootstrap --variant=minbase bookworm from $mirror"
    if ! debootstrap --variant=minbase bookworm "$root" "$mirror" \
            > "$cache/debootstrap.log" 2>&1; then
        tail -n 30 "$cache/debootstrap.log"
        echo "check-deb: debootstrap failed; log in $cache/debootstrap.log" >&2
        exit 1
    fi
    tar -C "$root" -cf "$base.tmp" . && mv "$base.tmp" "$base"
    echo "check-deb: debootstrap took $(($(date +%s) - t0)) s, cached as $base"
fi

# It becomes /, which every user must be able to enter (mktemp made it
# 0700, and the tarball's "." keeps whatever its root had).
chmod 755 "$root"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# systemd does not run in the root: no package may start a service there.
# (deb-systemd-invoke and invoke-rc.d both ask this script.)
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
mkdir "$root/check"
cp "$debs"/*.deb packaging/check-deb-root.sh packaging/link-test.c "$root/check/"
mount -t proc proc "$root/proc"

env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
    chroot "$root" /bin/sh /check/check-deb-root.sh
