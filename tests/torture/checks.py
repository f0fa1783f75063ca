# checks.py -- the torture test's analysis: logs in, violations out.
#
# Why: the run itself only produces evidence (workers' logs, the store's log,
# the nemesis' fault log). Whether the locks were safe is decided here, after
# everything has stopped, from facts that are provable with one clock
# (CLOCK_MONOTONIC is shared by every process on the host).
#
# How: analyse() parses every worker log into sections (grant .. end ..
# release) and requests (send .. recv), reads the store's decisions in their
# acceptance order, and runs the checks that torture.py's header explains:
#   1a store order: per key, once a section with a higher fence was accepted,
#      no write of an older section is accepted again, and no two sections
#      (tokens) were accepted with the same fence;
#   1b sections whose release answered released:true held the key from grant
#      to release (tokens are unique), so: no two of them overlap; no other
#      section with a higher fence was granted (its start) before such a
#      section ended; no write of another section with a higher or equal
#      fence was accepted inside one; and none of their own writes was
#      refused;
#   2  fences: strictly increasing across sections in the store's accepted
#      order (part of 1a), never the same fence for two grants of a key, and
#      never lower for a grant whose acquire was sent after another grant of
#      the key had arrived (real-time order). A fence that went back across a
#      Redis restart is named "Redis lost acknowledged writes (check
#      appendfsync)";
#   3  every request answered within its bound plus a margin (requests that
#      overlap their worker's SIGSTOP, or that its SIGKILL cut short, are
#      left out; a connection the daemon's death closed ends a request, but
#      one closed while its daemon was not being killed is a violation, and
#      so is a reply that answers no request in flight).
#   6  the lock hand-off through the near caches: a section's read of the
#      execution it works on returns the latest write acknowledged before
#      its acquire was sent, or a write that may have landed after it
#      (check_cache says exactly which).
# Checks 4 (daemon crashes, exit status, sanitizer reports) and 5 (every key
# acquirable after the workers stopped) are observed live by torture.py and
# passed in. Each violation carries its evidence as text.

import bisect
import collections
import os

from common import read_records

INF = float("inf")


def _overlaps(a0, a1, b0, b1):
    return a0 < b1 and b0 < a1


class Result:
    def __init__(self):
        self.violations = []          # (check, text)
        self.stats = collections.OrderedDict()
        self.notes = []

    def violate(self, check, text):
        self.violations.append((check, text))


def _fmt_sec(s, t0):
    rel = s.get("released")
    return ("%s pid %s token %s.. fence %s [%.3f .. %s] release=%s%s" % (
        s["w"], s["pid"], s["token"][:8], s["fence"], s["start"] - t0,
        "%.3f" % (s["end"] - t0) if s.get("end") is not None else "?",
        rel, "/" + s["reason"] if s.get("reason") else ""))


def load_workers(paths):
    sections = {}
    requests = []
    lost = []
    pid_info = {}
    torn = 0
    open_reqs = {}
    conn_ts = {}
    strays = []
    for path in paths:
        recs, bad = read_records(path)
        torn += bad
        for r in recs:
            t = r.get("t")
            pid = r.get("pid")
            if t == "start":
                pid_info[pid] = {"w": r["w"], "daemon": r["daemon"],
                                 "auto_extend": r["auto_extend"],
                                 "ttl": r["ttl"], "start": r["ts"]}
            elif t == "conn":
                conn_ts[pid] = r["ts"]
            elif t == "stray":
                strays.append(r)
            elif t == "send":
                q = {"rid": r["rid"], "op": r["op"], "key": r.get("key"),
                     "send": r["ts"], "bound": r["bound"], "pid": pid,
                     "recv": None, "outcome": None, "conn": conn_ts.get(pid)}
                requests.append(q)
                open_reqs[r["rid"]] = q
            elif t == "recv":
                q = open_reqs.pop(r["rid"], None)
                if q is not None:
                    q.update(recv=r["ts"], outcome=r["outcome"], ok=r.get("ok"),
                             code=r.get("code"), msg=r.get("msg"),
                             token=r.get("token"), released=r.get("released"))
            elif t == "grant":
                sections[r["token"]] = {
                    "key": r["key"], "token": r["token"], "fence": r["fence"],
                    "start": r["start"], "sent": r["sent"], "w": r["w"],
                    "pid": pid, "auto_extend": r["auto_extend"],
                    "ttl": r.get("ttl"), "end": None, "released": None, "reason": None,
                    "writes": []}
            elif t == "end":
                s = sections.get(r["token"])
                if s is not None:
                    s["end"] = r["end"]
            elif t == "rel":
                s = sections.get(r["token"])
                if s is not None:
                    s["released"] = r["released"]
                    s["reason"] = r.get("reason")
            elif t == "event" and r.get("ev") == "lock.lost":
                lost.append({"pid": pid, "ts": r["ts"], "key": r.get("key")})
    return sections, requests, lost, pid_info, torn, strays


