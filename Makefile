# fmredisd -- build, test and run.
#
#   make            build/fmredisd, build/fmredis, build/libfmredis.{a,so}
#   make check      install missing packages, build, run the whole test suite
#   make run        install missing packages, build, run the daemon in the
#                   foreground (with a private redis-server unless a config
#                   file or $REDIS_URL names one)
#   make SAN=1 ...  the same with AddressSanitizer and UBSan

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

PKGS_DAEMON = hiredis libuv
PKGS_TEST   = hiredis libcjson check
pkgcflags   = $(shell pkg-config --cflags $(1))
pkglibs     = $(shell pkg-config --libs $(1))

ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC $(WARN) $(CFLAGS) -Iproto -Iclient

PROTO_SRC  = $(wildcard proto/*.c)
DAEMON_SRC = $(wildcard daemon/*.c)
LIB_SRC    = client/fmredis.c
CLI_SRC    = client/cli.c
TEST_SRC   = $(wildcard tests/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

DAEMON  = $(BUILD)/fmredisd
CLI     = $(BUILD)/fmredis
LIB_A   = $(BUILD)/libfmredis.a
LIB_SO  = $(BUILD)/libfmredis.so
TESTS   = $(BUILD)/fm-tests

.PHONY: all check test run deps clean
all: $(DAEMON) $(CLI) $(LIB_A) $(LIB_SO)

$(BUILD)/obj/daemon/%.o: ALL_CFLAGS += $(call pkgcflags,$(PKGS_DAEMON))
$(BUILD)/obj/tests/%.o:  ALL_CFLAGS += $(call pkgcflags,$(PKGS_TEST)) -Idaemon

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(DAEMON): $(call obj,$(DAEMON_SRC) $(PROTO_SRC))
	$(CC) $(LDFLAGS) $^ -o $@ $(call pkglibs,$(PKGS_DAEMON))

$(LIB_A): $(call obj,$(LIB_SRC) $(PROTO_SRC))
	rm -f $@
	$(AR) rcs $@ $^

# The real file carries the soname; the unversioned name is for -lfmredis.
$(LIB_SO): $(call obj,$(LIB_SRC) $(PROTO_SRC))
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libfmredis.so.0 $^ -o $@.0
	ln -sf libfmredis.so.0 $@

$(CLI): $(call obj,$(CLI_SRC)) $(LIB_A)
	$(CC) $(LDFLAGS) $^ -o $@

# The tests link the daemon's config parser to test it directly; everything
# else they reach through the real daemon binary and the socket.
$(TESTS): $(call obj,$(TEST_SRC) daemon/config.c daemon/log.c) $(LIB_A)
	$(CC) $(LDFLAGS) $^ -o $@ $(call pkglibs,$(PKGS_TEST))

# Packages a fresh Debian 12 needs to build, test and run.
DEB_PKGS = gcc make pkg-config libhiredis-dev libuv1-dev libcjson-dev check \
           redis-server python3
deps:
	@missing=$$(for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

# pkg-config is only there once deps ran, so the build happens in a sub-make.
check: deps
	$(MAKE) all $(TESTS)
	$(MAKE) test

test: all $(TESTS)
	FMREDISD=$(abspath $(DAEMON)) FMREDIS_CLI=$(abspath $(CLI)) \
	    FM_SRCDIR=$(CURDIR) $(TESTS)

run: deps
	$(MAKE) all
	./examples/run-local.sh $(abspath $(DAEMON)) $(CONF)

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
