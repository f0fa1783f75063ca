# store.py -- the fenced store of the torture test (a separate process).
#
# Why: the fence only protects anything if the store that receives writes
# checks it. This is the smallest such store (LOCKS.md section 6.1): per key
# it remembers the highest fence it ever accepted and refuses any write whose
# fence is lower. Equal fences are accepted (a holder writes several times
# under one fence); the checker then verifies, from this store's log, that an
# equal fence never came from a different token (that would mean Redis handed
# one fence to two holders).
#
# How: one single-threaded selector loop on a Unix socket, so the order in
# which it decides is the order of its log. Requests and replies are
# fmredisd-style frames (4-byte big-endian length + JSON):
#   {"key": k, "fence": f, "token": t, "worker": w, "pid": p}
#   -> {"accepted": bool, "highest": h}
# Every decision, accepted or refused, is appended to the log at once, with
# one os.write, as {"seq", "ts" (monotonic, at the decision), "key", "fence",
# "token", "worker", "pid", "accepted", "highest" (before this write)}.
# The checker never kills the store during the run; it ends it with SIGTERM.

import os
import selectors
import signal
import socket
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FrameBuf, FrameError, RecordLog, die_with_parent, encode, now  # noqa: E402


def main():
    sock_path, log_path, parent = sys.argv[1], sys.argv[2], int(sys.argv[3])
    die_with_parent(parent)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    log = RecordLog(log_path)
    highest = {}
    seq = 0

    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(64)
    srv.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ, None)
    conns = {}

    while not stop:
        for key, _ in sel.select(0.2):
            if key.data is None:
                try:
                    c, _ = srv.accept()
                except BlockingIOError:
                    continue
                c.setblocking(True)
                conns[c] = FrameBuf()
                sel.register(c, selectors.EVENT_READ, c)
                continue
            c = key.data
            try:
                data = c.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(c)
                c.close()
                del conns[c]
                continue
            fb = conns[c]
            fb.feed(data)
            out = []
            try:
                while True:
                    req = fb.next()
                    if req is None:
                        break
                    k, f = req["key"], int(req["fence"])
                    h = highest.get(k)
                    ok = h is None or f >= h
                    if ok:
                        highest[k] = f
                    seq += 1
                    log.write({"seq": seq, "ts": now(), "key": k, "fence": f,
                               "token": req["token"], "worker": req["worker"],
                               "pid": req["pid"], "accepted": ok,
                               "highest": h})
                    out.append(encode({"accepted": ok, "highest": h}))
            except (FrameError, KeyError, ValueError, TypeError) as e:
                sys.stderr.write("store: bad request: %s\n" % e)
                sel.unregister(c)
                c.close()
                del conns[c]
                continue
            try:
                # The worker reads its replies promptly (or is stopped, and
                # its socket buffer easily holds these few bytes).
                c.sendall(b"".join(out))
            except OSError:
                pass
    log.close()
    try:
        os.unlink(sock_path)
    except OSError:
        pass


if __name__ == "__main__":
    main()