def analyse(cfg, worker_logs, store_log, faults, extra_sections, t0):
    """cfg: margins and bounds; faults: the nemesis' log; extra_sections:
    the checker's own final acquires; t0: the run's start (for printing)."""
    res = Result()
    sections, requests, lost, pid_info, torn, strays = load_workers(worker_logs)
    for s in extra_sections:
        sections[s["token"]] = s
    store, store_torn = read_records(store_log)
    store.sort(key=lambda r: r["seq"])
    torn += store_torn

    stops = collections.defaultdict(list)       # pid -> [(t0, t1)]
    kills = collections.defaultdict(list)       # pid -> [t]
    dkills = collections.defaultdict(list)      # daemon socket -> [(t0, t1)]
    rkills = []                                 # redis SIGKILL windows
    redis_faults = []
    for f in faults:
        t1 = f["t1"] if f.get("t1") is not None else INF
        if f["kind"] == "worker SIGSTOP":
            stops[f["pid"]].append((f["t0"], t1))
        elif f["kind"] == "worker SIGKILL":
            kills[f["pid"]].append(f["t0"])
        elif f["kind"] == "daemon SIGKILL":
            dkills[f["socket"]].append((f["t0"], t1))
        elif f["kind"] == "redis SIGKILL":
            rkills.append((f["t0"], t1))
        if f["kind"] in ("redis SIGKILL", "CLIENT KILL", "DEBUG SLEEP"):
            redis_faults.append((f["t0"], t1))
    for pid, t in cfg["final_kills"].items():
        kills[pid].append(t)

    for s in sections.values():
        s["writes"] = []
    for r in store:
        s = sections.get(r["token"])
        if s is not None:
            s["writes"].append(r)

    def sec_of(r):
        return sections.get(r["token"])

    # ---- 1a / 2: the store's accepted order -------------------------------
    last_tok = {}
    last_fence = {}
    superseded = collections.defaultdict(set)
    fence_tok = {}
    highest = {}
    for r in store:
        k, f, tok = r["key"], r["fence"], r["token"]
        if not r["accepted"]:
            if highest.get(k) is None or f >= highest[k]:
                res.violate("1a", "store refused a write it should accept "
                            "(checker bug): %r" % r)
            continue
        if highest.get(k) is not None and f < highest[k]:
            res.violate("1a", "store accepted key %s fence %d below its "
                        "highest %d (seq %d)" % (k, f, highest[k], r["seq"]))
        other = fence_tok.get((k, f))
        if other is not None and other != tok:
            s1, s2 = sections.get(other), sec_of(r)
            res.violate("2", "key %s: two sections accepted with fence %d "
                        "(seq %d): %s | %s" % (
                            k, f, r["seq"],
                            _fmt_sec(s1, t0) if s1 else other,
                            _fmt_sec(s2, t0) if s2 else tok))
        fence_tok[(k, f)] = tok
        if tok in superseded[k]:
            res.violate("1a", "key %s: a write of section fence %d (token "
                        "%s..) accepted after a newer section's (seq %d)"
                        % (k, f, tok[:8], r["seq"]))
        prev = last_tok.get(k)
        if prev is not None and prev != tok:
            superseded[k].add(prev)
            if f <= last_fence[k]:
                res.violate("2", "key %s: fences not strictly increasing "
                            "across sections in the store: %d then %d "
                            "(seq %d)" % (k, last_fence[k], f, r["seq"]))
        last_tok[k], last_fence[k] = tok, f
        highest[k] = max(highest.get(k, f), f)

    # ---- 2: grants ---------------------------------------------------------
    by_key = collections.defaultdict(list)
    for s in sections.values():
        by_key[s["key"]].append(s)
    lost_writes = []
    for k, secs in by_key.items():
        seen = {}
        for s in secs:
            o = seen.get(s["fence"])
            if o is not None:
                res.violate("2", "key %s: two grants with fence %d: %s | %s"
                            % (k, s["fence"], _fmt_sec(o, t0), _fmt_sec(s, t0)))
            seen[s["fence"]] = s
        # Real-time order: a grant whose reply arrived before another
        # acquire of the key was sent was taken first in Redis, so its fence
        # must be lower.
        secs_by_start = sorted(secs, key=lambda s: s["start"])
        starts = [s["start"] for s in secs_by_start]
        pmax, best = [], None
        for s in secs_by_start:
            if best is None or s["fence"] > best["fence"]:
                best = s
            pmax.append(best)
        for b in secs:
            i = bisect.bisect_left(starts, b["sent"]) - 1
            if i < 0:
                continue
            a = pmax[i]
            if a["fence"] >= b["fence"] and a["token"] != b["token"]:
                restart = [w for w in rkills if a["start"] < w[0] < b["sent"]]
                if restart:
                    lost_writes.append((k, a, b, restart[0]))
                label = ("Redis lost acknowledged writes (check appendfsync): "
                         if restart else "")
                res.violate("2", "%skey %s: fence went back: %s granted "
                            "before %s was requested, yet its fence is not "
                            "lower%s" % (
                                label, k, _fmt_sec(a, t0), _fmt_sec(b, t0),
                                " (Redis restarted at %.3f)" % (restart[0][0] - t0)
                                if restart else ""))

    if lost_writes:
        k, a, b, w = lost_writes[0]
        res.violations.insert(0, ("2", "Redis lost acknowledged writes (check "
                                  "appendfsync): %d grants got a fence not above "
                                  "that of a grant made before a Redis restart; "
                                  "first: key %s fence %d granted at %.3f, Redis "
                                  "SIGKILLed at %.3f, then fence %d granted at "
                                  "%.3f" % (len(lost_writes), k, a["fence"],
                                            a["start"] - t0, w[0] - t0,
                                            b["fence"], b["start"] - t0)))
    res.stats["fence_back_after_restart"] = len(lost_writes)

    # ---- 1b: sections that provably held the lock --------------------------
    stale_accepted = 0
    for k, secs in by_key.items():
        held = [s for s in secs if s["released"] is True and s["end"] is not None]
        held.sort(key=lambda s: s["start"])
        # pairwise overlap
        reach = None
        for s in held:
            if reach is not None and s["start"] < reach["end"]:
                res.violate("1b", "key %s: two sections that both held the "
                            "lock to their release overlap: %s | %s" % (
                                k, _fmt_sec(reach, t0), _fmt_sec(s, t0)))
            if reach is None or s["end"] > reach["end"]:
                reach = s
        # A newer grant inside a held section: one whose acquire was sent
        # after this section's grant arrived and whose grant arrived before
        # this section ended, with a higher fence. (An older request with a
        # higher fence is a fence that went back: check 2 reports that.)
        by_start = sorted(secs, key=lambda s: s["start"])
        starts = [s["start"] for s in by_start]
        for s in held:
            lo = bisect.bisect_right(starts, s["sent"])
            hi = bisect.bisect_left(starts, s["end"])
            for o in by_start[lo:hi]:
                if o["token"] != s["token"] and o["fence"] > s["fence"]:
                    res.violate("1b", "key %s: granted with a higher fence "
                                "while another section held the lock: holder "
                                "%s | newer %s" % (k, _fmt_sec(s, t0),
                                                   _fmt_sec(o, t0)))
        for s in held:
            for w in s["writes"]:
                if not w["accepted"]:
                    res.violate("1b", "key %s: a write of a section that "
                                "held the lock throughout was refused (store "
                                "had fence %s): %s" % (
                                    k, w["highest"], _fmt_sec(s, t0)))
        # other sections' accepted writes inside a held section
        acc = [r for r in store if r["key"] == k and r["accepted"]]
        ts = [r["ts"] for r in acc]
        for s in held:
            first_own = min((w["ts"] for w in s["writes"] if w["accepted"]),
                            default=INF)
            lo = bisect.bisect_right(ts, s["start"])
            hi = bisect.bisect_left(ts, s["end"])
            for r in acc[lo:hi]:
                if r["token"] == s["token"]:
                    continue
                o = sec_of(r)
                desc = _fmt_sec(o, t0) if o else r["token"][:8]
                if r["fence"] >= s["fence"]:
                    res.violate("1b", "key %s: a write with fence %d (>= the "
                                "holder's) accepted at %.3f inside a section "
                                "that held the lock: holder %s | writer %s" % (
                                    k, r["fence"], r["ts"] - t0,
                                    _fmt_sec(s, t0), desc))
                elif r["ts"] > first_own:
                    res.violate("1b", "key %s: a stale write accepted after "
                                "the holder's own write: holder %s | writer %s"
                                % (k, _fmt_sec(s, t0), desc))
                else:
                    # A stale holder (its lock expired, e.g. while it was
                    # stopped) wrote after the new grant but before the new
                    # holder's first write: the fence cannot refuse that,
                    # since nothing newer had reached the store yet.
                    stale_accepted += 1

    # ---- 3: request latency -------------------------------------------------
    margin = cfg["latency_margin_ms"] / 1000.0
    worst = None
    excluded_stop = excluded_kill = checked = 0
    for q in requests:
        pid = q["pid"]
        end = q["recv"]
        if end is None:
            if any(t >= q["send"] for t in kills.get(pid, ())):
                excluded_kill += 1
                continue
            res.violate("3", "request %s %s (key %s) sent at %.3f has no "
                        "outcome, and its worker was not killed" % (
                            q["rid"], q["op"], q["key"], q["send"] - t0))
            continue
        if any(_overlaps(q["send"], end, a, b) for a, b in stops.get(pid, ())):
            excluded_stop += 1
            continue
        checked += 1
        lat = end - q["send"]
        bound = q["bound"] / 1000.0
        if q["outcome"] == "reply":
            if worst is None or lat - bound > worst[0] - worst[1]:
                worst = (lat, bound, q)
        if lat > bound + margin:
            what = {"reply": "answered", "closed": "still unanswered when its "
                    "connection closed", "gave_up": "never answered"}[q["outcome"]]
            res.violate("3", "request %s %s (key %s, daemon %s) %s after %.0f ms; "
                        "bound %.0f + margin %.0f ms; sent at %.3f, outcome %s%s"
                        % (q["rid"], q["op"], q["key"],
                           os.path.basename(pid_info.get(pid, {}).get("daemon", "?")),
                           what, lat * 1000, bound * 1000, margin * 1000,
                           q["send"] - t0, q["outcome"],
                           " code %s" % q.get("code") if q.get("code") else ""))
        elif q["outcome"] == "gave_up":
            res.violate("3", "request %s %s gave up (client deadline) "
                        % (q["rid"], q["op"]))
        if q["outcome"] == "closed":
            # Nothing in this test makes a daemon close a worker's
            # connection except its death (nemesis SIGKILL or a crash). The
            # connection's life must overlap the window from the kill to the
            # restarted daemon being ready: a SIGKILLed daemon is not gone at
            # once (the kernel tears the ASan process down for a while, and
            # may free its listening socket after its connections), so a
            # worker can even connect to the dying daemon and then be reset.
            dsock = pid_info.get(pid, {}).get("daemon")
            deaths = dkills.get(dsock, []) + [
                (t, t) for t in cfg["daemon_deaths"].get(dsock, ())]
            c0 = q["conn"] if q["conn"] is not None else -INF
            if not any(_overlaps(c0, end, a, b) or c0 <= a <= end
                       for a, b in deaths):
                res.violate("3", "request %s %s (key %s): its connection to "
                            "%s closed at %.3f, but that daemon was not killed "
                            "while the connection was open" % (
                                q["rid"], q["op"], q["key"],
                                os.path.basename(dsock or "?"), end - t0))
    for r in strays:
        res.violate("3", "a reply that answers no request in flight (a "
                    "second reply, or a wrong id) from pid %s's daemon at "
                    "%.3f: %r" % (r["pid"], r["ts"] - t0, r["reply"]))

    # ---- statistics ---------------------------------------------------------
    st = res.stats
    acq = [q for q in requests if q["op"] == "lock.acquire"]
    rel = [q for q in requests if q["op"] == "lock.release"]
    st["acquires"] = len(acq)
    st["grants"] = sum(1 for q in acq if q.get("ok") and q.get("token"))
    st["not_acquired"] = sum(1 for q in acq if q.get("ok") and not q.get("token"))
    st["releases"] = len(rel)
    rel_true = sum(1 for q in rel if q.get("ok") and q.get("released") is True)
    st["released_true"] = rel_true
    reasons = collections.Counter(s["reason"] for s in sections.values()
                                  if s["released"] is False)
    st["release_false"] = dict(reasons)
    st["writes"] = len(store)
    st["writes_accepted"] = sum(1 for r in store if r["accepted"])
    errs = collections.Counter(q.get("code") for q in requests
                               if q["outcome"] == "reply" and q.get("ok") is False)
    st["errors"] = dict(errs)
    st["closed"] = sum(1 for q in requests if q["outcome"] == "closed")
    st["lock_lost"] = len(lost)
    st["torn_lines"] = torn
    st["sections"] = len(sections)
    st["sections_in_store"] = sum(1 for s in sections.values()
                                  if any(w["accepted"] for w in s["writes"]))
    st["held_throughout"] = sum(1 for s in sections.values()
                                if s["released"] is True)
    st["stale_accepted_before_newer"] = stale_accepted
    st["latency_checked"] = checked
    st["latency_excluded_stop"] = excluded_stop
    st["latency_excluded_kill"] = excluded_kill
    st["worst"] = worst

    # refusals by what made the writer stale
    cause = collections.Counter()
    stopped_examples = []
    other_examples = []
    for r in store:
        if r["accepted"]:
            continue
        s = sec_of(r)
        if s is None:
            cause["unknown section"] += 1
            continue
        pid = s["pid"]
        dsock = pid_info.get(pid, {}).get("daemon")
        # Stopped while it held the lock, or while its acquire waited (the
        # grant then lands during the stop and can expire before it reads it).
        if any(_overlaps(s["sent"], r["ts"], a, b) for a, b in stops.get(pid, ())):
            cause["writer SIGSTOPped"] += 1
            if len(stopped_examples) < 3 and all(
                    e[0] is not s for e in stopped_examples):
                stopped_examples.append((s, r))
        elif any(_overlaps(s["sent"], r["ts"], a, b) for a, b in dkills.get(dsock, ())):
            cause["writer's daemon killed"] += 1
        elif any(e["pid"] == pid and e["key"] == s["key"] and
                 s["start"] <= e["ts"] <= r["ts"] for e in lost):
            cause["after lock.lost"] += 1
        elif any(_overlaps(s["sent"], r["ts"], a, b) for a, b in redis_faults):
            # e.g. granted just before a DEBUG SLEEP: Redis's clock ran on
            # while it slept, and the lock expired as soon as it woke.
            cause["Redis fault"] += 1
        else:
            cause["TTL overran, no fault"] += 1
            if len(other_examples) < 3:
                other_examples.append((s, r))
    st["refused"] = len(store) - st["writes_accepted"]
    st["refused_sections"] = len({r["token"] for r in store if not r["accepted"]})
    st["refused_by_cause"] = dict(cause)
    st["refused_stopped_examples"] = stopped_examples
    st["refused_other_examples"] = other_examples
    check_cache(res, worker_logs, sections, t0)
    return res


