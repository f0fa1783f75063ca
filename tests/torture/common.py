# common.py -- the small pieces every process of the torture test shares.
#
# Why: the checker (torture.py), the workers (worker.py) and the fence store
# (store.py) are separate OS processes that speak the same frames, write the
# same kind of crash-proof logs and need the same "die with the parent"
# guard. Keeping those pieces here means there is one framing codec and one
# log format to trust.
#
# How:
# - Frames: 4-byte big-endian length + one UTF-8 JSON object (the fmredisd
#   wire contract, PROTOCOL.md). FrameBuf is fed bytes and hands out whole
#   objects; it never does I/O, so the callers own their deadlines.
# - Logs: one JSON object per line, and each line is written with exactly one
#   os.write() on an O_APPEND descriptor the moment the thing happened. A
#   process SIGKILLed at any instant loses at most the record it was writing;
#   read_records() tolerates a truncated or garbled line (it is counted, not
#   fatal) and every new writer starts with a newline so a torn last line of a
#   previous incarnation never swallows the next record.
# - die_with_parent(): prctl(PR_SET_PDEATHSIG, SIGKILL) through ctypes, then a
#   check that the parent is still the one we expect (it may have died before
#   the prctl). If the checker is killed, its children go with it.
# - Redis: a tiny RESP2 client over the Unix socket (PING, CLIENT LIST/KILL,
#   DEBUG SLEEP); no third-party packages.
# - Times are time.monotonic() (CLOCK_MONOTONIC), which is one clock for
#   every process on a Linux host, so times from different processes compare.

import ctypes
import json
import os
import signal
import socket
import struct
import time

PR_SET_PDEATHSIG = 1
MAX_FRAME = 16 << 20


def now():
    return time.monotonic()


def die_with_parent(expected_ppid=None):
    """SIGKILL this process when its parent dies (Linux prctl)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass
    if expected_ppid is not None and os.getppid() != expected_ppid:
        os._exit(1)


def preexec_die_with_parent(parent_pid):
    """A Popen preexec_fn: the exec'd program dies when the checker does.
    PDEATHSIG survives execve for non-setuid programs. The checker is single
    threaded, so preexec_fn is safe to use."""
    def fn():
        die_with_parent(parent_pid)
    return fn


# ---- frames -----------------------------------------------------------------

def encode(obj):
    body = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


class FrameError(Exception):
    pass


class FrameBuf:
    """Feed bytes, take whole JSON objects out."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data

    def next(self):
        if len(self.buf) < 4:
            return None
        (n,) = struct.unpack(">I", self.buf[:4])
        if n == 0 or n > MAX_FRAME:
            raise FrameError("bad frame length %d" % n)
        if len(self.buf) < 4 + n:
            return None
        body = bytes(self.buf[4:4 + n])
        del self.buf[:4 + n]
        try:
            obj = json.loads(body)
        except ValueError as e:
            raise FrameError("bad json: %s: %r" % (e, body[:200]))
        if not isinstance(obj, dict):
            raise FrameError("frame is not an object: %r" % body[:200])
        return obj


# ---- crash-proof logs -------------------------------------------------------

class RecordLog:
    """Append-only JSON-lines log; one os.write per record."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # Terminate a line a killed predecessor may have left torn.
        os.write(self.fd, b"\n")

    def write(self, rec):
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        os.write(self.fd, line.encode())

    def close(self):
        os.close(self.fd)


def read_records(path):
    """Return (records, torn): the parsed records of a log and the number of
    lines that could not be parsed (a writer killed mid-line)."""
    recs, torn = [], 0
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return recs, torn
    for line in data.split(b"\n"):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            torn += 1
            continue
        if isinstance(obj, dict):
            recs.append(obj)
        else:
            torn += 1
    return recs, torn


# ---- a minimal RESP2 client -------------------------------------------------

class RedisError(Exception):
    pass


class Resp:
    """Blocking RESP2 over a Unix socket, every call with a timeout."""

    def __init__(self, path, timeout=2.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buf = bytearray()

    def close(self):
        self.sock.close()

    def fileno(self):
        return self.sock.fileno()

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            self._fill()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("redis closed the connection")
        self.buf += data

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n + 2]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ConnectionError("bad RESP line %r" % line)

    def call(self, *args):
        self.send(*args)
        r = self.reply()
        if isinstance(r, RedisError):
            raise r
        return r


def redis_call(path, *args, timeout=2.0):
    r = Resp(path, timeout)
    try:
        return r.call(*args)
    finally:
        r.close()
