# worker.py -- one lock-contending worker of the torture test (own process).
#
# Why: the nemesis must be able to SIGKILL and SIGSTOP a lock holder at any
# instant, so each worker is a separate OS process, and everything the
# checker later needs to know about it is in a log that outlives it.
#
# How: it connects to one fmredisd, then loops forever:
#   lock.acquire (ttl, retry_delay, max_retries, on_disconnect "release",
#   auto_extend per its role) -> if granted: a critical section of 1..3
#   fenced writes to the store with short sleeps between them -> end ->
#   lock.release with the token (over a new connection if the old one died).
# It does not stop writing when it sees lock.lost or loses its daemon: a
# stale holder that keeps writing is exactly what the fence must stop.
# Every step is appended at once to its log (common.RecordLog: one os.write
# per record on an O_APPEND fd), with time.monotonic() stamps:
#   send/recv   each daemon request: rid, op, key, send time; then receive
#               time and outcome ("reply" with ok/code/token/fence/released/
#               reason, "closed" when the connection ended, "gave_up" past a
#               client deadline well above the daemon's bound)
#   grant       a section begins: key, token, fence, start = when the
#               acquire's reply arrived
#   wsend/wrecv each store write and whether the store accepted it
#   cread       the section's read of execution tt-<key> after its grant:
#               the fence ("f") of the value read, None on a miss
#   cwsend/cwrecv  its write of tt-<key> with its own fence, before its end
#               (cwrecv only when the daemon answered ok)
#   end         the section's end, taken before the release is sent
#   rel         the release's result (true / false+reason / unknown)
#   event       events from the daemon (lock.lost, ...)
# When its daemon connection drops it reconnects with a short backoff.
# It never exits by itself; the checker ends it with SIGKILL.

import json
import os
import random
import select
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FrameBuf, FrameError, RecordLog, die_with_parent, encode, now  # noqa: E402


class Closed(Exception):
    pass


