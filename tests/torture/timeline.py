#!/usr/bin/env python3
# timeline.py -- show what happened to one key in a kept torture run.
#
# Why: a violation names sections and times; judging it needs everything
# around it in one place: every worker's acquires, grants, store writes and
# releases for the key, and the nemesis' faults, merged in time order.
#
# How: python3 tests/torture/timeline.py DIR KEY FROM TO
# DIR is the temp dir a failed run (or one run with --keep) left behind;
# FROM and TO are seconds since the run's start, as the summary prints them.
# It reads run.json (the run's start on the monotonic clock), the workers'
# logs, the store's log and faults.log; it changes nothing.

import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import read_records  # noqa: E402


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: timeline.py DIR KEY FROM TO")
    d, key, lo, hi = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    with open(os.path.join(d, "run.json")) as fp:
        t0 = json.load(fp)["t0"]
    rows = []

    def add(ts, text, rel=False):
        t = ts if rel else ts - t0
        if lo <= t <= hi:
            rows.append((t, text))

    wdir = os.path.join(d, "workers")
    for name in sorted(os.listdir(wdir)):
        if not name.endswith(".log"):
            continue
        w = name[:-4]
        recs, _ = read_records(os.path.join(wdir, name))
        rid_key = {}
        tok = set()
        for r in recs:
            t, pid = r.get("t"), r.get("pid")
            who = "%s/%s" % (w, pid)
            if t == "send":
                rid_key[r["rid"]] = r.get("key")
                if r.get("key") == key:
                    add(r["ts"], "%s %s sent (%s)" % (who, r["op"], r["rid"]))
            elif t == "recv" and rid_key.get(r["rid"]) == key:
                if r["outcome"] == "reply" and r.get("ok"):
                    what = ("token %s.. fence %s" % (r["token"][:8], r["fence"])
                            if r.get("token") else
                            "released %s %s" % (r.get("released"), r.get("reason") or "")
                            if r.get("released") is not None else "token null")
                else:
                    what = "%s %s" % (r["outcome"], r.get("code") or r.get("err") or "")
                add(r["ts"], "%s   reply to %s: %s" % (who, r["rid"], what))
            elif t == "grant" and r["key"] == key:
                tok.add(r["token"])
                add(r["start"], "%s GRANT fence %s token %s.. (%s, ttl %s)" % (
                    who, r["fence"], r["token"][:8],
                    "auto_extend" if r["auto_extend"] else "plain", r["ttl"]))
            elif t == "end" and r["key"] == key:
                add(r["end"], "%s END section %s.." % (who, r["token"][:8]))
            elif t == "event" and r.get("key") == key:
                add(r["ts"], "%s event %s" % (who, r.get("ev")))
            elif t in ("conn", "closed"):
                pass
    recs, _ = read_records(os.path.join(d, "store.log"))
    for r in recs:
        if r["key"] == key:
            add(r["ts"], "store %s %s fence %s token %s.. (highest was %s)" % (
                "ACCEPT" if r["accepted"] else "REFUSE", r["worker"], r["fence"],
                r["token"][:8], r["highest"]))
    try:
        with open(os.path.join(d, "faults.log")) as fp:
            for line in fp:
                f = json.loads(line)
                extra = {k: v for k, v in f.items()
                         if k not in ("kind", "target", "t0", "t1")}
                add(f["t0"], "FAULT %s %s begins %s" % (f["kind"], f["target"], extra), True)
                add(f["t1"], "FAULT %s %s ends" % (f["kind"], f["target"]), True)
    except FileNotFoundError:
        pass
    for t, text in sorted(rows):
        print("%9.3f  %s" % (t, text))


if __name__ == "__main__":
    main()
