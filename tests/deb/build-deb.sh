#!/bin/sh
# tests/deb/build-deb.sh VERSION OUT -- what `make deb` runs, from the
# source directory.
#
# Builds the source package and the binary packages (fmredisd, libfmredis0,
# libfmredis-dev) from a copy of the tree in OUT/work, so that
# dpkg-buildpackage, which writes its results into the parent directory of
# the tree it builds, writes them into OUT/work and never next to the
# checkout; `debian/rules clean` cleans the copy, not the checkout. The
# results are moved to OUT, then lintian checks them: an error fails the
# target, and so does a warning that docs/PACKAGING.md does not list (each
# listed one has its reason there).
set -eu
version=$1
out=$2

# The package's version is the project's: debian/changelog must agree with
# proto/fm_wire.h (a native package has no Debian revision).
cl=$(dpkg-parsechangelog -S Version)
if [ "$cl" != "$version" ]; then
    echo "make deb: debian/changelog is at $cl, proto/fm_wire.h at $version:" \
         "add a changelog entry (dch -v $version)" >&2
    exit 1
fi

work=$out/work
rm -rf "$out"
mkdir -p "$work/fmredisd-$version"
# The tree as it is, edits included, without build/, .git and what
# .gitignore names.
tar --exclude=./build --exclude-vcs --exclude-vcs-ignores -cf - . \
    | tar -C "$work/fmredisd-$version" -xf -

log=$out/build.log
echo "make deb: dpkg-buildpackage -us -uc in $work/fmredisd-$version (log: $log)"
if ! (cd "$work/fmredisd-$version" && dpkg-buildpackage -us -uc -J) > "$log" 2>&1; then
    tail -n 60 "$log"
    echo "make deb: dpkg-buildpackage failed; the whole log is $log" >&2
    exit 1
fi
for f in "$work"/*; do
    [ -f "$f" ] && mv "$f" "$out/"
done
rm -rf "$work"
ls -l "$out"

changes=$out/fmredisd_${version}_$(dpkg-architecture -qDEB_HOST_ARCH).changes
echo "make deb: lintian $changes"
rc=0
lintian --fail-on error --pedantic --display-info --show-overrides "$changes" \
    > "$out/lintian.txt" 2>&1 || rc=$?
cat "$out/lintian.txt"
if [ $rc -ne 0 ]; then
    echo "make deb: lintian failed (status $rc)" >&2
    exit 1
fi
undocumented=$(sed -n 's/^W: [^:]*: \([^ ]*\).*/\1/p' "$out/lintian.txt" | sort -u \
    | while read -r tag; do
          grep -q "\`$tag\`" docs/PACKAGING.md || echo "$tag"
      done)
if [ -n "$undocumented" ]; then
    echo "make deb: lintian warnings not listed in docs/PACKAGING.md:" $undocumented >&2
    exit 1
fi
echo "make deb: packages in $out"
