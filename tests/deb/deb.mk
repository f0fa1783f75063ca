# ---- Debian packages (debian/, tests/deb/) -------------------------------
#
#   make deb        builds the source package and the binary packages
#                   fmredisd, libfmredis0 and libfmredis-dev into build/deb/
#                   with dpkg-buildpackage, from a copy of the tree (nothing
#                   is written outside build/), then runs lintian on them:
#                   an error, or a warning docs/PACKAGING.md does not list,
#                   fails it (tests/deb/build-deb.sh)
#   make check-deb  make deb, then installs the packages into a fresh
#                   Debian 12 root made with debootstrap, checks the user,
#                   the units, the files and the shipped config, builds a
#                   worker with pkg-config there, runs the daemon as the
#                   service would, and purges them again; another fresh
#                   root builds them with only the Build-Depends
#                   (tests/deb/check-deb.sh; needs root and the network;
#                   about a minute, build/deb-root/ caches the root)
DEB_OUT   = build/deb
DEB_CACHE = build/deb-root

.PHONY: deb check-deb
deb: deps
	tests/deb/build-deb.sh $(VERSION) $(DEB_OUT)

check-deb: deb
	tests/deb/check-deb.sh $(DEB_OUT) $(DEB_CACHE)
