"""A private redis-server and fmredisd for each test class.

Both run in a temporary directory, on Unix sockets there (never a TCP port),
and are stopped by pid and the directory removed when the class ends,
whether its tests passed or not (addClassCleanup), and killed by the kernel
if the test process dies first (PR_SET_PDEATHSIG). $FMREDISD names the
daemon binary, default <repo>/build/fmredisd. Redis-side effects are read
with `redis-cli -s <socket>`, published wakes with a raw RESP subscriber.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
from collections.abc import Callable
from typing import Any, TypeVar

from fmredis import Client, FmError

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir))
PACKAGE_DIR = os.path.join(REPO, "client", "python")
DAEMON = os.environ.get("FMREDISD") or os.path.join(REPO, "build", "fmredisd")
START_SECONDS = 20.0
STOP_SECONDS = 10.0
WAIT_SECONDS = 10.0        # generous: the machine may be busy

_T = TypeVar("_T")
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def wait_for(cond: Callable[[], _T], what: str, seconds: float = WAIT_SECONDS) -> _T:
    """Polls cond until it returns something true; fails after seconds."""
    deadline = time.monotonic() + seconds
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("%s: not within %.0f s" % (what, seconds))
        time.sleep(0.02)


def _accepts(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Servers:
    """redis-server and fmredisd (with extra daemon arguments) in a temp dir."""

    def __init__(self, daemon_args: tuple[str, ...] = ()) -> None:
        self.daemon_args = daemon_args
        self.dir = tempfile.mkdtemp(prefix="fmpy-")
        self.redis_sock = os.path.join(self.dir, "redis.sock")
        self.sock = os.path.join(self.dir, "fmredisd.sock")
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.daemon_proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(os.path.join(self.dir, log), "ab") as out:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    preexec_fn=_die_with_parent)

    def _log(self, name: str) -> str:
        with open(os.path.join(self.dir, name), errors="replace") as f:
            return f.read()[-4000:]

    def _wait_up(self, proc: subprocess.Popen[bytes], up: Callable[[], bool], log: str) -> None:
        deadline = time.monotonic() + START_SECONDS
        while not up():
            if proc.poll() is not None or time.monotonic() >= deadline:
                raise AssertionError("%s did not come up:\n%s" % (log, self._log(log)))
            time.sleep(0.02)

    def start_redis(self) -> None:
        self.redis_proc = self._spawn(
            ["redis-server", "--port", "0", "--unixsocket", self.redis_sock,
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
             "--dir", self.dir], "redis.log")
        self._wait_up(self.redis_proc, lambda: self._redis_pong(), "redis.log")

    def _redis_pong(self) -> bool:
        r = subprocess.run(["redis-cli", "-s", self.redis_sock, "PING"],
                           capture_output=True, text=True, timeout=WAIT_SECONDS)
        return r.stdout.strip() == "PONG"

    def start_daemon(self) -> None:
        self.daemon_proc = self._spawn(
            [DAEMON, "--socket", self.sock, "--redis_url", "unix://" + self.redis_sock,
             "--log_level", "debug", *self.daemon_args], "fmredisd.log")
        self._wait_up(self.daemon_proc, lambda: _accepts(self.sock), "fmredisd.log")

    def _linked(self) -> bool:
        # The connection of _accepts may still count against a max_clients
        # of 1: a refusal is "not yet".
        try:
            c = Client(self.sock)
        except FmError:
            return False
        try:
            return c.ping() == "up"
        except FmError:
            return False
        finally:
            c.close()

    def start(self) -> None:
        """Redis, then the daemon, once it has reached Redis: a test's first
        ping must not race the daemon's connect (a loaded machine)."""
        self.start_redis()
        self.start_daemon()
        self._wait_up(self.daemon_proc, self._linked, "fmredisd.log")

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)     # a test may have stopped it
        proc.send_signal(sig)
        try:
            proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill_redis(self) -> None:
        self._reap(self.redis_proc, signal.SIGKILL)

    def stop_daemon(self) -> None:
        self._reap(self.daemon_proc, signal.SIGTERM)

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
        assert proc is not None and proc.poll() is None, "not running"
        proc.send_signal(sig)

    def pause_daemon(self) -> None:
        self._signal(self.daemon_proc, signal.SIGSTOP)

    def resume_daemon(self) -> None:
        self._signal(self.daemon_proc, signal.SIGCONT)

    def pause_redis(self) -> None:
        self._signal(self.redis_proc, signal.SIGSTOP)

    def resume_redis(self) -> None:
        self._signal(self.redis_proc, signal.SIGCONT)

    def stop(self) -> None:
        self.stop_daemon()
        self.kill_redis()
        shutil.rmtree(self.dir, ignore_errors=True)

    def redis(self, *args: str) -> str:
        """redis-cli's output (raw: a nil is an empty string)."""
        r = subprocess.run(["redis-cli", "-s", self.redis_sock, *args], capture_output=True,
                           text=True, check=True, timeout=WAIT_SECONDS)
        return r.stdout.rstrip("\n")

    def pttl(self, key: str) -> int:
        return int(self.redis("PTTL", key))

    def exists(self, key: str) -> bool:
        return self.redis("EXISTS", key) == "1"


class RedisSubscriber:
    """A direct Redis subscriber to one channel, to see what was published."""

    def __init__(self, redis_sock: str, channel: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(WAIT_SECONDS)
        self.sock.connect(redis_sock)
        self.buf = b""
        self.sock.sendall(self._command("SUBSCRIBE", channel))
        reply = self._value()
        assert reply[0] == b"subscribe", reply

    @staticmethod
    def _command(*args: str) -> bytes:
        out = b"*%d\r\n" % len(args)
        for a in args:
            b = a.encode()
            out += b"$%d\r\n%s\r\n" % (len(b), b)
        return out

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("Redis closed the subscriber connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _value(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"*":
            return [self._value() for _ in range(int(rest))]
        if kind == b"$":
            n = int(rest)
            while len(self.buf) < n + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise AssertionError("Redis closed the subscriber connection")
                self.buf += chunk
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b":":
            return int(rest)
        raise AssertionError("unexpected RESP line %r" % line)

    def message(self) -> bytes:
        """The next published payload (waits up to WAIT_SECONDS)."""
        kind, _channel, payload = self._value()
        assert kind == b"message", kind
        return bytes(payload)

    def close(self) -> None:
        self.sock.close()


class DaemonTestCase(unittest.TestCase):
    """Each subclass gets its own Servers (daemon_args: extra arguments of
    its fmredisd); each test its own clients, closed when it ends."""

    daemon_args: tuple[str, ...] = ()
    servers: Servers

    @classmethod
    def setUpClass(cls) -> None:
        cls.servers = Servers(cls.daemon_args)
        cls.addClassCleanup(cls.servers.stop)
        cls.servers.start()

    def client(self, **kw: Any) -> Client:
        c = Client(self.servers.sock, **kw)
        self.addCleanup(c.close)
        return c

    def key(self, suffix: str = "") -> str:
        """A key no other test of the class uses."""
        return "py:%s:%s" % (self._testMethodName, suffix)

    def redis(self, *args: str) -> str:
        return self.servers.redis(*args)
