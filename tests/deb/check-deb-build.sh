#!/bin/sh
# tests/deb/check-deb-build.sh -- runs as root inside a fresh Debian 12 root
# that check-deb.sh made, with the source package in /check. Installs
# build-essential and the Build-Depends alone, then builds the binary
# packages as an unprivileged user (Rules-Requires-Root: no), as
# `dpkg-buildpackage -us -uc -b` on a Debian 12 host would.
set -eu
cd /check
. ./check-deb-lib.sh

apt_get update
apt_get install -y --no-install-recommends build-essential
apt_get build-dep -y --no-install-recommends ./fmredisd_*.dsc
# What only the tests need must not have come in.
for p in libcjson-dev check redis-server; do
    ! installed "$p" || fail "$p installed by the Build-Depends"
done
ok "build-essential and the Build-Depends installed"

useradd --no-create-home check-builder
install -d -o check-builder /check/build
cp fmredisd_*.dsc fmredisd_*.tar.xz /check/build/
cd /check/build
if ! setpriv --reuid=check-builder --regid=check-builder --init-groups -- sh -c \
        'dpkg-source -x fmredisd_*.dsc src && cd src && dpkg-buildpackage -us -uc -b' \
        > /check/build.log 2>&1; then
    tail -n 40 /check/build.log
    fail "dpkg-buildpackage -us -uc -b in a root with only the Build-Depends"
fi
for p in fmredisd libfmredis0 libfmredis-dev; do
    [ -f "$(echo "${p}"_*.deb)" ] || fail "no ${p}_*.deb built"
done
ok "dpkg-buildpackage -us -uc -b as a user, with only the Build-Depends: $(echo *.deb)"
