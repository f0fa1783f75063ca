#!/bin/sh
# tests/deb/check-deb.sh DEBDIR CACHE -- what `make check-deb` runs, as
# root, from the source directory, once `make deb` has filled DEBDIR.
#
# Two fresh Debian 12 roots (debootstrap, variant minbase), one after the
# other, each with a script of its own run in it by chroot:
#   check-deb-build.sh    builds the binary packages from DEBDIR's source
#                         package as an unprivileged user, with nothing
#                         installed but build-essential and the
#                         Build-Depends: proves those are complete
#   check-deb-install.sh  installs DEBDIR's packages with apt, checks them,
#                         runs the daemon as the service would, purges them
#
# The finished debootstrap root is cached as CACHE/bookworm-minbase.tar:
# the first run takes about 30 s to make it, later runs unpack it in a few
# seconds. Each root is a new copy (CACHE/root.XXXXXX), unmounted and
# removed when its script ends, and on any exit. Delete the tarball to
# make it anew. DEB_MIRROR overrides the mirror (http://deb.debian.org/debian).
set -eu
debs=$1
cache=$2
mirror=${DEB_MIRROR:-http://deb.debian.org/debian}
base=$cache/bookworm-minbase.tar
root=

# Everything mounted under the root (debootstrap mounts /proc and /sys
# while it works, root_run /proc), deepest first.
mounts_under() {
    awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r
}
# Removes the current root: first the processes still running in it
# (servers a script started and could not stop, being killed itself), then
# its mounts; never the tree while anything is still mounted in it.
root_remove() {
    [ -n "$root" ] || return 0
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" != "$root" ] || kill -KILL "${p#/proc/}" 2>/dev/null || true
    done
    for m in $(mounts_under); do
        umount "$m" 2>/dev/null || umount -l "$m"
    done
    if [ -n "$(mounts_under)" ]; then
        echo "check-deb: still mounted under $root, not removed:" $(mounts_under) >&2
        return 1
    fi
    rm -rf "$root"
    root=
}
trap 'rc=$?; root_remove || rc=1; exit $rc' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# A new root in $root: unpacked from the cached tarball, or made by
# debootstrap (and then cached).
root_new() {
    root=$(realpath "$(mktemp -d "$cache/root.XXXXXX")")
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
    # systemd does not run in the root: no package may start a service
    # there (deb-systemd-invoke and invoke-rc.d both ask this script).
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
}

# root_run SCRIPT FILE...: SCRIPT, in a new root, with the FILEs and
# check-deb-lib.sh in its /check; then the root is removed.
root_run() {
    script=$1
    shift
    root_new
    mkdir "$root/check"
    cp "$script" tests/deb/check-deb-lib.sh "$@" "$root/check/"
    mount -t proc proc "$root/proc"
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
        chroot "$root" /bin/sh "/check/$(basename "$script")"
    root_remove
}

mkdir -p "$cache"
version=$(dpkg-parsechangelog -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
root_run tests/deb/check-deb-build.sh \
    "$debs/fmredisd_$version.dsc" "$debs/fmredisd_$version.tar.xz"
root_run tests/deb/check-deb-install.sh tests/deb/link-test.c \
    "$debs/fmredisd_${version}_$arch.deb" "$debs/libfmredis0_${version}_$arch.deb" \
    "$debs/libfmredis-dev_${version}_$arch.deb"
echo "check-deb: all checks passed"
