#!/usr/bin/env python3
# torture.py -- lock safety of fmredisd under faults, in the spirit of Jepsen.
#
# Why: unit tests inject one fault at a time. Locks are only as good as their
# behaviour when faults pile up: holders killed and frozen, daemons killed,
# Redis killed, cut off and frozen, all while workers contend for a handful
# of keys. This program runs that, then checks from the logs that exclusion
# and fencing held, that every request was answered in time, that no daemon
# crashed or reported a sanitizer error, and that every lock can be taken
# again once the faults stop. `make torture` runs it (SEED=N replays a run's
# nemesis schedule, TORTURE_SECONDS sets the length).
#
# How: in a private temp dir it starts one redis-server (AOF, appendfsync
# always, Unix socket only, DEBUG enabled), two fmredisd (the ASan+UBSan
# build, reports to files), a fence store (store.py) and 16 workers
# (worker.py, separate processes: half auto_extend, half plain TTL with
# on_disconnect "release"; 4 keys; TTLs 400..1000 ms). A nemesis, driven by
# random.Random(seed), SIGKILLs and restarts workers, SIGSTOPs workers for
# longer than their TTL (preferably right after a write inside a critical
# section, read from the worker's log tail), SIGKILLs and restarts daemons
# and Redis, cuts the daemons' Redis connections (CLIENT KILL) and freezes
# Redis (DEBUG SLEEP). Every fault is logged with its start and end. The
# checker is one thread with a timer queue: nothing blocks on a fault, and
# conditions (a socket accepting, a PING) are awaited with deadlines, not
# fixed sleeps. Then the nemesis stops, stopped workers get SIGCONT, the
# workers run fault-free for a moment and are killed, every key is acquired
# again, the daemons get SIGTERM and must exit 0, and checks.py judges the
# logs. Every process started here is in its own process group, is killed by
# pid/group in a finally and at exit, and has PR_SET_PDEATHSIG set, so none
# outlives the checker. The temp dir is removed on PASS (--keep keeps it) and
# kept on FAIL, with the daemons' and Redis's logs, every worker's log, the
# store's log, the fault log and the plan; timeline.py merges them for a key.
#
# What is guaranteed, and what is not:
# - Exclusion in wall-clock time is not something a lock service can promise:
#   a plain-TTL holder frozen past its TTL resumes believing it holds the
#   lock, and its section overlaps the next holder's. What is promised, and
#   checked, is (a) that the store, which checks the fence, never takes a
#   write of an older section after a newer one, and never sees one fence
#   from two holders; (b) that sections whose release answered
#   released:true (their token held the key from grant to release) never
#   overlap each other, that no newer grant happens inside them, and that no
#   write with an equal or newer fence is accepted inside them. A stale
#   holder's write can still be accepted in the gap between a new grant and
#   the new holder's first write: nothing newer reached the store yet, so the
#   fence cannot refuse it. Those are counted, not failed.
# - Fences increase per key only while Redis keeps its data. With
#   appendfsync always every acknowledged write survives a SIGKILL of Redis,
#   so a fence that goes back across a Redis restart is reported as "Redis
#   lost acknowledged writes (check appendfsync)". Unacknowledged writes may
#   survive too: those only leave gaps.
# - Latency: every request must be answered within request_timeout_ms (plus
#   retry_delay*max_retries for acquires) plus LATENCY_MARGIN_MS. Requests of
#   a worker overlapping its own SIGSTOP, or cut short by its SIGKILL, are
#   not judged: a frozen or dead reader cannot time its reply.
# - The lock hand-off through the near caches: each section reads execution
#   tt-<key> right after its grant and writes it with its fence before its
#   end, through the daemons' near caches (on, by default). A read must see
#   the latest write acknowledged before its acquire was sent, or a write
#   that may have landed after that one (checks.py, check 6): the fence each
#   daemon raises after a grant is what makes that hold across the two.

import argparse
import atexit
import heapq
import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import checks  # noqa: E402
from common import (FrameBuf, Resp, RedisError, encode, now,  # noqa: E402
                    preexec_die_with_parent, redis_call)

