"""The package installs as README.md says on Debian 12 (a venv that sees
the system's setuptools and wheel, pip without build isolation, offline)
and works from outside the source tree."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from .harness import PACKAGE_DIR, DaemonTestCase

INSTALL_SECONDS = 300


class InstallTest(DaemonTestCase):

    @classmethod
    def setUpClass(cls) -> None:
        # Another python3 (pyenv's, say) may lack what Debian's has; the
        # test then fails saying what to install, never skips.
        missing = [m for m in ("setuptools", "wheel") if importlib.util.find_spec(m) is None]
        if missing:
            raise AssertionError("%s cannot import %s (Debian 12: python3-setuptools, "
                                 "python3-wheel; make test-python uses /usr/bin/python3)" % (
                                     sys.executable, " and ".join(missing)))
        super().setUpClass()

    def run_ok(self, argv: list[str], cwd: str) -> str:
        # No PYTHONPATH (it may name the source tree) and no pip settings
        # of the caller's: only the venv and what Debian installed count.
        env = {k: v for k, v in os.environ.items()
               if k != "PYTHONPATH" and not k.startswith("PIP_")}
        r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                           timeout=INSTALL_SECONDS)
        self.assertEqual(r.returncode, 0, "%s:\n%s\n%s" % (" ".join(argv), r.stdout, r.stderr))
        return r.stdout

    def test_pip_install_into_a_venv_then_use_it(self) -> None:
        tmp = tempfile.mkdtemp(prefix="fmpy-install-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        # pip builds in the directory it is given: build a copy, so the
        # source tree gets no build/ or egg-info.
        src = os.path.join(tmp, "src")
        shutil.copytree(PACKAGE_DIR, src, ignore=shutil.ignore_patterns(
            "__pycache__", "build", "*.egg-info", "tests"))
        venv = os.path.join(tmp, "venv")
        python = os.path.join(venv, "bin", "python")
        self.run_ok([sys.executable, "-m", "venv", "--system-site-packages", venv], tmp)
        self.run_ok([python, "-m", "pip", "install", "--isolated", "--no-build-isolation",
                     "--no-index", src], tmp)
        out = self.run_ok([python, "-c", """if True:
            import os, sys, fmredis
            from fmredis import ExecutionCache, Client
            here = os.path.dirname(fmredis.__file__)
            print(here)
            print(os.path.exists(os.path.join(here, "py.typed")))
            with ExecutionCache(Client(sys.argv[1])) as cache:
                cache.set({"id": "installed", "n": 12345678901234567890})
                print(cache.get("installed")["n"])
            """, self.servers.sock], tmp)
        where, typed, n = out.split("\n")[:3]
        self.assertTrue(where.startswith(os.path.join(venv, "lib")), where)
        self.assertEqual(typed, "True")
        self.assertEqual(n, "12345678901234567890")
        self.assertEqual(self.redis("GET", "fm:exec:installed"),
                         '{"id":"installed","n":12345678901234567890}')
