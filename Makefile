# fmredisd -- build, test and run.
#
#   make            build/fmredisd, build/fmredis, build/libfmredis.{a,so}
#   make check      what CI runs: install missing packages, build, then
#                   test + test-python + test-node + check-install +
#                   check-san + valgrind + fuzz + torture + bench-smoke +
#                   check-deb (about 17 minutes)
#   make test       the test suite only (seconds: the developer loop)
#   make check-san  the test suite built with ASan+UBSan, daemon included
#   make valgrind   the test suite with the daemon under valgrind memcheck
#   make fuzz       the three libFuzzer targets, FUZZ_SECONDS (60) each
#   make run        install missing packages (deps-run), build, run the daemon in the
#                   foreground (with a private redis-server unless a config
#                   file or $REDIS_URL names one)
#   make install    PREFIX=/usr/local, DESTDIR, per-directory overrides
#                   (see "Installing" below); make uninstall removes the same set;
#                   make check-install proves an installed tree works
#   make SAN=1 ...  the same with AddressSanitizer and UBSan, in build/san
#   make bench      fmredisd against direct Redis, full matrix and the TLS
#                   rows (~70 s, not part of all); make bench-smoke: a
#                   short run that check includes (see bench/bench.mk)
#   make test-node  the Node.js client's tests (client/node/, node --test)
#   make torture    lock safety under faults (Jepsen-style, tests/torture/):
#                   the sanitized daemon, TORTURE_SECONDS (60) of nemesis;
#                   SEED=N replays a run's fault schedule (under 3 minutes)
#   make deb        the Debian packages, checked by lintian, in build/deb/;
#                   make check-deb installs them into a fresh Debian 12
#                   root and checks them (see tests/deb/deb.mk)
#   make test-python  the Python client's tests (client/python/tests)

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wformat=2 -Wno-unused-parameter
ifeq ($(SAN),1)
BUILD   ?= build/san
CFLAGS  += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
           -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
BUILD   ?= build

PKGS_DAEMON = hiredis libuv openssl
PKGS_TEST   = hiredis libcjson check libuv openssl
pkgcflags   = $(shell pkg-config --cflags $(1))
pkglibs     = $(shell pkg-config --libs $(1))

ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC $(WARN) $(CFLAGS) -Iproto -Iclient

# The version and the library's soname live in proto/fm_wire.h.
wire       = $(shell sed -n 's/^\#define $(1) \([0-9]*\)$$/\1/p' proto/fm_wire.h)
VERSION    = $(call wire,FMREDIS_VERSION_MAJOR).$(call wire,FMREDIS_VERSION_MINOR).$(call wire,FMREDIS_VERSION_PATCH)
SOVERSION  = $(call wire,FMREDIS_SOVERSION)
# The real file's name: libfmredis.so.SOVERSION.MINOR.PATCH, as libtool
# names it, so that a later minor version installs beside this one.
SOFULL     = $(SOVERSION).$(call wire,FMREDIS_VERSION_MINOR).$(call wire,FMREDIS_VERSION_PATCH)