def check_cache(res, worker_logs, sections, t0):
    """6 the lock hand-off through the near caches. Each section reads
    execution tt-<key> after its grant and writes it, with its fence, before
    its end. A read must return a value that may still be the latest of the
    writes acknowledged before its section's acquire was sent: Redis ran
    those before the grant, so the fence after the grant had their
    invalidations in. Written precisely: let B be the write acknowledged
    before the acquire was sent that was sent last; every write acknowledged
    before B was sent is overwritten for sure (B began after it ended). The
    value read must be that of a write not overwritten for sure (an
    unacknowledged one may have landed at any time after it was sent), or
    nothing when no write was acknowledged yet."""
    writes = collections.defaultdict(list)      # key -> [{f, sent, ack}]
    by_token = {}
    reads = []
    for path in worker_logs:
        recs, _ = read_records(path)
        for r in recs:
            t = r.get("t")
            if t == "cwsend":
                w = {"f": r["f"], "sent": r["ts"], "ack": None, "token": r["token"]}
                writes[r["key"]].append(w)
                by_token[r["token"]] = w
            elif t == "cwrecv":
                w = by_token.get(r["token"])
                if w is not None:
                    w["ack"] = r["ts"]
            elif t == "cread":
                reads.append(r)
    checked = misses = 0
    for r in reads:
        s = sections.get(r["token"])
        if s is None:
            continue
        ws = writes.get(r["key"], [])
        t = s["sent"]
        acked = [w for w in ws if w["ack"] is not None and w["ack"] < t]
        if acked:
            last = max(w["sent"] for w in acked)
            allowed = {w["f"] for w in ws if w["sent"] < r["ts"] and
                       (w["ack"] is None or w["ack"] >= last)}
        else:
            allowed = {None} | {w["f"] for w in ws if w["sent"] < r["ts"]}
        checked += 1
        misses += r["f"] is None
        if r["f"] not in allowed:
            newest = max(acked, key=lambda w: w["ack"]) if acked else None
            res.violate("6", "key %s: a section read execution tt-%s with fence %s "
                        "after its grant, but a newer write was acknowledged before "
                        "it asked for the lock (fence %s, acknowledged at %.3f, the "
                        "acquire sent at %.3f): %s" % (
                            r["key"], r["key"], r["f"],
                            newest["f"] if newest else "?",
                            newest["ack"] - t0 if newest else 0, t - t0,
                            _fmt_sec(s, t0)))
    res.stats["cache_reads_checked"] = checked
    res.stats["cache_read_misses"] = misses
    res.stats["cache_writes"] = sum(len(v) for v in writes.values())
    res.stats["cache_writes_acknowledged"] = sum(
        1 for v in writes.values() for w in v if w["ack"] is not None)