class Worker:
    def __init__(self, cfg):
        self.cfg = cfg
        self.w = cfg["w"]
        self.pid = os.getpid()
        self.log = RecordLog(cfg["log"])
        self.rng = random.Random("%s-%s-%s" % (cfg["seed"], self.w, cfg["inc"]))
        self.sock = None
        self.fb = None
        self.next_id = 0
        self.last_recv_ts = self.last_send_ts = None
        self.store = None
        self.store_fb = FrameBuf()

    def rec(self, **kw):
        kw["pid"] = self.pid
        self.log.write(kw)

    # ---- daemon connection ----------------------------------------------

    def disconnect(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.fb = None

    def connect(self, give_up_after=None):
        """Connect with backoff 20 ms doubling to 200 ms. Returns True once
        connected, False if give_up_after seconds passed first."""
        t0 = now()
        delay, fails = 0.02, 0
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.cfg["daemon"])
                self.sock, self.fb = s, FrameBuf()
                self.rec(t="conn", ts=now(), fails=fails)
                return True
            except OSError:
                s.close()
                fails += 1
            if give_up_after is not None and now() - t0 > give_up_after:
                self.rec(t="conn_fail", ts=now(), fails=fails)
                return False
            time.sleep(delay * (0.5 + self.rng.random()))
            delay = min(delay * 2, 0.2)

    def _frame(self, obj, ts):
        """A frame from the daemon: an event is logged, a reply returned."""
        if "event" in obj:
            self.rec(t="event", ts=ts, ev=obj.get("event"), key=obj.get("key"),
                     state=obj.get("state"))
            return None
        return obj

    def drain_events(self):
        """Read whatever the daemon sent without blocking (events only; a
        reply here would be a stray: every request waits for its reply)."""
        if self.sock is None:
            return
        while True:
            r, _, _ = select.select([self.sock], [], [], 0)
            if not r:
                return
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            ts = now()
            if not data:
                self.rec(t="closed", ts=ts)
                self.disconnect()
                return
            self.fb.feed(data)
            while True:
                obj = self.fb.next()
                if obj is None:
                    break
                rep = self._frame(obj, ts)
                if rep is not None:
                    self.rec(t="stray", ts=ts, reply=rep)

    def request(self, req, bound_ms):
        """Send one request and wait for its reply. Returns the reply, or
        None when the connection ended or the client deadline passed."""
        self.next_id += 1
        rid = self.next_id
        req["id"] = rid
        rid_s = "%d:%d" % (self.pid, rid)
        t_send = self.last_send_ts = now()
        self.rec(t="send", rid=rid_s, op=req["op"], key=req.get("key"),
                 ts=t_send, bound=bound_ms)
        try:
            self.sock.sendall(encode(req))
        except OSError as e:
            self.rec(t="recv", rid=rid_s, ts=now(), outcome="closed",
                     err=str(e))
            self.disconnect()
            return None
        # A client deadline far above the daemon's bound: an answer later
        # than the bound is already a violation; this only keeps a worker
        # from waiting forever if the daemon never answers.
        deadline = t_send + bound_ms / 1000.0 + 5.0
        while True:
            while True:
                try:
                    obj = self.fb.next()
                except FrameError as e:
                    self.rec(t="recv", rid=rid_s, ts=now(), outcome="closed",
                             err="bad frame: %s" % e)
                    self.disconnect()
                    return None
                if obj is None:
                    break
                ts = now()
                rep = self._frame(obj, ts)
                if rep is None:
                    continue
                if rep.get("id") != rid:
                    self.rec(t="stray", ts=ts, reply=rep)
                    continue
                self.last_recv_ts = ts
                err = rep.get("error") or {}
                self.rec(t="recv", rid=rid_s, ts=ts, outcome="reply",
                         ok=rep.get("ok"), code=err.get("code"),
                         msg=err.get("message"), token=rep.get("token"),
                         fence=rep.get("fence"), released=rep.get("released"),
                         reason=rep.get("reason"))
                return rep
            left = deadline - now()
            if left <= 0:
                self.rec(t="recv", rid=rid_s, ts=now(), outcome="gave_up")
                self.disconnect()
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            try:
                data = self.sock.recv(65536)
            except OSError as e:
                data, why = b"", str(e)
            else:
                why = "eof"
            if not data:
                self.rec(t="recv", rid=rid_s, ts=now(), outcome="closed",
                         err=why)
                self.disconnect()
                return None
            self.fb.feed(data)

    # ---- the fenced store -------------------------------------------------

    def store_write(self, key, token, fence, n):
        if self.store is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(30)
            s.connect(self.cfg["store"])
            self.store = s
        self.rec(t="wsend", token=token, key=key, fence=fence, n=n, ts=now())
        self.store.sendall(encode({"key": key, "fence": fence, "token": token,
                                   "worker": self.w, "pid": self.pid}))
        while True:
            obj = self.store_fb.next()
            if obj is not None:
                break
            data = self.store.recv(65536)
            if not data:
                raise Closed("the store closed the connection")
            self.store_fb.feed(data)
        self.rec(t="wrecv", token=token, key=key, fence=fence, n=n, ts=now(),
                 accepted=obj["accepted"], highest=obj["highest"])
        return obj["accepted"]

    # ---- the execution the section works on ---------------------------------
    # Each section reads execution "tt-<key>" right after its grant and
    # writes it, carrying its fence, before it ends: the lock hand-off of
    # workflow engines, through both daemons' near caches (checks.py, 6).

    def cache_read(self, key, token, bound):
        if self.sock is None:
            return
        rep = self.request({"op": "cache.get", "execution_id": "tt-" + key}, bound)
        if rep is None or not rep.get("ok"):
            return
        ex = rep.get("execution")
        self.rec(t="cread", token=token, key=key, sent=self.last_send_ts,
                 ts=self.last_recv_ts, f=ex.get("f") if isinstance(ex, dict) else None)

    def cache_write(self, key, token, fence, bound):
        if self.sock is None:
            return
        sent = now()
        self.rec(t="cwsend", token=token, key=key, f=fence, ts=sent)
        rep = self.request({"op": "cache.set", "ttl": 3600000,
                            "execution": {"id": "tt-" + key, "f": fence}}, bound)
        if rep is not None and rep.get("ok"):
            self.rec(t="cwrecv", token=token, key=key, f=fence, ts=self.last_recv_ts)

    # ---- the loop -----------------------------------------------------------

    def run(self):
        c = self.cfg
        acq_bound = c["request_timeout_ms"] + c["retry_delay"] * c["max_retries"]
        rel_bound = c["request_timeout_ms"]
        self.rec(t="start", ts=now(), w=self.w, inc=c["inc"], ttl=c["ttl"],
                 auto_extend=c["auto_extend"], daemon=c["daemon"])
        while True:
            if self.sock is None:
                self.connect()
            key = self.rng.choice(c["keys"])
            rep = self.request({"op": "lock.acquire", "key": key,
                                "ttl": c["ttl"],
                                "retry_delay": c["retry_delay"],
                                "max_retries": c["max_retries"],
                                "on_disconnect": "release",
                                "auto_extend": c["auto_extend"]}, acq_bound)
            if rep is None:
                continue
            if not rep.get("ok") or rep.get("token") is None:
                time.sleep(self.rng.uniform(0.0, 0.02))
                continue
            token, fence = rep["token"], rep["fence"]
            self.rec(t="grant", key=key, token=token, fence=fence,
                     start=self.last_recv_ts, sent=self.last_send_ts,
                     w=self.w, auto_extend=c["auto_extend"], ttl=c["ttl"])
            self.cache_read(key, token, rel_bound)
            nwrites = self.rng.randint(1, 3)
            for n in range(nwrites):
                if n:
                    time.sleep(self.rng.uniform(0.01, 0.06))
                    self.drain_events()
                self.store_write(key, token, fence, n)
            self.drain_events()
            self.cache_write(key, token, fence, rel_bound)
            end = now()
            self.rec(t="end", token=token, key=key, end=end)
            if self.sock is None:
                # The daemon went away during the section: the lock was
                # released at the disconnect, or stays until its TTL if the
                # daemon died. A token-checked release through the
                # (restarted) daemon is still correct and tells which.
                self.connect(give_up_after=1.0)
            if self.sock is None:
                self.rec(t="rel", token=token, key=key, released=None,
                         reason="no_connection")
                continue
            rep = self.request({"op": "lock.release", "key": key,
                                "token": token}, rel_bound)
            if rep is None:
                self.rec(t="rel", token=token, key=key, released=None,
                         reason="closed")
            elif not rep.get("ok"):
                self.rec(t="rel", token=token, key=key, released=None,
                         reason=(rep.get("error") or {}).get("code"))
            else:
                self.rec(t="rel", token=token, key=key,
                         released=bool(rep.get("released")),
                         reason=rep.get("reason"))
            time.sleep(self.rng.uniform(0.0, 0.03))


def main():
    cfg = json.loads(sys.argv[1])
    die_with_parent(cfg["parent"])
    Worker(cfg).run()


if __name__ == "__main__":
    main()