PROTO_SRC  = $(wildcard proto/*.c)
DAEMON_SRC = $(wildcard daemon/*.c)
LIB_SRC    = $(filter-out $(CLI_SRC),$(wildcard client/*.c))
CLI_SRC    = client/cli.c client/cli_prom.c
TEST_SRC   = $(wildcard tests/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

# A test-only LD_PRELOAD library (tests/stall/stall.c) that holds a daemon
# still at a chosen moment. Never sanitized, whatever SAN says: it is
# preloaded into daemons that may be.
STALL   = build/fm-stall.so
DAEMON  = $(BUILD)/fmredisd
CLI     = $(BUILD)/fmredis
LIB_A   = $(BUILD)/libfmredis.a
LIB_SO  = $(BUILD)/libfmredis.so
TESTS   = $(BUILD)/fm-tests

.PHONY: all check test check-san valgrind fuzz run deps deps-run clean
all: $(DAEMON) $(CLI) $(LIB_A) $(LIB_SO)

$(BUILD)/obj/daemon/%.o: ALL_CFLAGS += $(call pkgcflags,$(PKGS_DAEMON))
$(BUILD)/obj/tests/%.o:  ALL_CFLAGS += $(call pkgcflags,$(PKGS_TEST)) -Idaemon
# libfmredis exports what fmredis.h marks FMREDIS_EXPORT and nothing else.
# proto/'s objects go into it too, so they are built the same way (the
# daemon, an executable, exports nothing either way).
$(BUILD)/obj/client/%.o $(BUILD)/obj/proto/%.o: ALL_CFLAGS += -fvisibility=hidden

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(DAEMON): $(call obj,$(DAEMON_SRC) $(PROTO_SRC))
	$(CC) $(LDFLAGS) $^ -o $@ $(call pkglibs,$(PKGS_DAEMON))

$(LIB_A): $(call obj,$(LIB_SRC) $(PROTO_SRC))
	rm -f $@
	$(AR) rcs $@ $^

# The real file carries the full version and records the soname; the
# soname link is what programs load, the unversioned link is for -lfmredis.
$(LIB_SO).$(SOFULL): $(call obj,$(LIB_SRC) $(PROTO_SRC))
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libfmredis.so.$(SOVERSION) $^ -o $@
$(LIB_SO): $(LIB_SO).$(SOFULL)
	ln -sf libfmredis.so.$(SOFULL) $@.$(SOVERSION)
	ln -sf libfmredis.so.$(SOVERSION) $@

$(CLI): $(call obj,$(CLI_SRC)) $(LIB_A)
	$(CC) $(LDFLAGS) $^ -o $@

$(STALL): tests/stall/stall.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O2 -shared -fPIC $< -o $@ -ldl

# The tests link the daemon's config parser, hash table, latency
# histogram, the cluster parts (key slots, fence names, scripts, slot map),
# the TLS layer under its hiredis adapter and the near cache's store to
# test them directly;
# everything else they reach through the real daemon binary and the socket.
TEST_DAEMON_SRC = daemon/config.c daemon/log.c daemon/map.c daemon/latency.c \
                  daemon/slot.c daemon/fence.c daemon/scripts.c daemon/slotmap.c \
                  daemon/redis_uv.c daemon/tls.c daemon/tls_tunnel.c daemon/near.c
$(TESTS): $(call obj,$(TEST_SRC) $(TEST_DAEMON_SRC)) $(LIB_A)
	$(CC) $(LDFLAGS) $^ -o $@ $(call pkglibs,$(PKGS_TEST))

# Packages a fresh Debian 12 needs: DEB_PKGS_RUN to build and run the
# daemon (make run, with a private redis-server), DEB_PKGS for everything
# make check does. check-install needs mandoc (man page lint), systemd
# (systemd-analyze), procps (pgrep, and /bin/kill: the unit's ExecReload,
# which verify checks) and strace (the daemon's system calls against the
# unit's filter); make deb and check-deb need build-essential, debhelper,
# lintian and debootstrap; test-python installs the Python client into a
# venv with python3-venv, python3-pip, python3-setuptools and python3-wheel;
# test-node runs on nodejs (Debian 12's is Node 18).
DEB_PKGS_RUN = gcc make pkg-config libhiredis-dev libuv1-dev libcjson-dev libssl-dev \
               redis-server
DEB_PKGS = $(DEB_PKGS_RUN) check openssl python3 clang libclang-rt-14-dev valgrind \
           mandoc systemd procps strace \
           build-essential debhelper lintian debootstrap \
           python3-venv python3-pip python3-setuptools python3-wheel nodejs
# Installs what of $(1) is missing, with one apt-get update before.
install_missing = @missing=$$(for p in $(1); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
deps:
	$(call install_missing,$(DEB_PKGS))
deps-run:
	$(call install_missing,$(DEB_PKGS_RUN))

# pkg-config is only there once deps ran, so the build happens in a sub-make.
# Each part says how long it took, so CI logs show where the time goes.
check: deps
	@t0=$$(date +%s); $(MAKE) all $(TESTS) && $(MAKE) test \
	    && echo "== test: $$(($$(date +%s) - t0)) s"
	@t0=$$(date +%s); $(MAKE) test-python \
	    && echo "== test-python: $$(($$(date +%s) - t0)) s"
	@t0=$$(date +%s); $(MAKE) test-node \
	    && echo "== test-node: $$(($$(date +%s) - t0)) s"
	@t0=$$(date +%s); $(MAKE) check-install \
	    && echo "== check-install: $$(($$(date +%s) - t0)) s"
	@t0=$$(date +%s); $(MAKE) check-san \
	    && echo "== check-san: $$(($$(date +%s) - t0)) s"
	@t0=$$(date +%s); $(MAKE) valgrind \
	    && echo "== valgrind: $$(($$(date +%s) - t0)) s"
	@t0=$$(date +%s); $(MAKE) fuzz \
	    && echo "== fuzz: $$(($$(date +%s) - t0)) s"
	@t0=$$(date +%s); $(MAKE) torture \
	    && echo "== torture: $$(($$(date +%s) - t0)) s"
	@t0=$$(date +%s); $(MAKE) bench-smoke \
	    && echo "== bench-smoke: $$(($$(date +%s) - t0)) s"
	@t0=$$(date +%s); $(MAKE) check-deb \
	    && echo "== check-deb: $$(($$(date +%s) - t0)) s"

test: all $(TESTS) $(STALL)
	FMREDISD=$(abspath $(DAEMON)) FMREDIS_CLI=$(abspath $(CLI)) \
	    FM_LIBFMREDIS=$(abspath $(LIB_SO)) \
	    FM_STALL_LIB=$(abspath $(STALL)) FM_SRCDIR=$(CURDIR) $(TESTS)

# ---- The test suite under ASan and UBSan --------------------------------
#
# `make SAN=1 test` builds everything sanitized into build/san and runs the
# suite with FMREDISD and FMREDIS_CLI pointing at the sanitized programs.
# A sanitizer error in the test program fails its test, but one in a daemon
# the tests started would go unseen: its stderr is a log file the harness
# deletes, its exit status is not looked at, and the test may pass anyway.
# So every sanitized process (daemon, CLI, test program) writes its reports
# to files under SAN_REPORTS instead of stderr, and this target fails when
# any report exists. That holds however the process ended or who started it,
# and whoever it runs as (test_access.c starts daemons as users of its own,
# so the directory is writable by all, sticky like /tmp);
# a daemon still gets SIGTERM from the harness, so LeakSanitizer's leak check
# at exit runs too. Timeouts are tripled for the slower build.
SAN_REPORTS = $(abspath build/san/reports)
SAN_ENV = ASAN_OPTIONS=abort_on_error=1:halt_on_error=1:detect_leaks=1:log_path=$(SAN_REPORTS)/asan \
          UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$(SAN_REPORTS)/ubsan \
          CK_TIMEOUT_MULTIPLIER=3

check-san:
	$(MAKE) SAN=1 all build/san/fm-tests
	rm -rf $(SAN_REPORTS) && mkdir -p $(SAN_REPORTS) && chmod 1777 $(SAN_REPORTS)
	@$(SAN_ENV) $(MAKE) SAN=1 test; rc=$$?; \
	if [ -n "$$(ls -A $(SAN_REPORTS))" ]; then \
	    for f in $(SAN_REPORTS)/*; do echo "== $$f"; cat "$$f"; done; \
	    echo "check-san: sanitizer reports above (in $(SAN_REPORTS))"; exit 1; \
	fi; exit $$rc

# ---- The test suite with the daemon under valgrind -----------------------
#
# FMREDISD points at tests/valgrind-fmredisd, which execs valgrind memcheck
# on build/fmredisd with the harness's arguments, writing one log per daemon
# run to VG_LOGS. valgrind's leak check runs when the daemon exits, which it
# does on the harness's SIGTERM. The target fails when any log reports an
# error or a definite leak (--errors-for-leak-kinds=definite makes those count
# in the ERROR SUMMARY). VG_LOGS is writable by all (sticky, like /tmp): some
# daemons run as users the tests made. A run ended by SIGKILL leaves a log without a
# summary: those are counted and named, as unchecked, not failed.
# Check's test timeouts are multiplied by VG_SLOW: the daemon runs 20-50x
# slower under valgrind. No test needed more than that so far.
VG_LOGS = $(abspath build/valgrind)
VG_SLOW = 10

valgrind: all $(TESTS) $(STALL)
	rm -rf $(VG_LOGS) && mkdir -p $(VG_LOGS) && chmod 1777 $(VG_LOGS)
	@FMREDISD=$(CURDIR)/tests/valgrind-fmredisd FM_VALGRIND_LOGS=$(VG_LOGS) \
	    FM_STALL_LIB=$(abspath $(STALL)) \
	    FM_VALGRIND_DAEMON=$(abspath $(DAEMON)) CK_TIMEOUT_MULTIPLIER=$(VG_SLOW) \
	    FMREDIS_CLI=$(abspath $(CLI)) FM_LIBFMREDIS=$(abspath $(LIB_SO)) \
	    FM_SRCDIR=$(CURDIR) $(TESTS); rc=$$?; \
	bad=0; runs=0; unchecked=""; \
	for f in $(VG_LOGS)/*.log; do \
	    [ -e "$$f" ] || continue; runs=$$((runs + 1)); \
	    if ! grep -q 'ERROR SUMMARY:' "$$f"; then unchecked="$$unchecked $$f"; \
	    elif ! grep -q 'ERROR SUMMARY: 0 errors' "$$f"; then cat "$$f"; bad=1; fi; \
	done; \
	echo "valgrind: $$runs daemon runs, logs in $(VG_LOGS)"; \
	[ -z "$$unchecked" ] || echo "valgrind: killed before their leak check:$$unchecked"; \
	[ $$bad = 0 ] || { echo "valgrind: errors or definite leaks above"; exit 1; }; \
	exit $$rc

# ---- Fuzzing -------------------------------------------------------------
#
# Three libFuzzer targets, built with clang, each linked with the sources
# FUZZ_SRC_<target> names: fuzz_frame (the frame reader) and fuzz_request
# (the strict JSON validator and the request field helpers) with proto/,
# fuzz_config (the configuration file and redis_url parsers, and that no
# message shows a URL's password) with daemon/config.c and log.c.
# `make fuzz` runs each for FUZZ_SECONDS. libFuzzer adds what it finds to
# the first corpus directory it is given and only reads the others, so the
# seed corpus in tests/fuzz/corpus/ is read, and new inputs go to
# build/fuzz/corpus/.
# A crash, a failed invariant (abort), a sanitizer report, a timeout or an
# out-of-memory stops the fuzzer with a non-zero status, which fails the
# target; the input is saved as build/fuzz/<target>-crash-* (or -timeout-,
# -oom-) and can be replayed with `build/fuzz/fuzz_<target> FILE`.
# The fuzzer's progress goes to build/fuzz/<target>.log; the console gets
# its final statistics, or the whole report on a failure.
FUZZ_CC      = clang
FUZZ_CFLAGS  = -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
               $(WARN) -Iproto -Idaemon
FUZZ_SECONDS ?= 60
FUZZ_DIR     = build/fuzz
FUZZERS      = frame request config
FUZZ_SRC_frame   = $(PROTO_SRC)
FUZZ_SRC_request = $(PROTO_SRC)
FUZZ_SRC_config  = daemon/config.c daemon/log.c
FUZZ_OPTS    = -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
               -max_len=8192 -print_final_stats=1
FUZZ_OPTS_request = -dict=tests/fuzz/request.dict
FUZZ_OPTS_config  = -dict=tests/fuzz/config.dict

fuzz: $(addprefix fuzz-,$(FUZZERS))

# Second expansion: a target's prerequisites are its own FUZZ_SRC_<target>
# and their headers.
.SECONDEXPANSION:
$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $$(FUZZ_SRC_$$*) \
                    $$(wildcard $$(patsubst %.c,%.h,$$(FUZZ_SRC_$$*))) $(wildcard proto/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(FUZZ_SRC_$*) -o $@

.PHONY: $(addprefix fuzz-,$(FUZZERS))
$(addprefix fuzz-,$(FUZZERS)): fuzz-%: $(FUZZ_DIR)/fuzz_%
	@mkdir -p $(FUZZ_DIR)/corpus/$*
	@echo "fuzz_$*: $(FUZZ_SECONDS) s, log in $(FUZZ_DIR)/$*.log"
	@$< $(FUZZ_OPTS) $(FUZZ_OPTS_$*) -artifact_prefix=$(FUZZ_DIR)/$*- \
	    $(FUZZ_DIR)/corpus/$* tests/fuzz/corpus/$* > $(FUZZ_DIR)/$*.log 2>&1 \
	    || { grep -v -E '^#[0-9]+.*(NEW|REDUCE|pulse) ' $(FUZZ_DIR)/$*.log; \
	         echo "fuzz_$*: FAILED, input saved as $(FUZZ_DIR)/$*-*"; exit 1; }
	@grep -E '^(stat::|Done )' $(FUZZ_DIR)/$*.log

# ---- Lock safety under faults --------------------------------------------
#
# tests/torture/torture.py (Python 3, standard library only) runs two
# sanitized daemons on one redis-server (AOF, appendfsync always) in a private
# temp dir, 16 workers contending for 4 keys and writing to a fenced store,
# and a nemesis drawn from a printed seed: SIGKILL/SIGSTOP of workers, SIGKILL
# of daemons and Redis, CLIENT KILL and DEBUG SLEEP in Redis. Then it checks
# exclusion and fencing, the lock hand-off through the near caches, reply
# deadlines, crashes and sanitizer reports, and that every key can be taken
# again; it prints a summary and exits 1 on any violation, keeping its temp
# dir (logs included) and printing the seed.
TORTURE_SECONDS ?= 60
.PHONY: torture
torture:
	$(MAKE) SAN=1 all
	python3 -B tests/torture/torture.py --daemon build/san/fmredisd \
	    --seconds $(TORTURE_SECONDS) $(if $(SEED),--seed $(SEED))

# ---- The Node.js client ------------------------------------------------------
#
# client/node/ is the Node.js package (its README says how to use it). Its
# tests run under Node's own runner (Node 18.19 or later: Debian 12's nodejs)
# and start a private redis-server and the daemon built here, each test
# file its own, in a temp dir. The files are named (Node 21 and later take
# no directory), and a test or file that runs past --test-timeout fails
# rather than hang the build. node and redis-server are installed from
# Debian when missing (a node from elsewhere, such as NodeSource's, is kept).
# Installs Debian's package $(2) unless the command $(1) is found.
need_command = @command -v $(1) >/dev/null || { apt-get update -q && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(2); }

.PHONY: test-node deps-node
deps-node:
	$(call need_command,node,nodejs)
	$(call need_command,redis-server,redis-server)

test-node: deps-node $(DAEMON)
	FMREDISD=$(abspath $(DAEMON)) node --test --test-timeout=120000 client/node/test/*.test.js

# ---- The Python client ----------------------------------------------------
#
# client/python/tests (unittest) run from the source tree against the
# daemon just built, each test class with its own redis-server and fmredisd;
# one test pip-installs the package into a temporary venv. Debian's own
# Python by default: the
# packages above are installed for it, not for another python3 that may
# come first on PATH. -B keeps __pycache__ out of the tree.
PYTHON ?= /usr/bin/python3
.PHONY: test-python
test-python: $(DAEMON)
	FMREDISD=$(abspath $(DAEMON)) $(PYTHON) -B -m unittest discover -s client/python/tests -t client/python

run: deps-run
	$(MAKE) all
	./examples/run-local.sh $(abspath $(DAEMON)) $(CONF)

# make bench, make bench-smoke, build/fmredis-bench.
include bench/bench.mk
# make install, make uninstall, make check-install.
# ---- Installation --------------------------------------------------------
#
#   make install     installs the daemon, the CLI, the library (static and
#                    shared, with its header and libfmredis.pc), the systemd
#                    units and sysusers file, a configuration file, man pages
#                    and bash completion (the list is INSTALLED below)
#   make uninstall   removes exactly what INSTALLED names
#   make check-install  installs into a temporary DESTDIR and proves the
#                    installed tree works (tests/install/check-install.sh)
#
# PREFIX (/usr/local) and DESTDIR as usual; every directory below can be set
# on the command line, as packaging does:
#   make install PREFIX=/usr LIBDIR=/usr/lib/x86_64-linux-gnu SYSCONFDIR=/etc \
#       UNITDIR=/lib/systemd/system DESTDIR=debian/tmp
# Paths must not hold spaces or colons.
PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
SBINDIR      ?= $(PREFIX)/sbin
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
DATADIR      ?= $(PREFIX)/share
MANDIR       ?= $(DATADIR)/man
DOCDIR       ?= $(DATADIR)/doc/fmredisd
EXAMPLESDIR  ?= $(DOCDIR)/examples
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
BASHCOMPDIR  ?= $(DATADIR)/bash-completion/completions
# systemd searches both under /usr/local/lib as well as /usr/lib.
UNITDIR      ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR  ?= $(PREFIX)/lib/sysusers.d
ifeq ($(PREFIX),/usr)
SYSCONFDIR   ?= /etc
else
SYSCONFDIR   ?= $(PREFIX)/etc
endif

# Files made from templates (NAME.in) with the paths above and the version
# put in for @PREFIX@, @SBINDIR@, ... GEN_SUBST holds the sed script; it is
# rewritten on every run but only touched when a path changed, so changing
# PREFIX remakes the files and nothing else does.
GEN       = $(BUILD)/gen
GEN_SUBST = $(GEN)/subst.sed
SUBST_VARS = PREFIX BINDIR SBINDIR LIBDIR INCLUDEDIR SYSCONFDIR DOCDIR \
             EXAMPLESDIR VERSION
MAN_PAGES = fmredisd.8 fmredisd.conf.5 fmredis.1 libfmredis.3
GEN_FILES = $(GEN)/fmredisd.service $(GEN)/fmredisd.socket \
            $(GEN)/libfmredis.pc $(addprefix $(GEN)/,$(MAN_PAGES))

.PHONY: install uninstall check-install FORCE
$(GEN_SUBST): FORCE
	@mkdir -p $(GEN)
	@printf '%s\n' $(foreach v,$(SUBST_VARS),'s|@$(v)@|$($(v))|g') > $@.tmp
	@if cmp -s $@.tmp $@; then rm $@.tmp; else mv $@.tmp $@; fi

$(GEN)/%: systemd/%.in $(GEN_SUBST)
	sed -f $(GEN_SUBST) $< > $@
$(GEN)/%: client/%.in $(GEN_SUBST)
	sed -f $(GEN_SUBST) $< > $@
$(GEN)/%: docs/man/%.in $(GEN_SUBST)
	sed -f $(GEN_SUBST) $< > $@

# Everything make install puts in place, one DESTINATION:MODE:SOURCE a word.
# MODE is an octal mode; "link" makes DESTINATION a symbolic link to SOURCE;
# "conf" installs a configuration file only where none exists (a reinstall
# keeps the operator's file), and uninstall removes it only while it is
# still the shipped one.
INSTALLED = \
    $(SBINDIR)/fmredisd:755:$(DAEMON) \
    $(BINDIR)/fmredis:755:$(CLI) \
    $(LIBDIR)/libfmredis.a:644:$(LIB_A) \
    $(LIBDIR)/libfmredis.so.$(SOFULL):755:$(LIB_SO).$(SOFULL) \
    $(LIBDIR)/libfmredis.so.$(SOVERSION):link:libfmredis.so.$(SOFULL) \
    $(LIBDIR)/libfmredis.so:link:libfmredis.so.$(SOVERSION) \
    $(INCLUDEDIR)/fmredis.h:644:client/fmredis.h \
    $(INCLUDEDIR)/fm_wire.h:644:proto/fm_wire.h \
    $(PKGCONFIGDIR)/libfmredis.pc:644:$(GEN)/libfmredis.pc \
    $(UNITDIR)/fmredisd.service:644:$(GEN)/fmredisd.service \
    $(UNITDIR)/fmredisd.socket:644:$(GEN)/fmredisd.socket \
    $(UNITDIR)/fmredisd-metrics.service:644:systemd/fmredisd-metrics.service \
    $(UNITDIR)/fmredisd-metrics.timer:644:systemd/fmredisd-metrics.timer \
    $(SYSUSERSDIR)/fmredisd.conf:644:systemd/fmredisd.sysusers \
    $(SYSCONFDIR)/fmredisd/fmredisd.conf:conf:fmredisd.conf.example \
    $(EXAMPLESDIR)/fmredisd.conf.example:644:fmredisd.conf.example \
    $(BASHCOMPDIR)/fmredis:644:client/fmredis-completion.bash \
    $(foreach m,$(MAN_PAGES),$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(m):644:$(GEN)/$(m))

# The directories that are fmredisd's alone, deepest first: uninstall
# removes them once empty. Shared ones (bin, lib/systemd/system, man/man8,
# ...) stay, whether or not install created them.
OWN_DIRS = $(EXAMPLESDIR) $(DOCDIR) $(SYSCONFDIR)/fmredisd

# Run after an install into the live system (no DESTDIR) as root, so that
# the dynamic linker finds the new library; LDCONFIG=: skips it.
LDCONFIG ?= ldconfig

# Splits a word of INSTALLED into $dst (under DESTDIR), $mode and $src.
split_entry = dst=$(DESTDIR)$${e%%:*}; rest=$${e\#*:}; mode=$${rest%%:*}; src=$${rest\#*:}

install: all $(GEN_FILES)
	@set -e; for e in $(INSTALLED); do \
	    $(split_entry); \
	    mkdir -p "$$(dirname "$$dst")"; \
	    case $$mode in \
	    link) ln -sfn "$$src" "$$dst" ;; \
	    conf) if [ -e "$$dst" ]; then echo "kept      $$dst (exists)"; continue; fi; \
	          install -m 644 "$$src" "$$dst" ;; \
	    *)    install -m "$$mode" "$$src" "$$dst" ;; \
	    esac; \
	    echo "installed $$dst"; \
	done
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
	    $(LDCONFIG); \
	    echo "next: systemd-sysusers; systemctl daemon-reload;" \
	         "systemctl enable --now fmredisd (see fmredisd(8))"; \
	fi

uninstall:
	@for e in $(INSTALLED); do \
	    $(split_entry); \
	    if [ "$$mode" = conf ] && [ -e "$$dst" ] && ! cmp -s "$$src" "$$dst"; then \
	        echo "kept      $$dst (changed since installed)"; continue; \
	    fi; \
	    if [ -e "$$dst" ] || [ -L "$$dst" ]; then rm -f "$$dst" && echo "removed   $$dst"; fi; \
	done
	@for d in $(OWN_DIRS); do \
	    [ ! -d "$(DESTDIR)$$d" ] || rmdir --ignore-fail-on-non-empty "$(DESTDIR)$$d"; \
	done

# Installs into a temporary DESTDIR (and a temporary PREFIX) and checks the
# result; see the head of the script for what it proves. Needs mandoc,
# systemd-analyze, redis-server and redis-cli.
check-install: all
	MAKE="$(MAKE)" CC="$(CC)" LDCONFIG=: tests/install/check-install.sh
# make deb, make check-deb.
include tests/deb/deb.mk

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