N_WORKERS = 16
KEYS = ["k0", "k1", "k2", "k3"]
REQUEST_TIMEOUT_MS = 1000
RETRY_DELAY_MS = 50
MAX_RETRIES = 20
TTL_CHOICES = [400, 500, 600, 800, 1000]      # plain-TTL workers
AE_TTL_CHOICES = [600, 800, 1000]             # auto_extend workers
MAX_TTL = max(TTL_CHOICES + AE_TTL_CHOICES)
# Margin over each request's bound. The bound is the daemon's own deadline;
# on top come (1) the daemon's event loop and timers running late under ASan
# (2-3x slower) on a 2-core machine shared with a second daemon, Redis
# fsyncing every write, 16 Python workers and, in the stress runs, two CPU
# hogs, where a runnable process can wait a few hundred ms for a core; and
# (2) the worker's own scheduling delay between the reply reaching its socket
# and time.monotonic(). 1000 ms covers both with room; a daemon that forgets
# a request misses it by far more (the client deadline is bound + 5 s).
LATENCY_MARGIN_MS = 1000
# Check 5: once the workers are gone, every key must be acquirable within
# one (the largest) TTL plus this: the waiter's retry_delay (20 ms here: an
# expiry is not published), a restarted link's backoff (<= 200 ms), and the
# same scheduling slack as above.
REACQUIRE_MARGIN_MS = 700
RECOVERY_S = 1.5            # fault-free run before the workers are stopped

SETPRIV = shutil.which("setpriv")

FAULT_WEIGHTS = [
    ("worker SIGKILL", 3.0),
    ("worker SIGSTOP", 3.0),
    ("daemon SIGKILL", 1.5),
    ("redis SIGKILL", 1.0),
    ("CLIENT KILL", 1.5),
    ("DEBUG SLEEP", 1.5),
]


class Proc:
    """One child process in its own process group, dying with the checker."""

    def __init__(self, name, argv, log_path, env=None, self_guarded=False):
        """self_guarded: the program sets PR_SET_PDEATHSIG itself (our
        Python children). Others get it from setpriv(1) (util-linux), or
        else from a preexec_fn, which makes each spawn ~25 ms slower since
        Python must then fork instead of vfork."""
        self.name = name
        self.expected_exit = False
        preexec = None
        if not self_guarded:
            if SETPRIV:
                argv = [SETPRIV, "--pdeathsig", "KILL", "--"] + argv
            else:
                preexec = preexec_die_with_parent(os.getpid())
        with open(log_path, "ab") as logf:
            logf.write(("\n=== torture: start %s at %.3f: %s\n" % (
                name, now(), " ".join(argv))).encode())
            logf.flush()
            self.p = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                env=env, close_fds=True, process_group=0, preexec_fn=preexec)
        self.pid = self.p.pid
        self.log_path = log_path

    def poll(self):
        return self.p.poll()

    def signal(self, sig):
        if self.p.returncode is None:
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        self.expected_exit = True
        self.signal(signal.SIGKILL)

    def reap(self, timeout=10.0):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.p.wait(5)


class DClient:
    """A small blocking fmredisd client for the checker's own requests."""

    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.fb = FrameBuf()
        self.next_id = 0
        self.replies = {}

    def send(self, **req):
        self.next_id += 1
        req["id"] = self.next_id
        self.sock.sendall(encode(req))
        return self.next_id

    def wait(self, rid, deadline):
        while rid not in self.replies:
            obj = self.fb.next()
            if obj is not None:
                if "id" in obj:
                    self.replies[obj["id"]] = (now(), obj)
                continue
            left = deadline - now()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not data:
                raise ConnectionError("daemon closed the connection")
            self.fb.feed(data)
        return self.replies.pop(rid)

    def close(self):
        self.sock.close()


