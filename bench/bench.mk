# ---- Benchmark: fmredisd against direct Redis access ---------------------
#
# build/fmredis-bench starts its own redis-server (Unix socket, private
# temporary directory) and fmredisd, runs the same workloads (lock, cache, hot,
# get_many, wake) through the daemon with libfmredis and directly with
# hiredis sending the daemon's very commands, then the TLS rows (lock and
# cache pairs through fmredisd over rediss:// and over plain TCP, and
# hiredis over TCP, against a second redis-server serving both on
# 127.0.0.1, with certificates made by openssl for the run), measures the
# lock hand-off (push vs polling), the daemon's memory per idle client and
# one large get_many, then stops every server. Not part of `all` or `check`:
#
#   make bench        the full matrix (1, 8, 32, 128 clients; the TLS rows
#                     at 32; about 70 s on 2 cores): a table on stdout, the
#                     numbers in $(BUILD)/bench/results.{csv,json}
#   make bench-smoke  short runs, 1 and 8 clients, the TLS rows at 8:
#                     succeeds only when every workload ran and every reply
#                     was right (no timing is judged), for CI
#   bench/plot.sh     PNGs of throughput vs clients from the CSV (gnuplot)
#
# BENCH_ARGS go to the full run, e.g. BENCH_ARGS="--only lock --clients 128
# --seconds 3" to profile one case, or BENCH_ARGS="--only tls" for the TLS
# rows alone (the hand-off, idle-client and large get_many measurements
# run with any --only).
BENCH_SRC = $(wildcard bench/*.c)
BENCH     = $(BUILD)/fmredis-bench
BENCH_OUT = $(BUILD)/bench
BENCH_RUN = FMREDISD=$(abspath $(DAEMON)) $(BENCH)
BENCH_ARGS ?=

$(BUILD)/obj/bench/%.o: ALL_CFLAGS += $(call pkgcflags,hiredis check) -Idaemon -Itests

# The direct path runs the daemon's own scripts (scripts.c) and names fence
# counters with its fence.c and slot.c; the tests' harness starts and stops
# the servers, and their topo_tls.c (with proc.c, which runs openssl) makes
# the TLS rows' certificates and TLS redis-server.
$(BENCH): $(call obj,$(BENCH_SRC) daemon/fence.c daemon/slot.c daemon/scripts.c \
                   tests/harness.c tests/topo_tls.c tests/proc.c) $(LIB_A)
	$(CC) $(LDFLAGS) -pthread $^ -o $@ $(call pkglibs,hiredis check)

# On a fresh machine `make bench` installs the packages first, as check does
# (and, like check, builds in a sub-make, once pkg-config is there).
.PHONY: bench bench-smoke
bench: deps
	@$(MAKE) --no-print-directory all $(BENCH)
	@mkdir -p $(BENCH_OUT)
	$(BENCH_RUN) $(BENCH_ARGS) --csv $(BENCH_OUT)/results.csv --json $(BENCH_OUT)/results.json

bench-smoke: all $(BENCH)
	@mkdir -p $(BENCH_OUT)
	$(BENCH_RUN) --smoke --csv $(BENCH_OUT)/smoke.csv --json $(BENCH_OUT)/smoke.json

# ---- From Node ------------------------------------------------------------
#
# bench/node/bench.js: lock pairs and cache set+get pairs from one Node
# process at 1, 8 and 32 concurrent callers, through fmredisd with the
# client in client/node/, and directly with node-redis (redis v4) and
# ioredis sending the commands a program without the daemon sends. Those
# two come from npm into bench/node/node_modules, as bench/node/
# package-lock.json pins them (npm itself from Debian when missing). It
# starts its own redis-server and fmredisd in a temp dir, Redis on a Unix
# socket, and prints a table. BENCH_NODE_ARGS, e.g. "--only lock
# --callers 32 --seconds 5", go to it.
BENCH_NODE_ARGS ?=
BENCH_NODE_DEPS = bench/node/node_modules/.package-lock.json

$(BENCH_NODE_DEPS): bench/node/package-lock.json
	$(call need_command,npm,npm)
	cd bench/node && npm ci --no-audit --no-fund

.PHONY: bench-node
bench-node: deps-node $(DAEMON) $(BENCH_NODE_DEPS)
	FMREDISD=$(abspath $(DAEMON)) node bench/node/bench.js $(BENCH_NODE_ARGS)