class Torture:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.rng = random.Random(self.seed)
        self.dir = tempfile.mkdtemp(prefix="fmtorture-")
        self.reports = os.path.join(self.dir, "reports")
        os.makedirs(self.reports)
        os.makedirs(os.path.join(self.dir, "workers"))
        self.redis_sock = os.path.join(self.dir, "redis.sock")
        self.store_sock = os.path.join(self.dir, "store.sock")
        self.dsocks = [os.path.join(self.dir, "d%d.sock" % i) for i in range(2)]
        self.daemon_bin = os.path.abspath(args.daemon)
        self.redis = None
        self.store = None
        self.daemons = [None, None]
        self.workers = [None] * N_WORKERS
        self.worker_inc = [0] * N_WORKERS
        self.worker_pids = []
        self.timers = []
        self.timer_seq = 0
        self.busy = {}
        self.active = {}
        self.faults = []
        self.fault_log = open(os.path.join(self.dir, "faults.log"), "a")
        self.skipped = 0
        self.crashes = []
        self.daemon_deaths = {}
        self.violations = []
        self.finishing = False
        self.t0 = now()
        self.wcfg = []
        for i in range(N_WORKERS):
            ae = i % 2 == 0
            self.wcfg.append({
                "w": "w%02d" % i, "daemon": self.dsocks[i % 2],
                "store": self.store_sock,
                "log": os.path.join(self.dir, "workers", "w%02d.log" % i),
                "keys": KEYS, "auto_extend": ae,
                "ttl": self.rng.choice(AE_TTL_CHOICES if ae else TTL_CHOICES),
                "seed": self.seed, "parent": os.getpid(),
                "request_timeout_ms": REQUEST_TIMEOUT_MS,
                "retry_delay": RETRY_DELAY_MS, "max_retries": MAX_RETRIES})

    def replay(self):
        cmd = "make torture SEED=%d" % self.seed
        if self.args.seconds != 60:
            cmd += " TORTURE_SECONDS=%g" % self.args.seconds
        return cmd

    # ---- children -----------------------------------------------------------

    def all_procs(self):
        return [p for p in self.workers + self.daemons + [self.store, self.redis]
                if p is not None]

    def kill_everything(self):
        for p in self.all_procs():
            if p.p.returncode is None:
                p.kill()
        for p in self.all_procs():
            try:
                p.p.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def redis_argv(self):
        return ["redis-server", "--appendonly", "yes", "--appendfsync", "always",
                "--enable-debug-command", "yes", "--port", "0",
                "--unixsocket", self.redis_sock, "--unixsocketperm", "700",
                "--dir", self.dir, "--save", ""]

    def start_redis(self):
        self.redis = Proc("redis", self.redis_argv(),
                          os.path.join(self.dir, "redis.log"))

    def redis_ready(self):
        try:
            return redis_call(self.redis_sock, "PING", timeout=0.5) == "PONG"
        except (OSError, RedisError, ConnectionError):
            return False

    def start_daemon(self, i):
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = ("abort_on_error=1:halt_on_error=1:detect_leaks=1:"
                               "log_path=%s/asan" % self.reports)
        env["UBSAN_OPTIONS"] = ("halt_on_error=1:print_stacktrace=1:"
                                "log_path=%s/ubsan" % self.reports)
        argv = [self.daemon_bin, "--socket", self.dsocks[i],
                "--redis_url", "unix://" + self.redis_sock,
                "--request_timeout_ms", str(REQUEST_TIMEOUT_MS),
                "--reconnect_step_ms", "20", "--reconnect_max_ms", "200",
                "--log_level", "info"]
        self.daemons[i] = Proc("d%d" % i, argv,
                               os.path.join(self.dir, "d%d.log" % i), env)

    def sock_ready(self, path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect(path)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def start_worker(self, i):
        cfg = dict(self.wcfg[i], inc=self.worker_inc[i])
        self.worker_inc[i] += 1
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ASAN_", "UBSAN_"))}
        p = Proc("w%02d" % i, [sys.executable, "-B",
                               os.path.join(HERE, "worker.py"), json.dumps(cfg)],
                 os.path.join(self.dir, "workers", "w%02d.err" % i), env,
                 self_guarded=True)
        self.workers[i] = p
        self.worker_pids.append(p.pid)

    def wait_for(self, what, cond, timeout):
        deadline = now() + timeout
        while not cond():
            if now() > deadline:
                raise RuntimeError("timed out waiting for %s" % what)
            self.check_children()
            time.sleep(0.01)

    def check_children(self):
        """Any exit that the nemesis did not cause is recorded; a crashed
        daemon is restarted so the run goes on."""
        for i, d in enumerate(self.daemons):
            if d is not None and not d.expected_exit and d.poll() is not None:
                self.crash("daemon d%d (pid %d) exited with status %s" % (
                    i, d.pid, d.poll()), d.log_path)
                self.daemon_deaths.setdefault(self.dsocks[i], []).append(now())
                d.expected_exit = True
                if self.busy.get("d%d" % i) is None:
                    self.start_daemon(i)
        if self.redis is not None and not self.redis.expected_exit \
                and self.redis.poll() is not None:
            self.crash("redis-server (pid %d) exited with status %s" % (
                self.redis.pid, self.redis.poll()), self.redis.log_path,
                "redis")
            self.redis.expected_exit = True
            self.start_redis()
        for i, w in enumerate(self.workers):
            if w is not None and not w.expected_exit and w.poll() is not None:
                self.crash("checker error: worker w%02d (pid %d) exited with "
                           "status %s" % (i, w.pid, w.poll()), w.log_path,
                           "checker")
                w.expected_exit = True
        if self.store is not None and not self.store.expected_exit \
                and self.store.poll() is not None:
            self.crash("checker error: the store exited with status %s"
                       % self.store.poll(), self.store.log_path, "checker")
            self.store.expected_exit = True
            raise RuntimeError("the fence store died")

    def reaped(self, proc, what, check="4"):
        """Reap a process the nemesis SIGKILLed; if it had already died of
        something else, that was a crash."""
        rc = proc.reap()
        if rc != -signal.SIGKILL:
            self.crash("%s (pid %d) died with status %s before the nemesis' "
                       "SIGKILL" % (what, proc.pid, rc), proc.log_path, check)

    def crash(self, text, log_path, check="4"):
        tail = ""
        try:
            with open(log_path, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 1500))
                tail = f.read().decode(errors="replace")
        except OSError:
            pass
        self.crashes.append((check, "%s at %.3f; log %s ends:\n%s" % (
            text, now() - self.t0, log_path, tail)))

    # ---- timers -------------------------------------------------------------

    def at(self, t, fn):
        self.timer_seq += 1
        heapq.heappush(self.timers, (t, self.timer_seq, fn))

    def tick(self, until):
        while self.timers and self.timers[0][0] <= now():
            _, _, fn = heapq.heappop(self.timers)
            fn()
        self.check_children()
        nxt = self.timers[0][0] if self.timers else until
        time.sleep(max(0.0, min(0.01, nxt - now(), until - now())))

    # ---- the nemesis --------------------------------------------------------

    def plan(self, seconds):
        """The whole schedule, drawn from the seed before anything runs."""
        kinds = [k for k, _ in FAULT_WEIGHTS]
        weights = [w for _, w in FAULT_WEIGHTS]
        plan, t = [], 1.0
        plain = [i for i in range(N_WORKERS) if not self.wcfg[i]["auto_extend"]]
        while True:
            t += self.rng.uniform(0.25, 1.0)
            if t > seconds - 0.5:
                break
            kind = self.rng.choices(kinds, weights)[0]
            f = {"kind": kind, "at": round(t, 3)}
            if kind == "worker SIGKILL":
                f["target"] = "w%02d" % self.rng.randrange(N_WORKERS)
                f["delay"] = self.rng.uniform(0.0, 0.3)
            elif kind == "worker SIGSTOP":
                i = (self.rng.choice(plain) if self.rng.random() < 0.75
                     else self.rng.randrange(N_WORKERS))
                f["target"] = "w%02d" % i
                f["duration"] = self.wcfg[i]["ttl"] / 1000.0 * self.rng.uniform(1.3, 2.5)
            elif kind == "daemon SIGKILL":
                f["target"] = "d%d" % self.rng.randrange(2)
                f["delay"] = self.rng.uniform(0.0, 0.4)
            elif kind == "redis SIGKILL":
                f["target"] = "redis"
                f["delay"] = self.rng.uniform(0.0, 0.3)
            elif kind == "CLIENT KILL":
                f["target"] = "redis"
                f["variant"] = self.rng.choice(["TYPE normal", "TYPE pubsub", "ID"])
            elif kind == "DEBUG SLEEP":
                f["target"] = "redis"
                f["duration"] = round(self.rng.uniform(0.2, 1.5), 3)
            plan.append(f)
        with open(os.path.join(self.dir, "plan.json"), "w") as fp:
            json.dump(plan, fp, indent=1)
        return plan

    def schedule(self, plan):
        for f in plan:
            self.at(self.t_run + f["at"], lambda f=f: self.fault(f, 0))

    def fault(self, f, tries):
        if self.finishing:
            return
        if self.busy.get(f["target"]) is not None:
            if tries < 40:
                self.at(now() + 0.05, lambda: self.fault(f, tries + 1))
            else:
                self.skipped += 1
            return
        rec = {"kind": f["kind"], "target": f["target"], "t0": None, "t1": None}
        self.busy[f["target"]] = rec
        getattr(self, "f_" + f["kind"].split()[0].lower() + "_"
                + f["kind"].split()[1].lower())(f, rec)

    def begin(self, rec, **kw):
        rec.update(kw)
        rec["t0"] = now()
        self.faults.append(rec)

    def end(self, rec, **kw):
        rec.update(kw)
        rec["t1"] = now()
        self.busy[rec["target"]] = None
        self.active.pop(rec["target"], None)
        self.fault_log.write(json.dumps(
            dict(rec, t0=rec["t0"] - self.t0, t1=rec["t1"] - self.t0)) + "\n")
        self.fault_log.flush()

    # worker SIGKILL, then a new incarnation after a short delay
    def f_worker_sigkill(self, f, rec):
        i = int(f["target"][1:])
        w = self.workers[i]
        self.begin(rec, pid=w.pid)
        w.kill()

        def restart():
            if rec["t1"] is not None:
                return
            self.reaped(w, "worker w%02d" % i, "checker")
            self.start_worker(i)
            self.end(rec, new_pid=self.workers[i].pid)
        self.active[f["target"]] = restart
        self.at(now() + f["delay"], restart)

    # worker SIGSTOP for longer than its TTL, ideally after a write in its
    # critical section
    def f_worker_sigstop(self, f, rec):
        i = int(f["target"][1:])
        w = self.workers[i]
        give_up = now() + 0.6

        def try_stop():
            if rec.get("cancelled"):
                return
            if not self.in_section(i) and now() < give_up:
                self.at(now() + 0.005, try_stop)
                return
            self.begin(rec, pid=w.pid, duration=f["duration"],
                       in_section=self.in_section(i))
            w.signal(signal.SIGSTOP)
            self.at(now() + f["duration"], cont)

        def cont():
            if rec["t1"] is not None:
                return
            w.signal(signal.SIGCONT)
            self.end(rec)

        def finish_now():
            if rec["t0"] is None:
                rec["cancelled"] = True
                self.busy[f["target"]] = None
                self.active.pop(f["target"], None)
            else:
                cont()
        self.active[f["target"]] = finish_now
        try_stop()

    def in_section(self, i):
        """True when worker i's last record is an accepted write."""
        try:
            with open(self.wcfg[i]["log"], "rb") as fp:
                fp.seek(0, 2)
                fp.seek(max(0, fp.tell() - 600))
                lines = fp.read().split(b"\n")
        except OSError:
            return False
        for line in reversed(lines):
            if line.strip():
                try:
                    r = json.loads(line)
                except ValueError:
                    return False
                return r.get("t") == "wrecv" and r.get("accepted") is True
        return False

    # daemon SIGKILL, restart on the same socket path (it removes the stale
    # socket file itself), ready once the socket accepts
    def f_daemon_sigkill(self, f, rec):
        i = int(f["target"][1:])
        d = self.daemons[i]
        self.begin(rec, pid=d.pid, socket=self.dsocks[i])
        d.kill()
        state = {"started": False, "deadline": None}

        def restart():
            if state["started"]:
                return
            state["started"] = True
            self.reaped(d, "daemon d%d" % i)
            self.start_daemon(i)
            state["deadline"] = now() + 15
            ready()

        def ready():
            if rec["t1"] is not None:
                return
            if self.daemons[i].poll() is not None:
                # It died before it was ready: check_children recorded
                # that as a crash; try again.
                self.daemons[i].expected_exit = True
                self.start_daemon(i)
            if self.sock_ready(self.dsocks[i]):
                self.end(rec, new_pid=self.daemons[i].pid)
            elif now() > state["deadline"]:
                self.violations.append(("4", "daemon d%d did not accept "
                                        "connections 15 s after its restart" % i))
                self.end(rec)
            else:
                self.at(now() + 0.01, ready)
        self.active[f["target"]] = restart
        self.at(now() + f["delay"], restart)

    # redis SIGKILL, restart with the same arguments (the AOF brings back
    # every acknowledged write), ready once PING answers PONG
    def f_redis_sigkill(self, f, rec):
        self.begin(rec, pid=self.redis.pid)
        self.redis.kill()
        state = {"started": False, "deadline": None}

        def restart():
            if state["started"]:
                return
            state["started"] = True
            self.reaped(self.redis, "redis-server", "redis")
            self.start_redis()
            state["deadline"] = now() + 20
            ready()

        def ready():
            if rec["t1"] is not None:
                return
            if self.redis_ready():
                self.end(rec, new_pid=self.redis.pid)
            elif now() > state["deadline"]:
                raise RuntimeError("redis did not come back after a restart")
            else:
                self.at(now() + 0.01, ready)
        self.active[f["target"]] = restart
        self.at(now() + f["delay"], restart)

    # cut the daemons' Redis connections
    def f_client_kill(self, f, rec):
        self.begin(rec, variant=f["variant"])
        try:
            r = Resp(self.redis_sock, timeout=3.0)
            try:
                if f["variant"] == "ID":
                    me = r.call("CLIENT", "ID")
                    lst = r.call("CLIENT", "LIST").decode()
                    ids = [int(tok[3:]) for line in lst.splitlines()
                           for tok in line.split() if tok.startswith("id=")]
                    n = 0
                    for cid in ids:
                        if cid != me:
                            n += r.call("CLIENT", "KILL", "ID", cid)
                else:
                    n = r.call("CLIENT", "KILL", *f["variant"].split())
            finally:
                r.close()
            self.end(rec, killed=n)
        except (OSError, RedisError, ConnectionError) as e:
            self.end(rec, error=str(e))

    # freeze Redis; the reply comes when it wakes
    def f_debug_sleep(self, f, rec):
        try:
            r = Resp(self.redis_sock, timeout=3.0)
            r.send("DEBUG", "SLEEP", "%.3f" % f["duration"])
        except (OSError, ConnectionError) as e:
            self.begin(rec, duration=f["duration"])
            self.end(rec, error=str(e))
            return
        self.begin(rec, duration=f["duration"])
        deadline = now() + f["duration"] + 10

        def poll():
            if rec["t1"] is not None:
                return
            rd, _, _ = select.select([r.fileno()], [], [], 0)
            if rd or now() > deadline:
                try:
                    rep = r.reply()
                    err = None if rep == "OK" else str(rep)
                except (OSError, ConnectionError) as e:
                    err = str(e)
                r.close()
                self.end(rec, error=err) if err else self.end(rec)
            else:
                self.at(now() + 0.005, poll)
        self.active[f["target"]] = lambda: None
        poll()

    # ---- phases ---------------------------------------------------------------

    def start_all(self):
        self.start_redis()
        self.wait_for("redis PING", self.redis_ready, 20)
        self.store = Proc("store", [sys.executable, "-B",
                                    os.path.join(HERE, "store.py"),
                                    self.store_sock,
                                    os.path.join(self.dir, "store.log"),
                                    str(os.getpid())],
                          os.path.join(self.dir, "store.err"),
                          self_guarded=True)
        for i in range(2):
            self.start_daemon(i)
        self.wait_for("the store", lambda: self.sock_ready(self.store_sock), 20)
        for i in range(2):
            self.wait_for("daemon d%d" % i,
                          lambda i=i: self.sock_ready(self.dsocks[i]), 20)
        for i in range(N_WORKERS):
            self.start_worker(i)

    def finish_faults(self):
        """Stop the nemesis: SIGCONT the stopped, restart the killed, wait
        for Redis to wake, and for everything to be back."""
        self.finishing = True
        for fn in list(self.active.values()):
            fn()
        deadline = now() + 30
        while any(v is not None for v in self.busy.values()):
            if now() > deadline:
                raise RuntimeError("faults did not end: %r" % {
                    k: v for k, v in self.busy.items() if v is not None})
            self.tick(now() + 0.01)
        self.wait_for("redis PING", self.redis_ready, 20)
        for i in range(2):
            self.wait_for("daemon d%d" % i,
                          lambda i=i: self.sock_ready(self.dsocks[i]), 20)

    def stop_workers(self):
        for w in self.workers:
            w.kill()
        kills = {}
        for w in self.workers:
            w.reap()
            kills[w.pid] = now()
        return kills

    def reacquire(self):
        """Check 5: with the workers gone, each key within one TTL + margin,
        through each daemon in turn."""
        bound = (MAX_TTL + REACQUIRE_MARGIN_MS) / 1000.0
        secs, worst = [], 0.0
        for i in range(2):
            c = DClient(self.dsocks[i])
            try:
                t_start = now()
                sent = {}
                for k in KEYS:
                    # The checker's own locks get a long TTL: they must not
                    # expire before it releases them.
                    sent[k] = (now(), c.send(op="lock.acquire", key=k,
                                             ttl=30000, retry_delay=20,
                                             max_retries=(MAX_TTL + REACQUIRE_MARGIN_MS) // 20,
                                             on_disconnect="release"))
                for k in KEYS:
                    t_sent, rid = sent[k]
                    got = c.wait(rid, t_start + bound + 3 + REQUEST_TIMEOUT_MS / 1000.0)
                    if got is None or not got[1].get("ok") or not got[1].get("token"):
                        self.violations.append(("5", "key %s could not be acquired "
                                                "through d%d after the workers "
                                                "stopped: %r" % (k, i, got and got[1])))
                        continue
                    t, rep = got
                    took = t - t_start
                    worst = max(worst, took)
                    if took > bound:
                        self.violations.append(("5", "key %s acquired through d%d "
                                                "%.0f ms after the workers stopped; "
                                                "bound %d ms" % (k, i, took * 1000,
                                                                 bound * 1000)))
                    end = now()
                    rid = c.send(op="lock.release", key=k, token=rep["token"])
                    rel = c.wait(rid, now() + REQUEST_TIMEOUT_MS / 1000.0 + 3)
                    released = bool(rel and rel[1].get("ok") and rel[1].get("released"))
                    if not released:
                        self.violations.append(("5", "release of key %s through "
                                                "d%d: %r" % (k, i, rel and rel[1])))
                    secs.append({"key": k, "token": rep["token"],
                                 "fence": rep["fence"], "start": t,
                                 "sent": t_sent, "w": "checker",
                                 "pid": os.getpid(), "auto_extend": False,
                                 "end": end, "released": released,
                                 "reason": None, "writes": []})
            finally:
                c.close()
        return secs, worst

    def stop_daemons(self):
        """Check 4's end: SIGTERM, and exit 0 within request_timeout_ms + 1 s
        (the documented hard stop) plus slack for LeakSanitizer at exit."""
        limit = REQUEST_TIMEOUT_MS / 1000.0 + 1 + 4
        t_sig = now()
        for d in self.daemons:
            d.expected_exit = True
            d.signal(signal.SIGTERM)
        for i, d in enumerate(self.daemons):
            try:
                rc = d.p.wait(max(0.1, limit - (now() - t_sig)))
            except subprocess.TimeoutExpired:
                d.kill()
                d.p.wait(5)
                self.violations.append(("4", "daemon d%d did not exit within "
                                        "%.1f s of SIGTERM" % (i, limit)))
                continue
            if rc != 0:
                self.crash("daemon d%d exited with status %s after SIGTERM"
                           % (i, rc), d.log_path)

    def run(self):
        a = self.args
        print("torture: seed %d, %d s, daemon %s" % (self.seed, a.seconds,
                                                     self.daemon_bin))
        print("torture: replay with: %s" % self.replay())
        print("torture: working in %s" % self.dir)
        sys.stdout.flush()
        plan = self.plan(a.seconds)
        with open(os.path.join(self.dir, "run.json"), "w") as fp:
            json.dump({"seed": self.seed, "seconds": a.seconds, "t0": self.t0,
                       "workers": self.wcfg}, fp, indent=1)
        self.start_all()
        self.t_run = now()
        print("torture: started in %.1f s; nemesis for %d s" % (
            self.t_run - self.t0, a.seconds))
        sys.stdout.flush()
        self.schedule(plan)
        until = self.t_run + a.seconds
        while now() < until:
            self.tick(until)
        self.t_nemesis_end = now()
        self.finish_faults()
        t_rec = now() + RECOVERY_S
        while now() < t_rec:
            self.tick(t_rec)
        final_kills = self.stop_workers()
        extra, reacq = self.reacquire()
        self.stop_daemons()
        self.store.expected_exit = True
        self.store.signal(signal.SIGTERM)
        self.store.reap(10)
        self.redis.expected_exit = True
        self.redis.signal(signal.SIGTERM)
        self.redis.reap(10)
        self.t_done = now()

        cfg = {"latency_margin_ms": LATENCY_MARGIN_MS, "final_kills": final_kills,
               "daemon_deaths": self.daemon_deaths}
        logs = [c["log"] for c in self.wcfg]
        res = checks.analyse(cfg, logs, os.path.join(self.dir, "store.log"),
                             self.faults, extra, self.t0)
        reports = sorted(os.listdir(self.reports))
        viol = list(self.violations) + res.violations
        viol += self.crashes
        for rp in reports:
            with open(os.path.join(self.reports, rp), errors="replace") as fp:
                viol.append(("4", "sanitizer report %s:\n%s" % (rp, fp.read()[:4000])))
        return self.summary(res, viol, reacq)

    def summary(self, res, viol, reacq):
        st = res.stats
        by_check = {}
        for c, text in viol:
            by_check.setdefault(c, []).append(text)
        if viol:
            print("\n==== VIOLATIONS (evidence; times in s since the start)")
            for c in sorted(by_check):
                for text in by_check[c][:12]:
                    print("[check %s] %s" % (c, text))
                if len(by_check[c]) > 12:
                    print("[check %s] ... and %d more" % (c, len(by_check[c]) - 12))
        kinds = {}
        for f in self.faults:
            kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
        w = st["worst"]
        ok = not viol
        p = print
        p("\n==== fmredisd torture summary")
        p("seed %d   nemesis %.1f s   total %.1f s   workers %d (8 auto_extend, "
          "8 plain TTL) on 2 daemons, keys %d" % (
              self.seed, self.t_nemesis_end - self.t_run, self.t_done - self.t0,
              N_WORKERS, len(KEYS)))
        p("operations: acquires %d, grants %d, not acquired %d, releases %d "
          "(released:true %d, false %s), writes %d (accepted %d)" % (
              st["acquires"], st["grants"], st["not_acquired"], st["releases"],
              st["released_true"], st["release_false"] or 0, st["writes"],
              st["writes_accepted"]))
        p("sections: %d, %d reached the store, %d held their lock to release"
          % (st["sections"], st["sections_in_store"], st["held_throughout"]))
        p("faults: %s%s" % (", ".join("%s %d" % kv for kv in sorted(kinds.items())),
                            "  (skipped, target busy: %d)" % self.skipped
                            if self.skipped else ""))
        p("late writes refused by fence: %d (from %d sections); by cause: %s" % (
            st["refused"], st["refused_sections"], ", ".join("%s %d" % kv for kv in
                                     sorted(st["refused_by_cause"].items())) or "-"))
        for s, r in st["refused_stopped_examples"][:2]:
            p("  e.g. %s fence %d on %s: granted at %.3f, SIGSTOPped, write "
              "refused at %.3f (store had fence %d)" % (
                  s["w"], s["fence"], s["key"], s["start"] - self.t0,
                  r["ts"] - self.t0, r["highest"]))
        for s, r in st["refused_other_examples"][:1]:
            p("  e.g. %s fence %d on %s, ttl %s: acquire sent at %.3f, granted "
              "at %.3f, write refused at %.3f" % (
                  s["w"], s["fence"], s["key"], s.get("ttl"), s["sent"] - self.t0,
                  s["start"] - self.t0, r["ts"] - self.t0))
        p("stale writes accepted before the new holder's first write (allowed): %d"
          % st["stale_accepted_before_newer"])
        if st["fence_back_after_restart"]:
            p("fences went back after a Redis restart %d times: Redis lost "
              "acknowledged writes (check appendfsync)" % st["fence_back_after_restart"])
        p("near caches: %d reads after a grant checked against the writes before "
          "it (%d misses); %d writes, %d acknowledged" % (
              st["cache_reads_checked"], st["cache_read_misses"], st["cache_writes"],
              st["cache_writes_acknowledged"]))
        p("lock.lost events: %d; connections closed under a request: %d" % (
            st["lock_lost"], st["closed"]))
        p("errors by code: %s" % (", ".join(
            "%s %d" % kv for kv in sorted(st["errors"].items())) or "none"))
        if w:
            p("worst request latency: %.0f ms (%s, bound %.0f ms + margin %d ms); "
              "%d requests judged, %d left out (SIGSTOP), %d (SIGKILL)" % (
                  w[0] * 1000, w[2]["op"], w[1] * 1000, LATENCY_MARGIN_MS,
                  st["latency_checked"], st["latency_excluded_stop"],
                  st["latency_excluded_kill"]))
        p("re-acquire after the workers stopped: worst %.0f ms (bound: TTL %d "
          "+ margin %d ms)" % (reacq * 1000, MAX_TTL, REACQUIRE_MARGIN_MS))
        p("torn log lines tolerated: %d" % st["torn_lines"])
        p("violations: %d%s" % (len(viol), "  (%s)" % ", ".join(
            "check %s: %d" % (c, len(v)) for c, v in sorted(by_check.items()))
            if viol else ""))
        if ok:
            p("PASS")
        else:
            p("FAIL: seed %d; replay with: %s" % (self.seed, self.replay()))
            p("logs kept in %s (python3 tests/torture/timeline.py DIR KEY "
              "FROM TO shows one key's history)" % self.dir)
        return ok


def main():
    ap = argparse.ArgumentParser(description="fmredisd lock safety under faults")
    ap.add_argument("--daemon", default="build/san/fmredisd")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp dir (logs) even when the run passes")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2 ** 31)
    if not os.access(args.daemon, os.X_OK):
        sys.exit("torture: no daemon at %s (make SAN=1 all)" % args.daemon)

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    t = Torture(args)
    atexit.register(t.kill_everything)
    ok = False
    try:
        ok = t.run()
    except BaseException as e:
        print("\ntorture: aborted: %s: %s" % (type(e).__name__, e))
        import traceback
        traceback.print_exc()
        print("FAIL: seed %d; replay with: %s" % (t.seed, t.replay()))
        print("logs kept in %s" % t.dir)
    finally:
        t.kill_everything()
        t.fault_log.close()
    if ok and not args.keep:
        shutil.rmtree(t.dir, ignore_errors=True)
    elif ok:
        print("logs kept in %s" % t.dir)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
